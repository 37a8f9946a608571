"""CPU threads: how much a second busy process slows a quick SFT and PPO, per thread setting (a benchmark, not a test).

    python benchmarks/bench_threads.py                  # every setting, 3 runs each, alone and beside a busy loop
    BENCH_REPEATS=1 python benchmarks/bench_threads.py

For each setting, fresh processes of two workloads are timed alone and then while another
process spins a CPU core (a pure-Python loop, as "anything else" a laptop runs): `instructrl sft`
(a (2, 64) character GPT-2, the world's small base, on 256 demonstrations, 2 epochs of batch 32 =
16 steps, plus the load) and `instructrl ppo` (the same model as policy and RM, 2 updates of 64
episodes with 32 new tokens: sampling, thousands of small ops). Settings:

- ``spin``: torch's default thread count with OpenMP's default wait policy (threads spin while
  they wait) — what instructrl did before it chose;
- ``passive``: the same thread count, ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep) —
  what instructrl now sets unless the environment says otherwise (instructrl.threads);
- ``one``: one thread (``OMP_NUM_THREADS=1``).

Prints the median wall time per setting, the slowdown beside the busy loop, and a summary line
``threads: <setting>=<slowdown>x ...``. The target (issue 16): ``passive`` slows down at most ~2x.
The machine is shared, so the numbers are noisy: runs alternate between settings, medians are taken.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SETTINGS = {
    "spin": {"INSTRUCTRL_OMP_WAIT_POLICY": "default"},
    "passive": {},
    "one": {"OMP_NUM_THREADS": "1"},
}
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 3600:\n    pass\n"


def _setup(root: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "src"))
    from tiny_hf import reward_folder, write_jsonl

    from instructrl.models import build_gpt2, save_model_folder
    from instructrl.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    base = save_model_folder(build_gpt2(tok, n_layer=2, n_embd=64, n_head=4, n_positions=256), tok, root / "base")
    demos = [{"prompt": f"Q: Reverse the word '{w}'.\nA:", "response": " " + w[::-1]}
             for w in ("apple river stone cloud seven table light green paper horse number letter " * 22).split()][:256]
    reward_folder(base, root / "rm")
    write_jsonl(root / "prompts.jsonl", [{"prompt": d["prompt"]} for d in demos])
    return base, write_jsonl(root / "demos.jsonl", demos)


def _command(workload: str, root: Path, out: Path) -> list[str]:
    common = ["--out", str(out), "--overwrite", "--set", "report_to=[none]"]
    if workload == "sft":
        return ["sft", "--model", str(root / "base"), "--data", str(root / "demos.jsonl"), *common,
                "--set", "epochs=2", "--set", "batch_size=32", "--set", "checkpoint_every=0"]
    return ["ppo", "--policy", str(root / "base"), "--reward", str(root / "rm"), "--prompts", str(root / "prompts.jsonl"),
            *common, "--set", "total_episodes=128", "--set", "batch_size=64", "--set", "minibatch_size=16",
            "--set", "max_new_tokens=32"]


def _run(workload, root, out, extra_env) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update({"PYTHONPATH": str(ROOT / "src"), **extra_env})
    cmd = [sys.executable, "-m", "instructrl.cli", *_command(workload, root, out)]
    t = time.time()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t


def main():
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    workloads = ("sft", "ppo")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _setup(root)
        times = {(w, s, busy): [] for w in workloads for s in SETTINGS for busy in (False, True)}
        for _ in range(repeats):
            for busy in (False, True):
                hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
                try:
                    if hog:
                        time.sleep(0.5)
                    for w in workloads:
                        for name, env in SETTINGS.items():
                            times[(w, name, busy)].append(_run(w, root, root / f"{w}-{name}", env))
                finally:
                    if hog:
                        hog.kill()
                        hog.wait()
    out = {}
    print(f"{'workload':8s} {'setting':8s} {'alone s':>8s} {'busy s':>8s} {'slowdown':>9s}")
    for w in workloads:
        for name in SETTINGS:
            a, b = statistics.median(times[(w, name, False)]), statistics.median(times[(w, name, True)])
            out[f"{w}.{name}"] = {"alone_s": a, "busy_s": b, "slowdown": b / a,
                                  "runs": {"alone": times[(w, name, False)], "busy": times[(w, name, True)]}}
            print(f"{w:8s} {name:8s} {a:8.1f} {b:8.1f} {b / a:8.2f}x")
    (HERE / ".cache").mkdir(exist_ok=True)
    (HERE / ".cache" / "threads.json").write_text(json.dumps(out, indent=2))
    alone = " ".join(f"{k}={v['alone_s']:.1f}s" for k, v in out.items())
    print("threads: " + " ".join(f"{k}={v['slowdown']:.2f}x" for k, v in out.items())
          + f" (alone: {alone}; nproc={os.cpu_count()})")


if __name__ == "__main__":
    main()
