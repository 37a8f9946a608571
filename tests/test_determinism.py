"""Same seed, same machine, CPU: two runs of the quick pipeline (shrunk further with --set) in
separate run folders and separate base-model caches give identical metrics.json (timings aside)
and byte-identical weights. The second run is killed (SIGKILL) in the middle of PPO-ptx and
finished by re-running the same command, which resumes from the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

SMALL = ["world.n_sft=120", "world.n_sft_val=30", "world.n_rm=60", "world.n_ppo=60", "world.n_eval=40",
         "world.corpus_chars=40000", "world.n_benchmark=30", "base_small.max_steps=40", "base_small.eval_every=20",
         "sft.epochs=1", "compare.k_max=4", "compare.max_new_tokens=16", "ppo.total_episodes=96",
         "ppo_ptx.total_episodes=96", "ppo.batch_size=32", "ppo_ptx.batch_size=32", "ppo.max_new_tokens=16",
         "ppo_ptx.max_new_tokens=16", "eval.n_prompts=40", "eval.bootstrap=50", "eval.max_new_tokens=16",
         "ppo_ptx.checkpoint_every=1"]


def _pipeline(root, name, kill_at=None):
    """Run the pipeline; with `kill_at` (a path), SIGKILL it once that file exists, then re-run it."""
    out = root / name
    env = dict(os.environ, INSTRUCTRL_CACHE_DIR=str(root / f"cache_{name}"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    args = [sys.executable, "-m", "instructrl.cli", "pipeline", "--preset", "quick", "--out", str(out)]
    for s in SMALL:
        args += ["--set", s]
    if kill_at is not None:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        t0 = time.time()
        while not (out / kill_at).exists():
            assert p.poll() is None, "the pipeline ended before the checkpoint to kill at appeared"
            assert time.time() - t0 < 500
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        assert p.wait() == -signal.SIGKILL
        assert not (out / "metrics.json").exists()
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    if kill_at is not None:
        assert "sft: cached" in r.stdout and "resuming ppo from" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    return out


def test_two_quick_pipelines_are_identical_even_after_kill9_and_rerun(tmp_path):
    a, b = _pipeline(tmp_path, "a"), _pipeline(tmp_path, "b", kill_at="ppo_ptx.checkpoint/state.json")
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("time_s.")}
    assert strip(ma) == strip(mb)
    assert len(strip(ma)) > 50
    for folder in ("base_small", "sft", "rm", "ppo", "ppo_ptx", "ppo/value_model"):
        assert (a / folder / "model.safetensors").read_bytes() == (b / folder / "model.safetensors").read_bytes(), folder
    for f in ("comparisons.jsonl", "comparisons_heldout.jsonl", "world/demonstrations.jsonl"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
