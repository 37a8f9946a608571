"""How well could a reward model predict the labelers if it saw some rubric attributes perfectly?

The simulated labelers rank by the gold judge's score plus their own noise and length bias
(`world/labelers.py`), so no reward model can predict held-out labelers better than the gold judge
itself does. This script asks a finer question: how much of that ceiling is left to a verifier that
reads only *some* of the rubric's attributes, for instance every local check but not whether a
closed-domain answer is correct?

For every ranked pair of a rankings file it computes the gold judge's attributes of both responses
(`judge.gold_details`), fits a logistic regression on the attribute differences of the *training*
rankings (one weight per attribute, no intercept: the model is r(y) = w . f(y), the RM's form with
perfect features), and reports its accuracy on the *held-out* rankings, for several attribute groups.
Pairs the features cannot order (equal features) count one half, as a coin flip would.

    python scripts/ranking_ceiling.py runs/default/comparisons.jsonl runs/default/comparisons_heldout.jsonl

Prints one table (groups x held-out accuracy, with the number of features) and, with --json, writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from instructrl.data.readers import read_rankings
from instructrl.evaluate.world_eval import RUBRIC_FLAWS
from instructrl.world.judge import gold_details

# Each response's features: the gold judge's attributes, as the eval's rm_rubric.* keys read them.
FEATURES = RUBRIC_FLAWS
LENGTH = "length"  # characters / 100: the labelers' brevity bias is visible to any RM

# Attribute groups: what a verifier is assumed to see perfectly. Length is in every group.
GROUPS = {
    "every attribute": list(FEATURES),
    "all but correctness": [f for f in FEATURES if f != "incorrect"],
    "all but correctness, hallucination": [f for f in FEATURES if f not in ("incorrect", "hallucination")],
    "all but correctness, hallucination, constraint": [
        f for f in FEATURES if f not in ("incorrect", "hallucination", "fails_constraint")],
    "constraint only": ["fails_constraint"],
    "correctness only": ["incorrect"],
    "length only": [],
}


def pair_features(path: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], list, list]:
    """Rows f(winner) - f(loser) over every strictly ranked pair of a rankings file, the gold score
    difference of each pair (winner - loser), the column names (FEATURES then length), the records
    and each pair's (record index, winner, loser)."""
    rows, gold, where = [], [], []
    records = read_rankings(path)
    if limit:
        records = records[:limit]
    for n, rec in enumerate(records):
        feats, scores = [], []
        for r in rec.responses:
            d = gold_details(rec.prompt, r)
            feats.append([fn(d) for fn in FEATURES.values()] + [len(r) / 100.0])
            scores.append(d["score"])
        rank = rec.ranks()  # 0 = best; tied responses share a rank and make no pair
        for a in range(rec.k):
            for b in range(rec.k):
                if rank[a] >= rank[b]:
                    continue
                w, l = a, b
                rows.append(np.subtract(feats[w], feats[l]))
                gold.append(scores[w] - scores[l])
                where.append((n, w, l))
    return np.asarray(rows, dtype=np.float64), np.asarray(gold), list(FEATURES) + [LENGTH], records, where


def rm_margins(rm_dir: str, records: list, where: list) -> np.ndarray:
    """RM score of the labeler's winner minus its loser, for each pair in `where`."""
    from instructrl.data import render
    from instructrl.models import load_reward_model, score_texts

    rm, tok = load_reward_model(rm_dir)
    fmt = render.resolve(tok, "auto", "", rm_dir, [])
    prompts = [rec.prompt for rec in records for _ in rec.responses]
    texts = [r for rec in records for r in rec.responses]
    scores = score_texts(rm, tok, prompts, texts, fmt=fmt).tolist()
    start, pos = [], 0
    for rec in records:
        start.append(pos)
        pos += len(rec.responses)
    return np.asarray([scores[start[n] + w] - scores[start[n] + l] for n, w, l in where])


