"""What a reward model sees: for each habit of the world, how often the RM prefers a good answer
to the same answer with that one habit (a diagnostic outside the method; it reads the gold judge).

For every eval prompt, the world's good answer (`world.styles.good_answer`) is paired with one
variant per habit kind (`world.styles.habit`: a filler opener, an invented detail, a wrong answer,
"I don't know", ...); pairs where the gold judge does not rank the good answer strictly higher are
dropped. Prints a markdown table: per kind, pairs, how often the RM scores the good answer higher,
and the mean gold gap. A habit the RM prefers (rate < 0.5) is one PPO can exploit.

    python scripts/rm_probe.py --rm runs/default/rm --prompts runs/default/world/eval_prompts.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rm", required=True, help="reward model folder")
    ap.add_argument("--prompts", required=True, help="world prompts JSONL ({'prompt'})")
    ap.add_argument("--n", type=int, default=1000, help="at most this many prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the table here as JSON")
    a = ap.parse_args(argv)

    from instructrl.models import load_reward_model, score_texts
    from instructrl.world import judge, styles

    prompts = [json.loads(x)["prompt"] for x in Path(a.prompts).read_text().splitlines() if x.strip()][: a.n]
    rng = random.Random(a.seed)
    kinds = [k for k in styles.KINDS if k != "good"]
    rows: dict[str, list] = {k: [] for k in kinds}  # kind -> [(prompt, good, variant, gold gap)]
    for p in prompts:
        ex = judge.parse_prompt(p)
        good = styles.styled_gold(ex, rng, p_style=0.0)  # a refusal / "I don't know" where that is right
        g = judge.gold_score(p, good)
        for k in kinds:
            v = styles.habit(ex, k, rng)
            gap = g - judge.gold_score(p, v)
            if v != good and gap > 0:
                rows[k].append((p, good, v, gap))
    rm, tok = load_reward_model(a.rm)
    table = []
    for k in kinds:
        if not rows[k]:
            continue
        ps = [r[0] for r in rows[k]]
        sg = score_texts(rm, tok, ps, [r[1] for r in rows[k]])
        sv = score_texts(rm, tok, ps, [r[2] for r in rows[k]])
        pref = float((sg > sv).float().mean())
        table.append({"kind": k, "pairs": len(ps), "rm_prefers_good": round(pref, 3),
                      "gold_gap": round(sum(r[3] for r in rows[k]) / len(ps), 3)})
    print("| habit | pairs | RM prefers the good answer | mean gold gap |")
    print("| --- | --- | --- | --- |")
    for t in table:
        print(f"| {t['kind']} | {t['pairs']} | {t['rm_prefers_good']:.3f} | {t['gold_gap']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
