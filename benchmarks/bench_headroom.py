"""Headroom: achieved FLOP/s of our PPO run against a matmul peak measured in the same run.

    python benchmarks/bench_headroom.py

Runs ours_ppo.py (BENCH_EPISODES, default 512) between two timings of a 1024^3 fp32 matmul
(2 threads, best of 10); FLOPs are counted analytically (ours_ppo.flops_per_token: projections,
MLP, attention, LM head; x3 for training). The "peer" column is the matmul peak.
"""

from __future__ import annotations

import os
import sys
import time

from _common import run_worker

EPISODES = int(os.environ.get("BENCH_EPISODES", "512"))


def matmul_peak() -> float:
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = 0.0
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 1024 ** 3 / (time.perf_counter() - t))
    return best


def main():
    p0 = matmul_peak()
    r = run_worker(sys.executable, "ours_ppo.py", "--episodes", EPISODES)
    peak = max(p0, matmul_peak())
    got = r["flop_per_s"]
    print(f"PPO: {r['flops'] / 1e9:.0f} GFLOP in {r['time_s']:.1f} s; matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"headroom: ours={got / 1e9:.2f} peer={peak / 1e9:.2f} ratio={got / peak:.2f} GFLOP/s (peer = matmul peak)")


if __name__ == "__main__":
    main()
