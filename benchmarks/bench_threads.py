"""CPU threads: how much a second busy process slows a quick SFT, per thread setting (a benchmark, not a test).

    python benchmarks/bench_threads.py                  # every setting, 3 runs each, alone and beside a busy loop
    BENCH_REPEATS=1 python benchmarks/bench_threads.py

For each setting, fresh `instructrl sft` processes (a (2, 64) character GPT-2, the world's small
base, on 256 demonstrations, 2 epochs of batch 32 = 16 steps, plus the load) are timed alone and
then while another process spins a CPU core (`busy.py`: a pure-Python loop, as "anything else" a
laptop runs). Settings:

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
    from tiny_hf import write_jsonl

    from instructrl.models import build_gpt2, save_model_folder
    from instructrl.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    base = save_model_folder(build_gpt2(tok, n_layer=2, n_embd=64, n_head=4, n_positions=256), tok, root / "base")
    demos = [{"prompt": f"Q: Reverse the word '{w}'.\nA:", "response": " " + w[::-1]}
             for w in ("apple river stone cloud seven table light green paper horse number letter " * 22).split()][:256]
    return base, write_jsonl(root / "demos.jsonl", demos)


def _run(base, demos, out, extra_env) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update({"PYTHONPATH": str(ROOT / "src"), **extra_env})
    cmd = [sys.executable, "-m", "instructrl.cli", "sft", "--model", str(base), "--data", str(demos), "--out", str(out),
           "--overwrite", "--set", "epochs=2", "--set", "batch_size=32", "--set", "report_to=[none]",
           "--set", "checkpoint_every=0"]
    t = time.time()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t


def main():
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, demos = _setup(root)
        times = {(s, busy): [] for s in SETTINGS for busy in (False, True)}
        for _ in range(repeats):
            for busy in (False, True):
                hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
                try:
                    if hog:
                        time.sleep(0.5)
                    for name, env in SETTINGS.items():
                        times[(name, busy)].append(_run(base, demos, root / f"sft-{name}", env))
                finally:
                    if hog:
                        hog.kill()
                        hog.wait()
    out = {}
    print(f"{'setting':8s} {'alone s':>8s} {'busy s':>8s} {'slowdown':>9s}")
    for name in SETTINGS:
        a, b = statistics.median(times[(name, False)]), statistics.median(times[(name, True)])
        out[name] = {"alone_s": a, "busy_s": b, "slowdown": b / a, "runs": {"alone": times[(name, False)],
                                                                          "busy": times[(name, True)]}}
        print(f"{name:8s} {a:8.1f} {b:8.1f} {b / a:8.2f}x")
    (HERE / ".cache").mkdir(exist_ok=True)
    (HERE / ".cache" / "threads.json").write_text(json.dumps(out, indent=2))
    print("threads: " + " ".join(f"{k}={v['slowdown']:.2f}x" for k, v in out.items())
          + f" (alone: {' '.join(f'{k}={v['alone_s']:.1f}s' for k, v in out.items())}; nproc={os.cpu_count()})")


if __name__ == "__main__":
    main()
