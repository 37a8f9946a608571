"""Numerical faults in SFT, RM and pretraining: a NaN/inf loss or gradient skips the step (logged);
N consecutive bad steps stop the run with one clear message, keeping the last good checkpoint and
writing no output folder. (PPO's equivalents are in test_ppo.py.) Also pretraining resume."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from instructrl import pretrain, rm, sft
from instructrl.cli import main
from instructrl.config import PretrainConfig, SFTConfig

from tiny_hf import char_gpt2_folder


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("num")
    base = char_gpt2_folder(root / "base")
    words = ["cat", "dog", "sun", "map", "red", "owl", "fig", "jam", "kit", "log", "mud", "nap"]
    (root / "demos.jsonl").write_text("".join(
        json.dumps({"prompt": f"Q: Reverse '{w}'.\nA:", "response": " " + w[::-1]}) + "\n" for w in words))
    (root / "ranks.jsonl").write_text("".join(json.dumps(
        {"prompt": f"Q: Reverse '{w}'.\nA:", "responses": [" " + w[::-1], " " + w], "ranking": [0, 1]}) + "\n"
        for w in words))
    (root / "text.txt").write_text(("the cat sat on the mat. " * 20 + "\n\n") * 10)
    return {"root": root, "base": str(base)}


def _checkpoint(d):
    from instructrl.run import load_checkpoint_state, read_checkpoint_manifest

    return load_checkpoint_state(d, read_checkpoint_manifest(d))


def _nan_after(real, n_good):
    calls = {"n": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        calls["n"] += 1
        if calls["n"] <= n_good:
            return out
        if isinstance(out, tuple):
            return (out[0] * float("nan"),) + tuple(out[1:])
        return out * float("nan")

    return flaky


def _nan_once(real, which):
    calls = {"n": 0}

    def flaky(*a, **k):
        out = real(*a, **k)
        calls["n"] += 1
        return out * float("inf") if calls["n"] == which else out

    return flaky


def test_sft_single_bad_step_is_skipped_and_logged(env, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sft, "lm_loss", _nan_once(sft.lm_loss, 3))
    cfg = SFTConfig(epochs=1, batch_size=2, checkpoint_every=0)
    with caplog.at_level(logging.WARNING):
        m = sft.train_sft(cfg, env["base"], str(env["root"] / "demos.jsonl"), str(tmp_path / "o"))
    assert "sft step 3: non-finite loss" in caplog.text and "optimizer step skipped" in caplog.text
    assert m["steps"] == 6 and m["train_loss"] == m["train_loss"]  # finite: the bad step is not averaged in
    for v in load_file(str(tmp_path / "o" / "model.safetensors")).values():
        assert torch.isfinite(v).all()


def test_sft_consecutive_bad_steps_stop_with_a_clear_message(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sft, "lm_loss", _nan_after(sft.lm_loss, 2))
    out = tmp_path / "o"
    code = main(["sft", "--model", env["base"], "--data", str(env["root"] / "demos.jsonl"), "--out", str(out),
                 "--set", "epochs=3", "--set", "batch_size=2", "--set", "checkpoint_every=1", "--set", "max_bad_steps=3"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1
    assert "sft stopped at step 5: 3 consecutive steps with a non-finite loss or gradient" in line[0]
    assert "o.checkpoint" in line[0] and "--resume" in line[0]
    assert not out.exists()  # no output folder that looks complete
    state = _checkpoint(tmp_path / "o.checkpoint")
    assert state["step"] == 2  # the last good checkpoint
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_rm_consecutive_bad_steps_stop(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rm.losses, "kwise_ranking_loss", _nan_after(rm.losses.kwise_ranking_loss, 1))
    out = tmp_path / "r"
    code = main(["rm", "--model", env["base"], "--data", str(env["root"] / "ranks.jsonl"), "--out", str(out),
                 "--set", "batch_size=1", "--set", "checkpoint_every=1", "--set", "epochs=2"])
    err = capsys.readouterr().err
    assert code == 2 and "rm stopped at step 6: 5 consecutive steps" in err and "Traceback" not in err
    assert not out.exists()
    assert _checkpoint(tmp_path / "r.checkpoint")["step"] == 1


def test_pretrain_bad_steps_stop(env, tmp_path, monkeypatch):
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(pretrain.F, "cross_entropy", _nan_after(real, 4))
    cfg = PretrainConfig(n_layer=1, n_embd=16, n_head=2, n_positions=64, max_steps=20, batch_size=2, seq_len=16,
                         eval_every=100, checkpoint_every=2, warmup_steps=0)
    with pytest.raises(Exception, match="pretrain stopped at step 9: 5 consecutive"):
        pretrain.pretrain_base(cfg, str(env["root"] / "text.txt"), str(tmp_path / "b"), quiet=True)
    assert _checkpoint(tmp_path / "b.checkpoint")["step"] == 4


def test_pretrain_resume_equals_uninterrupted(env, tmp_path, monkeypatch):
    cfg = PretrainConfig(n_layer=1, n_embd=16, n_head=2, n_positions=64, max_steps=8, batch_size=2, seq_len=16,
                         eval_every=4, checkpoint_every=3, warmup_steps=2, dropout=0.1)
    text = str(env["root"] / "text.txt")
    full = pretrain.pretrain_base(cfg, text, str(tmp_path / "full"), val_data=text, quiet=True)

    real, calls = pretrain.random_windows, {"n": 0}

    def crash_at_7(*a, **k):  # an interruption during step 7 (after the checkpoint at step 6)
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pretrain, "random_windows", crash_at_7)
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain_base(cfg, text, str(tmp_path / "part"), val_data=text, quiet=True)
    monkeypatch.setattr(pretrain, "random_windows", real)
    part = pretrain.pretrain_base(cfg, text, str(tmp_path / "part"), val_data=text, quiet=True, resume=True)
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in full.items() if k != "time_s"} == {k: v for k, v in part.items() if k != "time_s"}
    strip = lambda p: [",".join(c for i, c in enumerate(r.split(",")) if i != 3) for r in p.read_text().splitlines()]
    assert strip(tmp_path / "full" / "log.csv") == strip(tmp_path / "part" / "log.csv")
    assert not (tmp_path / "part.checkpoint").exists()
