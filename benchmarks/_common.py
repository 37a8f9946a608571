"""Helpers shared by the benchmark drivers: run a worker in ours / the peer's interpreter, medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_PPO = HERE / ".venv-peer" / "bin" / "python"
PEER_RM = HERE / ".venv-peer-rm" / "bin" / "python"


def env() -> dict:
    e = dict(os.environ)
    # Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed machine spinning
    # makes every small op wait for a descheduled thread (10x slower for both sides alike).
    e.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    e.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    return e


def run_worker(python, script: str, *args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "res.json"
        cmd = [str(python), str(HERE / script), *map(str, args), "--json", str(out)]
        p = subprocess.run(cmd, env=env(), capture_output=True, text=True)
        if p.returncode != 0 or not out.exists():
            sys.stderr.write(p.stdout[-3000:] + p.stderr[-5000:])
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode})")
        return json.loads(out.read_text())


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def loss_max_diff(losses_a: list, losses_b: list) -> float:
    """Largest |a - b| over two runs' per-minibatch (policy, value) losses, minibatch by minibatch."""
    return max(abs(a - b) for fa, fb in zip(losses_a, losses_b) for a, b in zip(fa, fb))


def reps() -> int:
    return int(os.environ.get("BENCH_REPS", "3"))


def save(name: str, data) -> None:
    (HERE / ".cache").mkdir(exist_ok=True)
    (HERE / ".cache" / f"{name}.json").write_text(json.dumps(data, indent=1))
