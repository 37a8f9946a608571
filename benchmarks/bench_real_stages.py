"""Your own model, measured: every stage of README's "Your own model" walk-through on a 135M
Llama-shaped chat model built from a config (SmolLM2-135M's shape), wall time and peak RSS.

    python benchmarks/bench_real_stages.py                # build the model, run the walk-through, print a table
    python benchmarks/bench_real_stages.py --stages ppo   # only some stages (the earlier outputs must exist)
    BENCH_REAL_DIR=/tmp/real135 python benchmarks/bench_real_stages.py

Each stage runs as its own process, exactly as the README gives it (`instructrl sft ...`), with
the settings below kept small enough for a laptop CPU (a few steps each: the point is what one
step costs and what a run holds in memory, not a trained model); the peak resident set size is
the process's own (wait4's ru_maxrss, the kernel's high-water mark). Prints one table row per
stage and writes `.cache/real_stages.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EX = ROOT / "examples" / "chat"


def commands(d: Path) -> dict[str, str]:
    """The walk-through's commands (README, "Your own model"), with M = the model folder."""
    m, r = d / "chat-135m", d / "runs"
    return {
        "build": f"python scripts/make_chat_model.py --out {m}",
        "sft": f"instructrl sft --model {m} --data {EX}/demos.jsonl --val-data {EX}/demos_val.jsonl --out {r}/sft "
               f"--set epochs=1 --set batch_size=6 --set max_len=512",
        "rm": f"instructrl rm --model {r}/sft --data {EX}/prefs.jsonl --demonstrations {EX}/demos.jsonl --out {r}/rm "
              f"--set batch_size=4 --set max_len=512",
        "ppo": f"instructrl ppo --policy {r}/sft --reward {r}/rm --prompts {EX}/prompts.jsonl --out {r}/ppo "
               f"--set total_episodes=32 --set batch_size=16 --set minibatch_size=4 --set max_new_tokens=64",
        "eval": f"instructrl eval --models sft={r}/sft ppo={r}/ppo --reference {r}/sft --prompts {EX}/eval_prompts.jsonl "
                f"--judge {r}/rm --out {r}/eval --set max_new_tokens=64",
        "generate": f"instructrl generate --model {r}/ppo --prompt 'What is the capital of France?' --temperature 0 "
                    f"--max-new-tokens 16 --show-prompt",
    }


def run(cmd: str, env: dict) -> dict:
    argv = shlex.split(cmd)
    if argv[0] == "instructrl":
        argv = [sys.executable, "-m", "instructrl.cli", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    t = time.time()
    p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t
    if p.returncode != 0:
        sys.stderr.write(out[-4000:])
        raise SystemExit(f"failed ({p.returncode}): {cmd}")
    return {"command": cmd, "time_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024), "tail": out[-600:]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="*", default=None, help="Stages to run (default: all, in order).")
    args = ap.parse_args(argv)
    d = Path(os.environ.get("BENCH_REAL_DIR", HERE / ".cache" / "real"))
    d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmds = commands(d)
    if "--overwrite" not in " ".join(cmds.values()):
        for k in ("sft", "rm", "ppo"):
            cmds[k] += " --overwrite"
    results = {}
    for name, cmd in cmds.items():
        if args.stages and name not in args.stages:
            continue
        results[name] = run(cmd, env)
        print(f"{name:9s} {results[name]['time_s']:7.1f} s  {results[name]['peak_rss_mib']:6d} MiB  {cmd}", flush=True)
    (HERE / ".cache").mkdir(exist_ok=True)
    (HERE / ".cache" / "real_stages.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
