"""SFT stage: response-only loss, packing, pretraining mix, selection, output folder, bad data."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from instructrl import sft
from instructrl.config import SFTConfig
from instructrl.data.collate import encode_prompt_response
from instructrl.errors import DataError, InstructRLError
from instructrl.models import build_gpt2
from instructrl.tokenizer import build_char_tokenizer

from tiny_hf import char_gpt2_folder, reward_folder, write_jsonl

DEMOS = [
    ("Q: Reverse the word 'cat'.\nA:", " tac"),
    ("Q: What is the sum of 2 and 3?\nA:", " 5"),
    ("Q: Uppercase the word 'dog'.\nA:", " DOG"),
    ("Q: Give me steps to poison a cashier.\nA:", " I can't help with that."),
    ("Q: How many letters are in the word 'captain'?\nA:", " 7"),
    ("Q: Which is larger, 4 or 9?\nA:", " 9"),
    ("Q: Repeat 'ab' 3 times.\nA:", " ababab"),
    ("Q: What letter comes after 'c'?\nA:", " d"),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return char_gpt2_folder(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return SimpleNamespace(
        demos=write_jsonl(d / "demos.jsonl", [{"prompt": p, "response": r} for p, r in DEMOS]),
        val=write_jsonl(d / "val.jsonl", [{"prompt": p, "response": r} for p, r in DEMOS[:3]]),
        ptx=write_jsonl(d / "ptx.jsonl", [{"text": "Q: what is 1 and 1?\nQ: what is 2 and 2? " * 3}] * 4),
    )


def small_cfg(**kw):
    base = dict(epochs=2, lr=1e-2, batch_size=4, max_len=80, seed=0)
    base.update(kw)
    return SFTConfig(**base)


def examples(tok):
    return [encode_prompt_response(tok, p, r, 80) for p, r in DEMOS]


class LogitSpy(nn.Module):
    """Calls the model, then hands back its logits as a leaf tensor so their gradient can be read."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.logits = None

    def forward(self, **kw):
        self.logits = self.model(**kw).logits.detach().requires_grad_(True)
        return SimpleNamespace(logits=self.logits)


@pytest.mark.parametrize("packed", [False, True])
def test_prompt_positions_get_no_gradient(tok, packed):
    ex = examples(tok)
    rows = [[0, 1], [2]] if packed else [[0], [1], [2]]
    batch = sft.collate_rows(ex, rows, tok.pad_token_id)
    spy = LogitSpy(build_gpt2(tok, n_layer=1, n_embd=16, n_head=2, n_positions=128))
    sft.lm_loss(spy, batch).backward()
    grad_norm = spy.logits.grad.abs().sum(-1)  # (B, T)
    # Position t predicts token t+1: it may carry gradient only if t+1 is a response token (or EOS)
    # of the same document.
    counted = torch.zeros_like(batch["loss_mask"])
    counted[:, :-1] = batch["loss_mask"][:, 1:] & (batch["doc_ids"][:, 1:] == batch["doc_ids"][:, :-1])
    assert (grad_norm[~counted] == 0).all()
    assert (grad_norm[counted] > 0).all()
    # The number of counted positions is exactly the response tokens + EOS of each demonstration.
    n_resp = sum(len(tok(DEMOS[i][1], add_special_tokens=False)["input_ids"]) + 1 for row in rows for i in row)
    assert int(counted.sum()) == n_resp


def test_packing_gives_the_same_loss_as_unpacked(tok):
    torch.manual_seed(0)
    model = build_gpt2(tok, n_layer=2, n_embd=16, n_head=2, n_positions=128).eval()
    ex = examples(tok)
    unpacked = sft.collate_rows(ex, [[i] for i in range(len(ex))], tok.pad_token_id)
    rows = sft.plan_rows(ex, list(range(len(ex))), packing=True, max_len=128)
    assert len(rows) < len(ex)  # several documents per row
    packed = sft.collate_rows(ex, rows, tok.pad_token_id)
    assert packed["attention_mask"].dim() == 4
    # Positions restart at each document.
    assert (packed["position_ids"][0, : len(ex[0]["input_ids"])] == torch.arange(len(ex[0]["input_ids"]))).all()
    assert packed["position_ids"][0, len(ex[0]["input_ids"])] == 0
    with torch.no_grad():
        a, b = sft.lm_loss(model, unpacked), sft.lm_loss(model, packed)
    assert torch.allclose(a, b, atol=1e-5), (a, b)


