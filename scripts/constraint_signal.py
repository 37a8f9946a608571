"""How much of a ranking set speaks to the prompts' explicit constraints, and can an RM learn the
check from it? (A diagnostic outside the method; it reads the gold judge's constraint check.)

Three commands:

    # of a comparisons file: the ranked pairs whose two responses differ in following the prompt's
    # constraint ("use the word X", "without the word Y", "two items", "starts with 'L'", ...),
    # and how often the labeler ranked the one that follows it higher
    python scripts/constraint_signal.py count runs/default/comparisons.jsonl

    # noise-free pairs: the world's good answer vs the same answer ignoring the constraint
    # (world.styles' `ignore_constraint` habit), K = 2 records for `instructrl rm`; --n keeps the
    # first N, --flip P reverses each ranking with probability P (a labeler's noise)
    python scripts/constraint_signal.py pairs runs/default/world/rm_prompts.jsonl \\
        runs/default/world/ppo_prompts.jsonl --draws 4 --out runs/verifier/constraint_pairs.jsonl

    # on real samples: per RM, how often it scores the response that follows the constraint
    # higher, over the pairs of a comparisons file that differ in it
    python scripts/constraint_signal.py prefer runs/default/comparisons_heldout.jsonl \\
        --rm runs/default/rm runs/verifier/rm
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path


def constraint_pairs(record: dict, follows) -> list[tuple[int, int]]:
    """(follower, other) index pairs of one ranked record whose responses differ in following the
    prompt's constraint; ``follows(prompt, response)`` is True / False, or None without one."""
    fc = [follows(record["prompt"], r) for r in record["responses"]]
    out = []
    for i, j in itertools.combinations(range(len(fc)), 2):
        if fc[i] is not None and fc[j] is not None and fc[i] != fc[j]:
            out.append((i, j) if fc[i] else (j, i))
    return out


def count(records: list[dict], follows) -> dict:
    """Over the strictly ranked pairs of `records`: how many differ in following the constraint,
    and the share of those where the ranking puts the follower first."""
    from instructrl.label.db import ranks_of

    n_pairs = n_diff = n_agree = 0
    for r in records:
        pos = ranks_of(r["ranking"])
        n_pairs += sum(pos[i] != pos[j] for i, j in itertools.combinations(range(len(r["responses"])), 2))
        for ok, other in constraint_pairs(r, follows):
            if pos[ok] != pos[other]:
                n_diff += 1
                n_agree += pos[ok] < pos[other]
    return {"ranked_pairs": n_pairs, "constraint_pairs": n_diff,
            "share": n_diff / n_pairs if n_pairs else 0.0,
            "ranked_follower_first": n_agree / n_diff if n_diff else None}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count", help="constraint pairs in a comparisons file, and the labelers' agreement with the check")
    c.add_argument("comparisons")
    p = sub.add_parser("pairs", help="noise-free good vs ignored-constraint pairs for `instructrl rm`")
    p.add_argument("prompts", nargs="+", help="world prompts JSONL ({'prompt'})")
    p.add_argument("--out", required=True)
    p.add_argument("--draws", type=int, default=4, help="pairs drawn per prompt (other good answers each time)")
    p.add_argument("--n", type=int, default=0, help="keep the first N pairs after shuffling (0: all)")
    p.add_argument("--flip", type=float, default=0.0, help="reverse each ranking with this probability")
    p.add_argument("--seed", type=int, default=7)
    q = sub.add_parser("prefer", help="how often each RM prefers the response that follows the constraint")
    q.add_argument("comparisons")
    q.add_argument("--rm", nargs="+", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "pairs" and not (0.0 <= a.flip <= 1.0 and a.n >= 0 and a.draws >= 1):
        ap.error("pairs: --flip must lie in [0, 1], --n >= 0 and --draws >= 1")

    from instructrl.world import judge

    if a.cmd == "count":
        recs = [json.loads(x) for x in Path(a.comparisons).read_text().splitlines() if x.strip()]
        r = count(recs, judge.follows_constraint)
        first = "n/a" if r["ranked_follower_first"] is None else f"{r['ranked_follower_first']:.3f}"
        print(f"{r['ranked_pairs']} ranked pairs; {r['constraint_pairs']} ({r['share']:.3f}) differ in following "
              f"the constraint; ranked with the follower first in {first} of those")
    elif a.cmd == "pairs":
        from instructrl.world import styles

        rng = random.Random(a.seed)
        recs = []
        for f in a.prompts:
            for line in Path(f).read_text().splitlines():
                if not line.strip():
                    continue
                prompt = json.loads(line)["prompt"]
                ex = judge.parse_prompt(prompt)
                for _ in range(a.draws):
                    good = styles.styled_gold(ex, rng, p_style=0.0)
                    bad = styles.habit(ex, "ignore_constraint", rng)
                    if bad != good and judge.gold_score(prompt, good) > judge.gold_score(prompt, bad):
                        order = [good, bad] if rng.random() < 0.5 else [bad, good]
                        recs.append({"prompt": prompt, "responses": order,
                                     "ranking": [order.index(good), order.index(bad)]})
        rng.shuffle(recs)
        recs = recs[: a.n] if a.n else recs
        flipped = 0
        for r in recs:
            if a.flip and rng.random() < a.flip:
                r["ranking"] = r["ranking"][::-1]
                flipped += 1
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(a.out) + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in recs))
        tmp.replace(a.out)
        print(f"{len(recs)} pairs ({flipped} rankings reversed) -> {a.out}")
    else:
        from instructrl.models import load_reward_model, score_texts

        recs = [json.loads(x) for x in Path(a.comparisons).read_text().splitlines() if x.strip()]
        pairs = [(r["prompt"], r["responses"][ok], r["responses"][other])
                 for r in recs for ok, other in constraint_pairs(r, judge.follows_constraint)]
        print(f"{len(pairs)} pairs that differ in following the constraint, from {len(recs)} ranked prompts")
        for folder in a.rm:
            rm, tok = load_reward_model(folder)
            s_ok = score_texts(rm, tok, [p[0] for p in pairs], [p[1] for p in pairs])
            s_other = score_texts(rm, tok, [p[0] for p in pairs], [p[2] for p in pairs])
            print(f"{folder}: scores the follower higher in {float((s_ok > s_other).float().mean()):.3f}")


if __name__ == "__main__":
    main()
