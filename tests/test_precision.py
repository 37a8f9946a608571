"""Pretraining's speed switches (issue 18): bf16 autocast where native, the fused tanh-GELU.

Each switch is tested for equal results: the fused GELU computes GPT-2's formula (logits equal to
float rounding), bf16 pretraining follows the fp32 loss curve within a stated tolerance, and the
saved folder is an ordinary fp32 HF model with sdpa attention."""

from __future__ import annotations

import pytest
import torch

from instructrl import precision, pretrain
from instructrl.config import PretrainConfig
from instructrl.models import build_gpt2
from instructrl.tokenizer import build_char_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resolve_explicit_and_auto(monkeypatch):
    assert precision.resolve("fp32") == "fp32" and precision.resolve("bf16") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)
    assert precision.resolve("auto") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": False)
    assert precision.resolve("auto") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve("fp16")


def test_autocast_rounds_matmul_inputs_only_under_bf16():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with precision.autocast("bf16"):
        assert lin(x).dtype == torch.bfloat16
    with precision.autocast("fp32"):
        assert lin(x).dtype == torch.float32
    assert lin.weight.dtype == torch.float32  # master weights stay fp32


def test_fused_gelu_is_gpt2s_formula():
    tok = build_char_tokenizer()
    a = build_gpt2(tok, 2, 32, 2, 64, seed=3, activation="gelu_new").eval()
    b = build_gpt2(tok, 2, 32, 2, 64, seed=3, activation="gelu_pytorch_tanh").eval()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    x = torch.randint(0, len(tok), (4, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        la, lb = a(input_ids=x).logits, b(input_ids=x).logits
    assert (la - lb).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    p = tmp_path_factory.mktemp("prec") / "text.txt"
    lines = [f"Q: Name an animal that starts with '{w[0]}'.\nA: {w.capitalize()}." for w in
             ["cat", "dog", "owl", "bee", "fox", "yak", "emu", "ant", "bat", "cow", "elk", "gnu"]]
    p.write_text("\n\n".join(lines * 20))
    return str(p)


def _pretrain(text, out, **kw):
    cfg = PretrainConfig(n_layer=2, n_embd=32, n_head=2, n_positions=64, max_steps=60, batch_size=8, seq_len=32,
                         lr=3e-3, warmup_steps=5, eval_every=30, **kw)
    return pretrain.pretrain_base(cfg, text, str(out), val_data=text, quiet=True)


def test_bf16_pretraining_follows_the_fp32_loss_curve(text, tmp_path):
    fp32 = _pretrain(text, tmp_path / "fp32", precision="fp32")
    bf16 = _pretrain(text, tmp_path / "bf16", precision="bf16")
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    # 60 steps take the loss from ~4.4 (uniform over the characters) to ~1; bf16 rounds the matmul
    # inputs (8 bits of mantissa), which moves the curve by far less than the training does.
    start = torch.log(torch.tensor(float(len(build_char_tokenizer())))).item()
    assert fp32["val_loss"] < 0.6 * start
    assert abs(bf16["val_loss"] - fp32["val_loss"]) < 0.005 * fp32["val_loss"]
    assert abs(bf16["train_loss"] - fp32["train_loss"]) < 0.01 * fp32["train_loss"]


def test_bf16_pretraining_saves_an_ordinary_fp32_sdpa_model(text, tmp_path):
    from transformers import AutoModelForCausalLM

    _pretrain(text, tmp_path / "m", precision="bf16")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    assert model.config.activation_function == "gelu_pytorch_tanh"


def test_fp32_pretraining_never_autocasts_nor_leaves_sdpa(text, tmp_path, monkeypatch):
    """precision=fp32 is the step before issue 18 (bit-identical with activation=gelu_new, checked
    against the previous code when the switch was added): no autocast, sdpa attention throughout."""
    seen = []

    def no_autocast(*a, **k):
        raise AssertionError("autocast under precision=fp32")

    monkeypatch.setattr(pretrain, "autocast", lambda p: precision.autocast(p) if p == "fp32" else no_autocast())
    orig = pretrain.build_gpt2

    def spy_build(*a, **k):
        model = orig(*a, **k)
        model.register_forward_pre_hook(lambda m, args: seen.append(m.config._attn_implementation))
        return model

    monkeypatch.setattr(pretrain, "build_gpt2", spy_build)
    _pretrain(text, tmp_path / "a", precision="fp32", activation="gelu_new")
    assert seen and set(seen) == {"sdpa"}
