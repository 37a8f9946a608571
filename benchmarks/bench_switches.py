"""Each PPO speed switch alone against instructrl's defaults (issue 18, "each switch's effect alone").

    python benchmarks/bench_switches.py        # BENCH_EPISODES (512), BENCH_REPS (3)

Runs ours_ppo.py (fresh processes, the benchmark scenario of bench_ppo.py) at the defaults, with
every optimization off (``--slow``), with the four PPOConfig switches off (the defaults before they
were on), with each optimization on by default turned off alone, with each opt-in on alone (inverse-CDF
draws, side_by_side_backward / _scoring / _sampling, and ours_ppo's one-model-per-thread variant of the
backward) and with the three side-by-side switches
together; the configurations alternate within a repetition so
that machine noise falls on all alike. Prints per configuration the median episodes/s, its ratio
to the default and the gen / score / update split, and the largest difference of its per-minibatch
losses from the default run's (the switches keep the math; the differences are float rounding,
carried through 8 updates, except for inverse-CDF and side-by-side sampling, which draw other
tokens at the seed, so their losses are those of other rollouts). Saves ``.cache/switches.json``.
"""

from __future__ import annotations

import os
import sys

from _common import loss_max_diff, median, reps, run_worker, save

EPISODES = int(os.environ.get("BENCH_EPISODES", "512"))

#: The default has reuse_sample_logprobs, fused_adamw, trim_padding and score_chunk=16 on; each row
#: below turns one of them off (its effect alone is the default's time against that row's), or one
#: opt-in on: inverse-CDF draws, each side-by-side switch, and the three side-by-side switches together.
CONFIGS = {
    "default": (),
    "slow (all off)": ("--slow",),
    "previous defaults (4 switches off)": ("--no-reuse-sample-logprobs", "--no-fused-adamw", "--no-trim-padding",
                                           "--score-chunk", "0"),
    "no fused GELU": ("--no-fused-gelu",),
    "no reuse_sample_logprobs": ("--no-reuse-sample-logprobs",),
    "no fused_adamw": ("--no-fused-adamw",),
    "no trim_padding": ("--no-trim-padding",),
    "score_chunk 0": ("--score-chunk", "0"),
    "sampling inverse_cdf": ("--sampling", "inverse_cdf"),
    "side_by_side_backward": ("--side-by-side-backward",),
    "one model per thread (variant)": ("--side-by-side-models",),
    "side_by_side_scoring": ("--side-by-side-scoring",),
    "side_by_side_sampling": ("--side-by-side-sampling",),
    "all three side by side": ("--side-by-side-backward", "--side-by-side-scoring", "--side-by-side-sampling"),
}


def main():
    runs = {name: [] for name in CONFIGS}
    for i in range(reps()):
        for name, flags in CONFIGS.items():
            r = run_worker(sys.executable, "ours_ppo.py", "--episodes", EPISODES, *flags)
            runs[name].append(r)
            print(f"run {i} {name}: {r['episodes_per_s']:.2f} episodes/s", flush=True)
    base = median(runs["default"], "episodes_per_s")
    ref = runs["default"][0]["losses"]
    out = {}
    print(f"{'configuration':36s} {'episodes/s':>10s} {'x default':>9s} {'gen/score/update s':>20s} {'max |dloss|':>11s}")
    for name, rs in runs.items():
        eps = median(rs, "episodes_per_s")
        diff = loss_max_diff(rs[0]["losses"], ref)
        split = "/".join(f"{median(rs, k):.2f}" for k in ("time_gen", "time_score", "time_update"))
        print(f"{name:36s} {eps:10.2f} {eps / base:9.2f} {split:>20s} {diff:11.2g}")
        out[name] = {"flags": list(CONFIGS[name]), "episodes_per_s": eps, "ratio_to_default": eps / base,
                     "time_gen": median(rs, "time_gen"), "time_score": median(rs, "time_score"),
                     "time_update": median(rs, "time_update"), "loss_max_diff_to_default": diff,
                     "runs": [{k: v for k, v in r.items() if k != "losses"} for r in rs]}
    save("switches", {"episodes": EPISODES, "configs": out})


if __name__ == "__main__":
    main()
