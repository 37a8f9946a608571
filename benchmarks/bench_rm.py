"""RM side by side: instructrl's K-wise RM vs TRL 1.16's RewardTrainer on pairs (ours_rm.py / peer_rm.py).

    python benchmarks/bench_rm.py     # K = 4 and K = 9, BENCH_REPS (3) alternating runs each

One epoch over the ranking file, batches of 72 sequences on both sides. Figure: comparisons/s.
"""

from __future__ import annotations

import sys

from _common import PEER_RM, median, reps, run_worker, save


def main():
    lines, allres = [], {}
    for k in (4, 9):
        ours, peer = [], []
        for i in range(reps()):
            ours.append(run_worker(sys.executable, "ours_rm.py", "--k", k))
            peer.append(run_worker(PEER_RM, "peer_rm.py", "--k", k))
            print(f"K={k} run {i}: ours {ours[-1]['comparisons_per_s']:.1f}, peer {peer[-1]['comparisons_per_s']:.1f} "
                  f"comparisons/s", flush=True)
        o, p = median(ours, "comparisons_per_s"), median(peer, "comparisons_per_s")
        allres[k] = {"ours": ours, "peer": peer}
        lines.append(f"rm-k{k}: ours={o:.1f} peer={p:.1f} ratio={o / p:.2f} comparisons/s")
    save("rm", allres)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
