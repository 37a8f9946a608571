"""Your own model, measured: README's "Your own model" walk-through, command by command, as written,
on a 135M Llama-shaped chat model built from a config (SmolLM2-135M's shape): wall time and peak RSS.

    python benchmarks/bench_real_stages.py                    # every command, in a scratch folder
    python benchmarks/bench_real_stages.py --only ppo eval    # commands whose text contains a word
    BENCH_REAL_DIR=/tmp/real135 python benchmarks/bench_real_stages.py

The commands are read from README.md (the ```bash block after "Your own model") and run, one
process each, in BENCH_REAL_DIR (default benchmarks/.cache/real/) where `examples/` and `scripts/`
link to this checkout's; `instructrl` is the command on PATH (export PYTHONPATH=src to run a
checkout's code). Peak RSS is the command's own high-water mark (wait4's ru_maxrss). Prints one
row per command and writes `.cache/real_stages.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def readme_commands() -> list[str]:
    """The shell commands of README's walk-through (comments and continuation lines joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own model"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    cmds, cur = [], ""
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        cur += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            cmds.append(cur.strip())
            cur = ""
    return cmds


def run(cmd: str, cwd: Path, env: dict) -> dict:
    t = time.time()
    p = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(out[-4000:])
        raise SystemExit(f"failed: {cmd}")
    return {"command": cmd, "time_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024), "tail": out[-800:]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="Run only the commands that contain one of these words.")
    args = ap.parse_args(argv)
    d = Path(os.environ.get("BENCH_REAL_DIR", HERE / ".cache" / "real"))
    d.mkdir(parents=True, exist_ok=True)
    for name in ("examples", "scripts"):
        if not (d / name).exists():
            (d / name).symlink_to(ROOT / name)
    env = dict(os.environ)
    results = []
    state = {}
    for cmd in readme_commands():
        if cmd.startswith("M=") or cmd.startswith("export "):  # shell variables the later commands use
            k, v = cmd.split(" ", 1)[-1].split("=", 1) if cmd.startswith("export ") else cmd.split("=", 1)
            state[k] = v
            continue
        cmd = "".join(f"{k}={v}; " for k, v in state.items()) + cmd
        if args.only and not any(w in cmd for w in args.only):
            continue
        r = run(cmd, d, env)
        results.append(r)
        print(f"{r['time_s']:7.1f} s  {r['peak_rss_mib']:6d} MiB  {cmd}", flush=True)
    (HERE / ".cache").mkdir(exist_ok=True)
    (HERE / ".cache" / "real_stages.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
