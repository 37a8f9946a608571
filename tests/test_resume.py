"""Resume after kill -9, bit for bit: a real `instructrl` subprocess is killed with SIGKILL in the
middle of SFT, RM and PPO-ptx, resumed with --resume, and its final weights (safetensors), metrics
and log equal those of an uninterrupted run. Also: a save interrupted by kill -9 leaves the
previous checkpoint / output folder usable, and nothing that looks complete but is not.

Each subprocess runs on one thread (OMP_NUM_THREADS=1): CPU kernels are deterministic for a
fixed thread count, which is what makes bit-exact equality possible.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from instructrl.models import build_gpt2, save_model_folder
from instructrl.run import load_checkpoint_state, read_checkpoint_manifest
from instructrl.tokenizer import build_char_tokenizer

from tiny_hf import char_gpt2_folder, reward_folder

TIMING_KEYS = {"time_s", "tokens_per_s", "prompts_per_s", "time_gen", "time_score", "time_train", "time_total"}
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0")
ENV.pop("INSTRUCTRL_PROGRESS", None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    base = char_gpt2_folder(root / "base")
    rm_dir = reward_folder(base, root / "rm_init", seed=1)
    words = ["cat", "dog", "sun", "map", "red", "owl", "fig", "jam", "kit", "log", "mud", "nap", "oak", "pie",
             "rug", "sky", "tap", "van", "wax", "yak", "zip", "bee", "cow", "elk"]
    demos = [{"prompt": f"Q: Reverse the word '{w}'.\nA:", "response": " " + w[::-1]} for w in words]
    (root / "demos.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos))
    (root / "val.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos[:6]))
    ranks = [{"prompt": f"Q: Reverse the word '{w}'.\nA:", "responses": [" " + w[::-1], " " + w, " I don't know"],
              "ranking": [0, 2, 1]} for w in words + [w + w for w in words]]
    (root / "ranks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ranks))
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": d["prompt"]}) + "\n" for d in demos))
    (root / "pretrain.txt").write_text("the cat sat on the mat.\n\nQ: what is 2+2?\nA: 4\n\nhello world, hello again.\n" * 4)
    return {"root": root, "base": str(base), "rm_init": str(rm_dir)}


def _cmd(args):
    return [sys.executable, "-m", "instructrl.cli", *args]


def _run(args, cwd):
    r = subprocess.run(_cmd(args), capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def _run_and_kill(args, ckpt: Path, cwd) -> int:
    """Start the command, SIGKILL it as soon as a checkpoint exists; return the checkpoint's step."""
    p = subprocess.Popen(_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, cwd=cwd)
    t0 = time.time()
    while not ckpt.exists():
        if p.poll() is not None:
            pytest.fail(f"the run ended (rc {p.returncode}) before its first checkpoint: {p.stderr.read()[-2000:]!r}")
        if time.time() - t0 > 240:
            p.kill()
            pytest.fail("no checkpoint after 240 s")
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stderr.close()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    return read_checkpoint_manifest(ckpt.parent)["step"]


def _same_weights(a: Path, b: Path, name="model.safetensors"):
    wa, wb = load_file(str(a / name)), load_file(str(b / name))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _same_run(a: Path, b: Path):
    _same_weights(a, b)
    assert _strip(json.loads((a / "metrics.json").read_text())) == _strip(json.loads((b / "metrics.json").read_text()))
    with open(a / "log.csv") as fa, open(b / "log.csv") as fb:
        ra, rb = _strip(list(csv.DictReader(fa))), _strip(list(csv.DictReader(fb)))
    assert ra == rb
    assert (a / "run.json").read_text() == (b / "run.json").read_text()


def test_sft_kill9_resume_is_bit_exact(tiny, tmp_path):
    args = ["sft", "--model", tiny["base"], "--data", str(tiny["root"] / "demos.jsonl"),
            "--val-data", str(tiny["root"] / "val.jsonl"), "--ptx-data", str(tiny["root"] / "pretrain.txt"),
            "--set", "epochs=5", "--set", "batch_size=2", "--set", "lr=3e-3", "--set", "dropout=0.1",
            "--set", "ptx_fraction=0.2", "--set", "eval_every=5", "--set", "checkpoint_every=3", "--set", "max_len=64"]
    _run(args + ["--out", "full"], tmp_path)
    step = _run_and_kill(args + ["--out", "part"], tmp_path / "part.checkpoint" / "state.json", tmp_path)
    assert 0 < step < 60 and not (tmp_path / "part" / "config.json").exists()
    _run(args + ["--out", "part", "--resume"], tmp_path)
    _same_run(tmp_path / "full", tmp_path / "part")
    assert not (tmp_path / "part.checkpoint").exists()  # removed once the output is safely written


def test_rm_kill9_resume_is_bit_exact(tiny, tmp_path):
    args = ["rm", "--model", tiny["base"], "--data", str(tiny["root"] / "ranks.jsonl"),
            "--demonstrations", str(tiny["root"] / "demos.jsonl"),
            "--set", "epochs=3", "--set", "batch_size=2", "--set", "checkpoint_every=2", "--set", "max_len=64"]
    _run(args + ["--out", "full"], tmp_path)
    step = _run_and_kill(args + ["--out", "part"], tmp_path / "part.checkpoint" / "state.json", tmp_path)
    assert 0 < step < 66
    _run(args + ["--out", "part", "--resume"], tmp_path)
    _same_run(tmp_path / "full", tmp_path / "part")


