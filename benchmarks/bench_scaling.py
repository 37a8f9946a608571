"""Scaling of our PPO: time per episode vs response length (16, 32, 64, 128; batch 64) and vs
batch size (16, 32, 64, 128; 24 tokens, minibatch = batch / 4), one run each of BENCH_SCALING_EPISODES
(128) episodes. Writes a table (stdout, .cache/scaling.json) and a plot (scaling.png).

    python benchmarks/bench_scaling.py
"""

from __future__ import annotations

import os
import sys

from _common import HERE, run_worker, save

EPISODES = int(os.environ.get("BENCH_SCALING_EPISODES", "128"))


def main():
    rows = []
    for R in (16, 32, 64, 128):
        r = run_worker(sys.executable, "ours_ppo.py", "--episodes", EPISODES, "--response", R)
        rows.append(("response", R, r))
    for B in (16, 32, 64, 128):
        r = run_worker(sys.executable, "ours_ppo.py", "--episodes", max(EPISODES, B), "--batch", B,
                       "--minibatch", B // 4)
        rows.append(("batch", B, r))
    print("| vary | value | ms/episode | gen ms/ep | score ms/ep | update ms/ep |")
    print("| --- | --- | --- | --- | --- | --- |")
    table = []
    for kind, v, r in rows:
        n = r["episodes"]
        t = {k: 1000 * r[k] / n for k in ("time_s", "time_gen", "time_score", "time_update")}
        table.append({"vary": kind, "value": v, **t})
        print(f"| {kind} | {v} | {t['time_s']:.1f} | {t['time_gen']:.1f} | {t['time_score']:.1f} | {t['time_update']:.1f} |")
    save("scaling", table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, kind, label in ((axes[0], "response", "response tokens (batch 64)"),
                                (axes[1], "batch", "batch size (24 tokens)")):
            rs = [t for t in table if t["vary"] == kind]
            xs = [t["value"] for t in rs]
            for key in ("time_s", "time_gen", "time_score", "time_update"):
                ax.plot(xs, [t[key] for t in rs], marker="o", label=key.replace("time_s", "total").replace("time_", ""))
            ax.set_xscale("log", base=2)
            ax.set_xlabel(label)
            ax.set_ylabel("ms per episode")
            ax.legend()
        fig.tight_layout()
        fig.savefig(HERE / "scaling.png", dpi=80)
    except ImportError:
        pass
    n = table[3]["time_s"] / table[0]["time_s"]
    print(f"scaling: ours={table[3]['time_s']:.1f} peer={table[0]['time_s']:.1f} ratio={n:.2f} "
          f"ms/episode (128 vs 16 response tokens; 8x the tokens)")


if __name__ == "__main__":
    main()