def fit_logistic(x: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Weights w maximising sum log sigmoid(x @ w) - l2/2 |w|^2 (every row is winner - loser), by Newton."""
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        z = x @ w
        p = 1.0 / (1.0 + np.exp(-z))  # P(winner first)
        grad = x.T @ (1.0 - p) - l2 * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-9:
            break
    return w


def accuracy(margin: np.ndarray, eps: float = 1e-9) -> float:
    """Share of pairs ordered as the labeler did; a margin of (about) 0 is a tie and counts 1/2."""
    if len(margin) == 0:
        return float("nan")
    return float(((margin > eps) + 0.5 * (np.abs(margin) <= eps)).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train", help="training rankings JSONL (the RM's data, training labelers)")
    ap.add_argument("heldout", help="held-out rankings JSONL (held-out labelers)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N rankings of each file (0: all)")
    ap.add_argument("--rm", help="also score the held-out pairs with this reward model folder, per attribute")
    ap.add_argument("--json", help="also write the table to this JSON file")
    ap.add_argument("--write-pairs", nargs=2, metavar=("ATTRIBUTE", "OUT"),
                    help="also write the training pairs that differ in ATTRIBUTE as {prompt, chosen, rejected} "
                         "JSONL in the labeler's order (an RM trained on them alone says whether the real "
                         "samples' signal is learnable)")
    a = ap.parse_args(argv)
    for p in (a.train, a.heldout):
        if not Path(p).is_file():
            ap.error(f"{p}: no such file")
    if a.write_pairs and a.write_pairs[0] not in FEATURES:
        ap.error(f"--write-pairs: unknown attribute {a.write_pairs[0]!r}; one of {', '.join(FEATURES)}")
    xt, _, names, t_records, t_where = pair_features(a.train, a.limit)
    xh, gh, _, h_records, h_where = pair_features(a.heldout, a.limit)
    if len(xt) == 0 or len(xh) == 0:
        ap.error("a rankings file has no ranked pairs")
    out = {"train_pairs": len(xt), "heldout_pairs": len(xh),
           "gold_judge": accuracy(gh), "groups": {}}
    print(f"{len(xt)} training pairs, {len(xh)} held-out pairs")
    print(f"{'what the verifier sees':<50} {'held-out acc':>12}  weights (attribute: w)")
    print(f"{'the gold score itself':<50} {out['gold_judge']:>12.3f}")
    for group, feats in GROUPS.items():
        cols = [names.index(f) for f in feats] + [names.index(LENGTH)]
        w = fit_logistic(xt[:, cols])
        acc = accuracy(xh[:, cols] @ w)
        weights = {names[c]: round(float(v), 2) for c, v in zip(cols, w)}
        out["groups"][group] = {"heldout_accuracy": acc, "train_accuracy": accuracy(xt[:, cols] @ w),
                                "weights": weights}
        shown = ", ".join(f"{k}: {v:+.2f}" for k, v in weights.items())
        print(f"{group + ' (+ length)':<50} {acc:>12.3f}  {shown}")
    # Which attributes the pairs differ in: the signal a verifier could find in the rankings.
    differ = {f: float((xh[:, names.index(f)] != 0).mean()) for f in FEATURES}
    out["heldout_pairs_differing"] = differ
    print("held-out pairs differing in: " + ", ".join(f"{k} {v:.3f}" for k, v in differ.items()))
    if a.rm:
        # Per attribute, on the held-out pairs that differ in it: how often the labeler, the gold
        # judge and the RM put the response *without* the flaw first (the real-sample rm_probe).
        m = rm_margins(a.rm, h_records, h_where)
        out["rm"] = {"dir": a.rm, "heldout_accuracy": accuracy(m), "per_attribute": {}}
        print(f"RM {a.rm}: held-out accuracy {out['rm']['heldout_accuracy']:.3f}")
        print("| attribute | held-out pairs differing | labeler puts the flawless first | gold | RM |")
        print("| --- | --- | --- | --- | --- |")
        for f in FEATURES:
            col = xh[:, names.index(f)]
            sel = col != 0
            if not sel.any():
                continue
            sign = -np.sign(col[sel])  # +1 where the labeler's winner is the one without the flaw
            row = {"pairs": int(sel.sum()), "labeler": accuracy(sign), "gold": accuracy(sign * gh[sel]),
                   "rm": accuracy(sign * m[sel])}
            out["rm"]["per_attribute"][f] = row
            print(f"| {f} | {row['pairs']} | {row['labeler']:.3f} | {row['gold']:.3f} | {row['rm']:.3f} |")
    if a.write_pairs:
        col = xt[:, names.index(a.write_pairs[0])]
        lines = [json.dumps({"prompt": t_records[n].prompt, "chosen": t_records[n].responses[w],
                             "rejected": t_records[n].responses[l]}, ensure_ascii=False)
                 for (n, w, l), c in zip(t_where, col) if c != 0]
        Path(a.write_pairs[1]).write_text("".join(x + "\n" for x in lines))
        first = float((col[col != 0] < 0).mean()) if lines else float("nan")
        print(f"wrote {len(lines)} training pairs differing in {a.write_pairs[0]} "
              f"(the one without it chosen in {first:.3f}) -> {a.write_pairs[1]}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
