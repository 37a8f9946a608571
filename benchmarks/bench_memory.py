"""Memory: peak RSS (VmHWM) of the PPO scenario, ours vs TRL 1.12 (medians over bench_ppo.py's runs).

    python benchmarks/bench_memory.py     # reads .cache/ppo.json; runs bench_ppo.py first if missing
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import HERE, median


def main():
    path = HERE / ".cache" / "ppo.json"
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "bench_ppo.py")], check=True)
    d = json.loads(path.read_text())
    o, p = median(d["ours"], "peak_rss_mb"), median(d["peer"], "peak_rss_mb")
    print(f"memory: ours={o:.0f} peer={p:.0f} ratio={o / p:.2f} MiB peak RSS")


if __name__ == "__main__":
    main()