def test_ppo_ptx_kill9_resume_is_bit_exact(tiny, tmp_path):
    args = ["ppo", "--policy", tiny["base"], "--reward", tiny["rm_init"], "--prompts", str(tiny["root"] / "prompts.jsonl"),
            "--ptx-data", str(tiny["root"] / "pretrain.txt"),
            "--set", "ptx_coef=1.0", "--set", "total_episodes=192", "--set", "batch_size=8", "--set", "minibatch_size=4",
            "--set", "max_new_tokens=8", "--set", "ptx_batch_size=2", "--set", "ptx_seq_len=32", "--set", "checkpoint_every=1",
            "--set", "lr=1e-3", "--set", "adaptive_kl=true", "--set", "ema_decay=0.9", "--set", "warmup_updates=3"]
    _run(args + ["--out", "full"], tmp_path)
    update = _run_and_kill(args + ["--out", "part"], tmp_path / "part.checkpoint" / "state.json", tmp_path)
    assert 0 < update < 24 and not (tmp_path / "part").exists()
    state = load_checkpoint_state(tmp_path / "part.checkpoint", read_checkpoint_manifest(tmp_path / "part.checkpoint"))
    assert state["update"] == update and state["ema"] and state["kl_ctl"]["value"] > 0
    _run(args + ["--out", "part", "--resume"], tmp_path)
    _same_run(tmp_path / "full", tmp_path / "part")  # the saved policy is the EMA: it came through the resume
    _same_weights(tmp_path / "full" / "value_model", tmp_path / "part" / "value_model")
    assert not (tmp_path / "part.checkpoint").exists() and not (tmp_path / "part" / "checkpoint").exists()


# ------------------------------------------------------------------------------ interrupted saves

_SAVE_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    import torch
    from instructrl import models, run
    from instructrl.models import build_gpt2, save_model_folder
    from instructrl.tokenizer import build_char_tokenizer

    where, out = sys.argv[1], Path(sys.argv[2])

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "checkpoint_write":  # part of the new tensors file written, then kill -9
        def half(tensors, filename, *a, **k):
            Path(filename).write_bytes(b"x" * 4096)
            die()
        run.save_file = half  # the safetensors writer run.save_checkpoint calls
        run.save_checkpoint(out, {"step": 2}, {"w": torch.ones(3)})
    elif where == "checkpoint_rename":  # the whole new checkpoint written, killed before the swap
        run.replace_dir = die  # the swap run.save_checkpoint calls
        run.save_checkpoint(out, {"step": 2}, {"w": torch.ones(3)})
    else:
        tok = build_char_tokenizer()
        model = build_gpt2(tok, 1, 16, 2, 128, seed=1)
        if where == "model_write":  # killed while the weights are half written
            real = model.save_pretrained
            def partial(d, **k):
                real(d, **k)
                p = Path(d) / "model.safetensors"
                p.write_bytes(p.read_bytes()[:100])
                die()
            model.save_pretrained = partial
        else:  # "model_rename": every file written, killed before the rename
            models._fsync_tree = die
        save_model_folder(model, tok, out)
    print("not killed")
''')


def _kill_during(where: str, out: Path):
    r = subprocess.run([sys.executable, "-c", _SAVE_SCRIPT, where, str(out)], capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr


@pytest.mark.parametrize("where", ["checkpoint_write", "checkpoint_rename"])
def test_kill9_during_checkpoint_save_keeps_the_previous_one(tmp_path, where):
    from instructrl.run import save_checkpoint

    ckpt = tmp_path / "run.checkpoint"
    save_checkpoint(ckpt, {"step": 1}, {"w": torch.zeros(3)})
    _kill_during(where, ckpt)
    manifest = read_checkpoint_manifest(ckpt)
    assert manifest["step"] == 1 and torch.equal(load_checkpoint_state(ckpt, manifest)["w"], torch.zeros(3))
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.json", "tensors.safetensors"]
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["run.checkpoint"]
    save_checkpoint(ckpt, {"step": 3}, {"w": torch.ones(3)})  # and the next save works
    assert read_checkpoint_manifest(ckpt)["step"] == 3


@pytest.mark.parametrize("where", ["model_write", "model_rename"])
def test_kill9_during_output_save_keeps_the_previous_folder(tmp_path, where):
    from instructrl.models import load_policy

    tok = build_char_tokenizer()
    old = build_gpt2(tok, 1, 16, 2, 128, seed=0)
    save_model_folder(old, tok, tmp_path / "model")
    _kill_during(where, tmp_path / "model")
    loaded, _ = load_policy(tmp_path / "model")  # the old folder, whole
    for a, b in zip(old.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
    # Nothing else that looks like a model folder: only hidden temp folders may be left behind.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["model"]
    save_model_folder(build_gpt2(tok, 1, 16, 2, 128, seed=2), tok, tmp_path / "model")  # a later save replaces it
