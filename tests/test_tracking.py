"""Trackers (report_to): TensorBoard event files by default, clear errors for missing wandb/MLflow,
nothing with [none]; and the memory options (gradient checkpointing, bf16) on a tiny SFT run."""

from __future__ import annotations

import csv
import json
import logging
import sys

import pytest

from instructrl import rm, sft, tracking
from instructrl.config import RMConfig, SFTConfig, apply_overrides, config_hash
from instructrl.errors import InstructRLError

from tiny_hf import char_gpt2_folder, write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

DEMOS = [{"prompt": f"Q: question {i}?\nA:", "response": f" demo {i}"} for i in range(6)]
RANKINGS = [{"prompt": f"Q: question {i}?\nA:", "responses": [f" a{i}", f" bb{i}", f" ccc{i}"],
             "ranking": [i % 3, (i + 1) % 3, (i + 2) % 3]} for i in range(8)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return char_gpt2_folder(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "demos.jsonl", DEMOS)


def sft_cfg(**kw):
    return SFTConfig(**{**dict(epochs=1, lr=1e-2, batch_size=3, max_len=64, checkpoint_every=0), **kw})


def scalars(run_dir) -> dict:
    """{tag: [(step, value), ...]} from every TensorBoard event file under `run_dir/tensorboard`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for d in sorted({p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(d))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_sft_writes_tensorboard_by_default(tmp_path, base, demos):
    pytest.importorskip("tensorboard")
    out = tmp_path / "sft"
    assert SFTConfig().report_to == ["auto"]  # TensorBoard when it is installed
    sft.train_sft(sft_cfg(epochs=2), str(base), str(demos), str(out), val_data=str(demos))
    tags = scalars(out)
    assert {"sft/loss", "sft/lr", "sft/grad_norm", "sft/tokens_per_s", "sft/val_loss"} <= set(tags), sorted(tags)
    assert "sft/step" not in tags  # the step is the x axis, not a scalar
    rows = [r for r in csv.DictReader((out / "log.csv").open()) if r["loss"]]
    assert [s for s, _ in tags["sft/loss"]] == [int(r["step"]) for r in rows]
    assert [v for _, v in tags["sft/loss"]] == pytest.approx([float(r["loss"]) for r in rows], abs=1e-5)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging leftovers


def test_rm_writes_tensorboard(tmp_path, base):
    pytest.importorskip("tensorboard")
    data = write_jsonl(tmp_path / "r.jsonl", RANKINGS)
    out = tmp_path / "rm"
    rm.train_reward_model(RMConfig(batch_size=2, val_fraction=0.25, lr=1e-3, max_len=64, checkpoint_every=0),
           str(base), str(data), str(out), verbose=False)
    tags = scalars(out)
    assert {"rm/loss", "rm/accuracy", "rm/lr", "rm/val_accuracy"} <= set(tags), sorted(tags)


def test_ppo_logs_each_update_once_also_after_resume(tmp_path, base):
    pytest.importorskip("tensorboard")
    import torch

    from instructrl import ppo
    from instructrl.config import PPOConfig
    from tiny_hf import reward_folder

    rm_dir = reward_folder(base, tmp_path / "rm_init", seed=1)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": d["prompt"]} for d in DEMOS])

    cfg = PPOConfig(total_episodes=4 * 4, batch_size=4, minibatch_size=4, max_new_tokens=4, checkpoint_every=2)

    def count_a(ps, rs):
        return torch.tensor([float(r.count("a")) for r in rs])

    out = tmp_path / "ppo"
    real, calls = ppo.collect_rollout, {"n": 0}

    def crash_at_3(*a, **k):  # interrupted during update 3, after the checkpoint at update 2
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    ppo.collect_rollout = crash_at_3
    try:
        with pytest.raises(KeyboardInterrupt):
            ppo.train_ppo(cfg, str(base), str(rm_dir), str(prompts), str(out), score_fn=count_a)
    finally:
        ppo.collect_rollout = real
    ppo.train_ppo(cfg, str(base), str(rm_dir), str(prompts), str(out), score_fn=count_a, resume=True)
    tags = scalars(out)
    assert {"ppo/score", "ppo/kl", "ppo/policy_loss", "ppo/lr"} <= set(tags) and "ppo/update" not in tags
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [s for s, _ in tags["ppo/score"]] == [int(r["update"]) for r in rows] == [1, 2, 3, 4]
    assert [v for _, v in tags["ppo/score"]] == pytest.approx([float(r["score"]) for r in rows], abs=1e-5)


def test_report_to_none_writes_no_event_files(tmp_path, base, demos):
    out = tmp_path / "sft"
    sft.train_sft(sft_cfg(report_to=["none"]), str(base), str(demos), str(out))
    assert not (out / "tensorboard").exists()
    assert not list(out.rglob("events.out.tfevents.*"))
    assert (out / "log.csv").exists()


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_missing_wandb_or_mlflow_is_a_clear_error(tmp_path, base, demos, monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    with pytest.raises(InstructRLError, match=f"pip install {name}"):
        tracking.make_trackers([name], tmp_path, {}, "x")
    out = tmp_path / "sft"
    with pytest.raises(InstructRLError, match=f"pip install {name}"):
        sft.train_sft(sft_cfg(report_to=["tensorboard", name]), str(base), str(demos), str(out))
    assert not out.exists()
    from instructrl import pretrain
    from instructrl.config import PretrainConfig

    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "the cat sat on the mat. " * 8}])
    with pytest.raises(InstructRLError, match=f"pip install {name}"):
        pretrain.pretrain_base(PretrainConfig(n_layer=1, n_embd=16, n_head=2, max_steps=2, batch_size=2, seq_len=16,
                                    report_to=[name]), str(text), str(tmp_path / "base"), quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.jsonl"]  # nothing written, no staging folder


def test_missing_tensorboard_warns_once_and_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setattr(tracking, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="instructrl.tracking"):
        for i in range(2):
            t = tracking.make_trackers(["tensorboard"], tmp_path / str(i), {}, "x")
            t.log({"loss": 1.0}, 1)
            t.close()
    assert sum("pip install tensorboard" in r.getMessage() for r in caplog.records) == 1
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


def test_default_auto_is_silent_without_tensorboard(tmp_path, monkeypatch, caplog):
    """report_to's default ('auto') writes TensorBoard only where it is installed, and says nothing otherwise."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setattr(tracking, "_warned", set())
    with caplog.at_level(logging.INFO):
        t = tracking.make_trackers(["auto"], tmp_path, {}, "x")
        t.log({"loss": 1.0}, 1)
        t.close()
    assert not t and not caplog.records and not list(tmp_path.rglob("events.out.tfevents.*"))


def test_only_finite_numbers_are_logged(tmp_path):
    pytest.importorskip("tensorboard")
    t = tracking.make_trackers(["tensorboard", "none"], tmp_path, {}, "x", prefix="s/")
    t.log({"a": 1.5, "b": 2, "c": "text", "d": None, "e": float("nan"), "f": True}, 3)
    t.close()
    assert scalars(tmp_path) == {"s/a": [(3, 1.5)], "s/b": [(3, 2.0)]}


def test_report_to_config(tmp_path):
    cfg = apply_overrides(SFTConfig(), ["report_to=[wandb,tensorboard]"])
    assert cfg.report_to == ["wandb", "tensorboard"]
    with pytest.raises(InstructRLError, match="unknown tracker"):
        apply_overrides(SFTConfig(), ["report_to=[tensorbored]"])
    # Where a run reports is not what it computes: same fingerprint, caches and checkpoints stay valid.
    assert config_hash(cfg) == config_hash(SFTConfig()) == config_hash(SFTConfig(report_to=["none"]))


def first_step_loss(tmp_path, base, demos, name, **kw) -> float:
    out = tmp_path / name
    sft.train_sft(sft_cfg(report_to=["none"], **kw), str(base), str(demos), str(out))
    rows = [r for r in csv.DictReader((out / "log.csv").open()) if r["loss"]]
    return float(rows[0]["loss"]), json.loads((out / "metrics.json").read_text())["train_loss"]


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, base, demos):
    plain = first_step_loss(tmp_path, base, demos, "plain")
    ckpt = first_step_loss(tmp_path, base, demos, "ckpt", gradient_checkpointing=True)
    assert ckpt == pytest.approx(plain, abs=1e-6)


def test_bf16_sft_step_runs_on_cpu(tmp_path, base, demos):
    loss, train_loss = first_step_loss(tmp_path, base, demos, "bf16", mixed_precision="bf16")
    plain, _ = first_step_loss(tmp_path, base, demos, "fp32")
    assert train_loss > 0 and loss == pytest.approx(plain, rel=0.05)  # bf16 autocast: close, not equal