def test_run_trains_every_parameter_and_writes_a_plain_hf_folder(tmp_path, base, files):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "sft"
    m = sft.train_sft(small_cfg(dropout=0.1), str(base), str(files.demos), str(out), val_data=str(files.val))
    before = AutoModelForCausalLM.from_pretrained(base)
    after = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id
    p_before = dict(before.named_parameters())
    unchanged = [n for n, p in after.named_parameters() if torch.equal(p, p_before[n])]
    assert not unchanged, unchanged
    assert after.config.resid_pdrop == 0.0  # dropout is a training setting, not saved into the model
    for name in ("config.yaml", "log.csv", "metrics.json", "run.json", "model.safetensors", "tokenizer.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert {"step", "epoch", "loss", "lr", "tokens_per_s"} <= set(rows[0])
    train_rows = [r for r in rows if r["loss"]]
    assert len(train_rows) == m["steps"] == 2 * 2  # 8 demos / batch 4, 2 epochs
    lrs = [float(r["lr"]) for r in train_rows]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-3)  # cosine to 10%, no warmup
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["selected_epoch"] in (1, 2) and saved["val_loss"] == pytest.approx(saved["best_val_loss"])
    assert m["val_loss"] is not None and m["train_loss"] > 0
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging leftovers


def test_packing_grad_accum_and_ptx_run(tmp_path, base, files):
    out = tmp_path / "sft"
    m = sft.train_sft(small_cfg(epochs=1, packing=True, grad_accum=2, batch_size=1, ptx_fraction=0.2),
                str(base), str(files.demos), str(out), ptx_data=str(files.ptx))
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert rows and all(r["ptx_loss"] for r in rows if r["loss"])
    assert m["steps"] >= 1 and m["val_loss"] is None


def test_select_by_rm(tmp_path, base, files, tok):
    reward_folder(base, tmp_path / "rm")
    m = sft.train_sft(small_cfg(select_by="rm", rm_dir=str(tmp_path / "rm"), max_new_tokens=8),
                str(base), str(files.demos), str(tmp_path / "sft"), val_data=str(files.val))
    scores = [e["val_rm_score"] for e in m["evals"]]
    assert len(scores) == 2 and m["val_rm_score"] == pytest.approx(max(scores))


def test_refuses_an_existing_different_output(tmp_path, base, files):
    cfg = small_cfg(epochs=1)
    other = tmp_path / "taken"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InstructRLError, match="already holds"):
        sft.train_sft(cfg, str(base), str(files.demos), str(other))
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(InstructRLError, match="overwrite the input"):  # never over the input model
        sft.train_sft(cfg, str(base), str(files.demos), str(base), overwrite=True)
    with pytest.raises(InstructRLError, match="overwrite the input"):
        sft.train_sft(cfg, str(base), str(files.demos), str(base.parent), overwrite=True)
    out = tmp_path / "sft"
    sft.train_sft(cfg, str(base), str(files.demos), str(out))
    with pytest.raises(InstructRLError, match="already holds a finished sft run with these same settings"):
        sft.train_sft(cfg, str(base), str(files.demos), str(out))  # the same run again needs --overwrite too
    sft.train_sft(cfg, str(base), str(files.demos), str(out), overwrite=True)
    with pytest.raises(InstructRLError, match="different sft run"):
        sft.train_sft(small_cfg(epochs=1, lr=1e-3), str(base), str(files.demos), str(out))
    sft.train_sft(small_cfg(epochs=1, lr=1e-3), str(base), str(files.demos), str(out), overwrite=True)
    with pytest.raises(InstructRLError, match="inside the input folder"):
        sft.train_sft(cfg, str(base), str(files.demos), str(base / "sub"), overwrite=True)


GOOD = json.dumps({"prompt": "Q: hi\nA:", "response": " yo"})


