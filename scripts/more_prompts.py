"""Draw more distinct prompts from the world's task mix than its splits hold, for RM data-scaling
runs (a diagnostic outside the pipeline: the default's RM sees 2000 prompts).

    # 6000 prompts none of which is in the eval, RM or PPO split, in the default mix
    python scripts/more_prompts.py --n 6000 --exclude runs/default/world/eval_prompts.jsonl \\
        runs/default/world/rm_prompts.jsonl runs/default/world/ppo_prompts.jsonl \\
        --out runs/rm_data5x/extra_6000.jsonl

The prompts are drawn as the world draws a split (`world.tasks.sample_examples`, unique, the
excluded prompts never produced; when a family's prompt space runs out another family is drawn, so
the mix shifts towards the families with many distinct prompts), then written as
``{"prompt", "family"}`` lines for `instructrl compare`. The world's prompt space is finite: with
the default's eval, RM and PPO splits excluded it gives 8000 more distinct prompts and fails at
10000 (the closed-QA families and context QA run out first), which the script reports rather than
padding with repeats.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path


def read_prompt_strings(path: Path) -> set[str]:
    """The prompt strings of a prompts file (`instructrl.data.readers.read_prompts`: a bad record
    stops the script with its file, line and field)."""
    from instructrl.data.readers import read_prompts
    from instructrl.errors import InstructRLError

    try:
        return {p.prompt for p in read_prompts(path)}
    except InstructRLError as e:
        raise SystemExit(str(e)) from None


def more_prompts(n: int, exclude: set[str], seed: int) -> list[dict]:
    """``n`` distinct prompts of the default family mix, none in ``exclude`` (ValueError when the
    world's prompt space cannot give that many)."""
    from instructrl.world.tasks import sample_examples

    examples = sample_examples(n, random.Random(seed), exclude=set(exclude), unique=True)
    return [{"prompt": e.prompt, "family": e.family} for e in examples]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, required=True, help="How many prompts.")
    ap.add_argument("--exclude", nargs="*", default=[], type=Path,
                    help="JSONL prompt files whose prompts must not be drawn (the eval split above all).")
    ap.add_argument("--seed", type=int, default=12345, help="Seed of the draw.")
    ap.add_argument("--out", type=Path, required=True, help="Output JSONL (not overwritten).")
    args = ap.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it or choose another --out")
    exclude: set[str] = set()
    for p in args.exclude:
        exclude |= read_prompt_strings(p)
    try:
        rows = more_prompts(args.n, exclude, args.seed)
    except ValueError as e:
        print(f"the world has fewer than {args.n} distinct prompts outside the excluded files: {e}",
              file=sys.stderr)
        return 1
    from instructrl.data.readers import write_jsonl

    tmp = args.out.with_name(args.out.name + ".tmp")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(tmp, rows)
    tmp.replace(args.out)
    fams = Counter(r["family"] for r in rows)
    print(f"{len(rows)} prompts -> {args.out}; by family: "
          + ", ".join(f"{k} {v}" for k, v in fams.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
