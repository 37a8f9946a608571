"""PPO in bf16 mixed precision, both sides (issue 18, "bf16 matmuls ... change PPO's numerics").

    python benchmarks/bench_bf16.py        # BENCH_EPISODES (512), BENCH_REPS (3)

The benchmark scenario of bench_ppo.py, at three precisions/attentions on **both** sides, fresh
processes alternating within each of 3 repetitions, median episodes/s:

* fp32 (sdpa attention): what bench_ppo.py measures;
* bf16: ours as ``train_ppo`` runs under ``mixed_precision=bf16`` (Accelerate's CPU autocast on the
  trained policy and value model, the frozen reference and RM held in bf16), TRL with ``bf16=True``
  and its reference and RM loaded in bf16 (the same arrangement);
* bf16 with the eager (matmul + softmax) attention on both, since torch's CPU flash-attention
  kernel has a slow bf16 backward (benchmarks/README.md, pretraining).

Prints ours / peer at each setting (the ratio the issue's target reads) and, for ours, how far the
32 per-minibatch (policy, value) losses move from the fp32 run's: bf16 rounds every matmul input to
8 bits of mantissa, so these are differences of arithmetic, not float-order rounding, and the
rollouts drawn from them differ too. Saves ``.cache/bf16.json``.
"""

from __future__ import annotations

import os
import sys

from _common import PEER_PPO, loss_max_diff, median, reps, run_worker, save

EPISODES = int(os.environ.get("BENCH_EPISODES", "512"))

SETTINGS = {
    "fp32": (),
    "bf16": ("--bf16",),
    "bf16 + eager attention": ("--bf16", "--attention", "eager"),
}


def main():
    runs = {(side, name): [] for name in SETTINGS for side in ("ours", "peer")}
    for i in range(reps()):
        for name, flags in SETTINGS.items():
            for side, py, script in (("ours", sys.executable, "ours_ppo.py"), ("peer", PEER_PPO, "peer_ppo.py")):
                r = run_worker(py, script, "--episodes", EPISODES, *flags)
                runs[side, name].append(r)
                print(f"run {i} {side} {name}: {r['episodes_per_s']:.2f} episodes/s, gen {r['time_gen']:.2f} "
                      f"score {r['time_score']:.2f} update {r['time_update']:.2f} s", flush=True)
    ref = runs["ours", "fp32"][0]["losses"]
    out = {}
    print(f"{'setting':24s} {'ours ep/s':>9s} {'peer ep/s':>9s} {'ratio':>6s} {'ours gen/score/update':>22s} "
          f"{'peer gen/score/update':>22s} {'ours max |dloss|':>16s}")
    for name in SETTINGS:
        o, p = runs["ours", name], runs["peer", name]
        eo, ep = median(o, "episodes_per_s"), median(p, "episodes_per_s")
        diff = loss_max_diff(o[0]["losses"], ref)
        split = {s: "/".join(f"{median(rs, k):.2f}" for k in ("time_gen", "time_score", "time_update"))
                 for s, rs in (("ours", o), ("peer", p))}
        print(f"{name:24s} {eo:9.2f} {ep:9.2f} {eo / ep:6.2f} {split['ours']:>22s} {split['peer']:>22s} {diff:16.3g}")
        out[name] = {"flags": list(SETTINGS[name]), "ours_episodes_per_s": eo, "peer_episodes_per_s": ep,
                     "ratio": eo / ep, "ours_split": split["ours"], "peer_split": split["peer"],
                     "ours_loss_max_diff_to_fp32": diff,
                     "runs": {s: [{k: v for k, v in r.items() if k != "losses"} for r in rs]
                              for s, rs in (("ours", o), ("peer", p))}}
    save("bf16", {"episodes": EPISODES, "settings": out})
    for name in SETTINGS:
        tag = name.replace(" + ", "-").replace(" ", "-")
        print(f"ppo-{tag}: ours={out[name]['ours_episodes_per_s']:.2f} peer={out[name]['peer_episodes_per_s']:.2f} "
              f"ratio={out[name]['ratio']:.2f} episodes/s")
    best = max(out[n]["ours_episodes_per_s"] for n in SETTINGS)
    print(f"ppo-best-vs-peer-fp32: ours={best:.2f} peer={out['fp32']['peer_episodes_per_s']:.2f} "
          f"ratio={best / out['fp32']['peer_episodes_per_s']:.2f} episodes/s (ours at its fastest setting)")


if __name__ == "__main__":
    main()
