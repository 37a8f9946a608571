"""PPO side by side: instructrl vs TRL 1.12.0's PPOTrainer (see ours_ppo.py / peer_ppo.py).

    python benchmarks/bench_ppo.py            # BENCH_EPISODES (512), BENCH_REPS (3)

Alternates three runs per repetition (fresh processes): ours at instructrl's defaults (which have
``reuse_sample_logprobs``, ``fused_adamw``, ``trim_padding`` and ``score_chunk=16`` on), ours with
every opt-in on (inverse-CDF sampling and the three side-by-side switches: "ours+opt"), and the peer;
prints each run and the medians of episodes/s, generated tokens/s and the time split, checks that
the default run's per-update losses equal those of a run with every optimization off (``--slow``)
to float rounding (the fused GELU is not bit-identical), and saves everything to
``.cache/ppo.json`` (read by bench_memory.py and bench_headroom.py).
"""

from __future__ import annotations

import json
import os
import sys

from _common import PEER_PPO, loss_max_diff, median, reps, run_worker, save

EPISODES = int(os.environ.get("BENCH_EPISODES", "512"))
#: Largest |default - all optimizations off| of a per-minibatch loss that still counts as equal: the
#: fused GELU rounds differently (~1e-7 per activation), which 8 updates of training carry forward.
LOSS_TOL = 1e-4
#: The opt-in switches of ours_ppo.py that instructrl's defaults leave off, all on: inverse-CDF draws
#: and the three side-by-side switches (sampling's and inverse-CDF's draws differ at a fixed seed);
#: bench_switches.py measures each switch alone.
OPT_INS = ("--sampling", "inverse_cdf", "--side-by-side-backward", "--side-by-side-scoring",
           "--side-by-side-sampling")


def main():
    ours, opt, peer = [], [], []
    for i in range(reps()):
        ours.append(run_worker(sys.executable, "ours_ppo.py", "--episodes", EPISODES))
        opt.append(run_worker(sys.executable, "ours_ppo.py", "--episodes", EPISODES, *OPT_INS))
        opt[-1]["side"] = "ours+opt"
        peer.append(run_worker(PEER_PPO, "peer_ppo.py", "--episodes", EPISODES))
        for r in (ours[-1], opt[-1], peer[-1]):
            print(f"run {i} {r['side']}: {r['episodes_per_s']:.2f} episodes/s, gen {r['time_gen']:.1f}s "
                  f"score {r['time_score']:.1f}s update {r['time_update']:.1f}s, peak RSS {r['peak_rss_mb']:.0f} MiB",
                  flush=True)
    slow = run_worker(sys.executable, "ours_ppo.py", "--episodes", EPISODES, "--slow")
    fast_losses, slow_losses = ours[0]["losses"], slow["losses"]
    diff = loss_max_diff(fast_losses, slow_losses)
    same = len(fast_losses) == len(slow_losses) and diff <= LOSS_TOL
    print(f"losses: {len(fast_losses)} minibatch (policy, value) losses, max |fast - slow| = {diff:.3g} "
          f"-> {'MATCH' if same else 'MISMATCH'}; optimizations-off run {slow['episodes_per_s']:.2f} episodes/s")
    for side, rs in (("ours", ours), ("ours+opt", opt), ("peer", peer)):
        print(f"{side} median: {median(rs, 'episodes_per_s'):.2f} episodes/s, "
              f"{median(rs, 'gen_tokens_per_s'):.0f} generated tokens/s, split gen/score/update = "
              f"{median(rs, 'time_gen'):.1f}/{median(rs, 'time_score'):.1f}/{median(rs, 'time_update'):.1f} s")
    save("ppo", {"episodes": EPISODES, "ours": [{k: v for k, v in r.items() if k != "losses"} for r in ours],
                 "ours_opt": [{k: v for k, v in r.items() if k != "losses"} for r in opt],
                 "peer": peer, "slow": {k: v for k, v in slow.items() if k != "losses"}, "loss_max_diff": diff,
                 "losses_match": same})
    o, p = median(ours, "episodes_per_s"), median(peer, "episodes_per_s")
    ot, pt = median(ours, "gen_tokens_per_s"), median(peer, "gen_tokens_per_s")
    print(f"ppo-tokens: ours={ot:.1f} peer={pt:.1f} ratio={ot / pt:.2f} generated tokens/s")
    print(f"ppo: ours={o:.2f} peer={p:.2f} ratio={o / p:.2f} episodes/s")
    oo = median(opt, "episodes_per_s")
    print(f"ppo-opt: ours={oo:.2f} peer={p:.2f} ratio={oo / p:.2f} episodes/s "
          f"({' '.join(OPT_INS)})")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
