"""Per-stage wall time of pipeline runs side by side (a report, not a test).

    python benchmarks/stage_times.py runs/before runs/after [more runs ...]

Reads each run's metrics.json (`time_s.<stage>`, written by `instructrl pipeline`) and, for the PPO
stages, the generation / scoring / update split summed over log.csv's rows (`time_gen`,
`time_score`, `time_train`). Prints a markdown table, one column per run, and the ratio of the
first run to the last.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def read(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    rows = {k[len("time_s."):]: float(v) for k, v in m.items() if k.startswith("time_s.") and v is not None}
    for stage in ("ppo", "ppo_ptx"):
        log = run / stage / "log.csv"
        if log.exists():
            with log.open() as fh:
                recs = list(csv.DictReader(fh))
            for part in ("gen", "score", "train"):
                vals = [float(r[f"time_{part}"]) for r in recs if r.get(f"time_{part}") not in (None, "")]
                if vals:
                    rows[f"{stage} ({part})"] = sum(vals)
    return rows


def main(argv=None):
    runs = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    if not runs:
        raise SystemExit(__doc__)
    tables = [read(r) for r in runs]
    names = []
    for t in tables:
        names += [k for k in t if k not in names]
    names = [n for n in names if n != "total"] + (["total"] if any("total" in t for t in tables) else [])
    print("| stage | " + " | ".join(str(r) for r in runs) + (" | first / last |" if len(runs) > 1 else " |"))
    print("| --- " * (len(runs) + 1 + (len(runs) > 1)) + "|")
    for n in names:
        vals = [t.get(n) for t in tables]
        cells = [f"{v:.0f}" if v is not None else "—" for v in vals]
        ratio = f" | {vals[0] / vals[-1]:.2f}x" if len(runs) > 1 and vals[0] and vals[-1] else (" | —" if len(runs) > 1 else "")
        print(f"| {n} | " + " | ".join(cells) + ratio + " |")


if __name__ == "__main__":
    main()
