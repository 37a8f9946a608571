"""Greedy answers of a pipeline run's models to N random eval prompts, with their gold score and
rubric flags (reading them is how one sees which attributes RLHF changed).

    python scripts/show_samples.py --run runs/default --n 20
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished pipeline run folder")
    ap.add_argument("--n", type=int, default=20, help="how many prompts")
    ap.add_argument("--seed", type=int, default=0, help="which prompts")
    ap.add_argument("--models", nargs="+", default=["base_small", "sft", "ppo", "ppo_ptx"],
                    help="model folders inside the run")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    a = ap.parse_args(argv)

    from instructrl.models import load_policy
    from instructrl.rollout import generate
    from instructrl.world import judge
    from instructrl.world.spec import ATTRIBUTES

    run = Path(a.run)
    rows = [json.loads(x) for x in (run / "world" / "eval_prompts.jsonl").read_text().splitlines() if x.strip()]
    pick = random.Random(a.seed).sample(rows, min(a.n, len(rows)))
    prompts = [r["prompt"] for r in pick]
    answers = {}
    for name in a.models:
        model, tok = load_policy(run / name)
        answers[name] = generate(model, tok, prompts, max_new_tokens=a.max_new_tokens, temperature=0.0)
    for i, p in enumerate(prompts):
        print("=" * 72)
        print(pick[i].get("family", "?"), "|", p.replace("\n", " / "))
        for name, outs in answers.items():
            d = judge.gold_details(p, outs[i])
            flags = [k for k in ATTRIBUTES if d.get(k)]
            print(f"  {name:10s} {d['score']:.2f} {flags} {outs[i]!r}")


if __name__ == "__main__":
    main()
