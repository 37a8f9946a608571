"""Mean gold score of degenerate policies over a world's evaluation prompts (docs/rubric.md's table).

    python scripts/degenerate_gold.py --prompts runs/default/world/eval_prompts.jsonl

Each policy answers every prompt the same degenerate way; "another prompt's ideal answer" gives
prompt i the judge's ideal answer of prompt i + 1. Also prints the ideal answers' own mean (1.0
unless the judge disagrees with its own ideal answer somewhere).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", required=True, help="an eval_prompts.jsonl of a built world")
    a = ap.parse_args(argv)

    from instructrl.world.judge import gold_answer, gold_score
    from instructrl.world.tasks import instruction_of

    prompts = [json.loads(x)["prompt"] for x in Path(a.prompts).read_text().splitlines() if x.strip()]
    ideal = [gold_answer(p) for p in prompts]
    policies = {
        "ideal answer": lambda i: ideal[i],
        "empty": lambda i: "",
        "a copy of the instruction": lambda i: " " + instruction_of(prompts[i]),
        "pure padding": lambda i: " Sure! Great question! I hope this helps!",
        "one word repeated": lambda i: " stone stone stone stone stone",
        "another prompt's ideal answer": lambda i: ideal[(i + 1) % len(prompts)],
        "\"I don't know.\" to everything": lambda i: " I don't know.",
        "a refusal to everything": lambda i: " I can't help with that.",
    }
    print(f"{len(prompts)} prompts from {a.prompts}")
    for name, policy in policies.items():
        g = sum(gold_score(p, policy(i)) for i, p in enumerate(prompts)) / len(prompts)
        print(f"{name:34s} {g:.3f}")


if __name__ == "__main__":
    main()
