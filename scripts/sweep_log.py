"""The training logs of a pipeline run's PPO and its sweeps, side by side: proxy (RM score), gold and
KL of the rollouts, first and last updates (means over ``--window`` updates).

    python scripts/sweep_log.py runs/paper [--window 8]

Reads ``RUN/ppo/log.csv`` and every ``RUN/sweeps/ppo_*/log.csv`` (``gold`` is there when PPO ran with
the world's gold judge, as the pipeline runs it). Over-optimisation shows as a last-window score
above the first with the gold below it, more so at smaller beta.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def _mean(rows, key):
    vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a pipeline output folder")
    ap.add_argument("--window", type=int, default=8, help="updates averaged at the start and at the end")
    a = ap.parse_args(argv)
    run = Path(a.run)
    folders = [("ppo", run / "ppo")] + [(d.name, d) for d in sorted((run / "sweeps").glob("ppo_*")) if d.is_dir() and not d.name.endswith(".checkpoint")]
    print("| run | updates | score first | score last | gold first | gold last | KL first | KL last |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, d in folders:
        log = d / "log.csv"
        if not log.exists():
            print(f"| {name} | (no log.csv yet) | | | | | | |")
            continue
        rows = list(csv.DictReader(log.open()))
        first, last = rows[:a.window], rows[-a.window:]
        cells = [f"{_mean(w, k):.3f}" for k in ("score_raw", "gold") for w in (first, last)]
        cells += [f"{_mean(w, 'kl'):.2f}" for w in (first, last)]
        print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