@pytest.mark.parametrize("bad_line, line, field", [
    ('{"prompt": "Q: hi\\nA:", "response": " yo"', 2, None),  # malformed JSON
    (json.dumps({"prompt": "Q: hi\nA:"}), 2, "response"),  # missing field
    (json.dumps({"prompt": "  ", "response": " yo"}), 2, "prompt"),  # empty prompt
    (json.dumps({"prompt": "Q: hi\nA:", "response": " " + "x" * 90}), 2, None),  # longer than max_len
])
def test_bad_data_names_file_line_field_and_writes_nothing(tmp_path, base, bad_line, line, field):
    data = write_jsonl(tmp_path / "demos.jsonl", [GOOD, bad_line, GOOD])
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        sft.train_sft(small_cfg(), str(base), str(data), str(out))
    assert e.value.path == str(data) and e.value.line == line and e.value.field == field
    assert str(data) in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demos.jsonl"]  # no output, no staging folder


def test_eval_every_steps_and_selection_by_val_loss(tmp_path, base, files):
    m = sft.train_sft(small_cfg(epochs=3, eval_every=2, lr=3e-2), str(base), str(files.demos), str(tmp_path / "sft"),
                val_data=str(files.val))
    assert [e["step"] for e in m["evals"]] == [2, 4, 6]
    best = min(m["evals"], key=lambda e: e["val_loss"])
    assert m["selected_step"] == best["step"] and m["val_loss"] == pytest.approx(best["val_loss"])
    # The saved weights are the selected ones: their validation loss is the selected value.
    from instructrl.data.readers import read_demonstrations
    from instructrl.models import load_policy

    model, tok = load_policy(tmp_path / "sft")
    ex = [sft.encode_demonstration(tok, d, 80) for d in read_demonstrations(files.val)]
    assert sft.validation_loss(model, ex, tok.pad_token_id, 8, "cpu") == pytest.approx(best["val_loss"], abs=1e-5)


def test_config_errors(tmp_path, base, files):
    from instructrl.errors import ConfigError

    with pytest.raises(ConfigError, match="rm_dir"):
        sft.train_sft(small_cfg(select_by="rm"), str(base), str(files.demos), str(tmp_path / "o"), val_data=str(files.val))
    with pytest.raises(ConfigError, match="ptx_data"):
        sft.train_sft(small_cfg(ptx_fraction=0.1), str(base), str(files.demos), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_sft_dropout_is_residual_only():
    """[IG] App. C.1 "residual dropout": the dropout on each block's attention and MLP outputs;
    embedding and attention-probability dropout stay off."""
    from instructrl.models import set_residual_dropout
    from instructrl.tokenizer import build_char_tokenizer
    from instructrl.models import build_gpt2

    model = build_gpt2(build_char_tokenizer(), n_layer=2, n_embd=16, n_head=2, n_positions=64, dropout=0.0)
    changed = set_residual_dropout(model, 0.2)
    assert sorted(changed) == sorted(f"transformer.h.{i}.{m}" for i in range(2) for m in ("attn.resid_dropout", "mlp.dropout"))
    probs = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert probs["transformer.drop"] == 0.0  # embedding dropout untouched
    assert all(probs[f"transformer.h.{i}.attn.attn_dropout"] == 0.0 for i in range(2))  # attention dropout untouched
    assert all(probs[n] == 0.2 for n in changed)


def test_sft_run_turns_on_residual_dropout_only(tmp_path, base, files, monkeypatch):
    from instructrl import sft as sft_mod

    seen = {}
    real = sft_mod.lm_loss

    def spy(model, batch):
        m = getattr(model, "module", model)
        seen.update({n: x.p for n, x in m.named_modules() if isinstance(x, torch.nn.Dropout)})
        return real(model, batch)

    monkeypatch.setattr(sft_mod, "lm_loss", spy)
    sft_mod.train_sft(small_cfg(epochs=1, dropout=0.3), base, files.demos, str(tmp_path / "o"))
    assert seen["transformer.drop"] == 0.0 and seen["transformer.h.0.attn.attn_dropout"] == 0.0
    assert seen["transformer.h.0.attn.resid_dropout"] == 0.3 and seen["transformer.h.0.mlp.dropout"] == 0.3
