"""Best-of-n's RM scoring with and without `models.SHARE_PREFIX_SCORING` (a benchmark, not a test).

    python benchmarks/bench_bon_scoring.py runs/default [--prompts 250] [--n 16]

Samples n responses per eval prompt from the run's SFT policy (T = 1, as eval's best-of-n), then
scores them all with the run's RM, alternating whole rows / each prompt once (two runs each), and
prints the seconds, the largest score difference and whether the RM's pick per prompt is the same text.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--prompts", type=int, default=250)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from instructrl import models
    from instructrl.evaluate.forward import generate, rm_scores
    from instructrl.models import load_policy, load_reward_model

    pol, tok = load_policy(f"{a.run}/sft")
    rm, rtok = load_reward_model(f"{a.run}/rm")
    pol.eval()
    rm.eval()
    with open(f"{a.run}/world/eval_prompts.jsonl") as fh:
        prompts = [json.loads(line)["prompt"] for line in fh][:a.prompts]
    flat = generate(pol, tok, [p for p in prompts for _ in range(a.n)], 48, 1.0, 64, 0)
    rep = [p for p in prompts for _ in range(a.n)]
    res, secs = {}, {False: [], True: []}
    for share in (False, True, False, True):
        models.SHARE_PREFIX_SCORING = share
        t = time.perf_counter()
        res[share] = rm_scores(rm, rtok, rep, flat, 64)
        secs[share].append(time.perf_counter() - t)
    texts = [flat[i * a.n:(i + 1) * a.n] for i in range(len(prompts))]
    pick = {k: v.view(-1, a.n).argmax(1).tolist() for k, v in res.items()}
    differ = sum(t[pick[True][i]] != t[pick[False][i]] for i, t in enumerate(texts))
    print(f"whole rows {secs[False]} s, shared prompts {secs[True]} s; max |diff| "
          f"{float((res[True] - res[False]).abs().max()):.2g}; picks with another text: {differ} of {len(prompts)}")
    print(f"bon-scoring: ours={min(secs[True]):.2f} peer={min(secs[False]):.2f} "
          f"ratio={min(secs[False]) / min(secs[True]):.2f} (seconds; peer = every row whole)")


if __name__ == "__main__":
    main()
