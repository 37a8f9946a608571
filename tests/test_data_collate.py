"""Collate: tokenization of prompt + response + EOS, masks, padding, K-wise ranking batches."""

from __future__ import annotations

import logging

import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from instructrl.data.collate import (
    RankingBatch,
    batch_encode_demonstrations,
    batch_encode_prompts,
    batch_encode_rankings,
    encode_demonstration,
    encode_prompt_response,
    encode_ranking,
    pad_left,
    pad_right,
)
from instructrl.data.readers import Demonstration, Prompt, Ranking
from instructrl.errors import ConfigError, DataError

PAD, EOS, UNK = 0, 1, 2


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A tiny character-level tokenizer (one token per character), built in the test."""
    vocab = {"<pad>": PAD, "<eos>": EOS, "<unk>": UNK}
    for c in [chr(i) for i in range(32, 127)] + ["\n"]:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_char_tokenizer(tok):
    assert len(ids(tok, "Q: a\nA:")) == 7
    assert tok.eos_token_id == EOS and tok.pad_token_id == PAD


def test_encode_prompt_response(tok):
    enc = encode_prompt_response(tok, "Q: hi\nA:", " ih", max_len=32)
    assert enc["input_ids"] == ids(tok, "Q: hi\nA:") + ids(tok, " ih") + [EOS]
    assert enc["loss_mask"] == [False] * 8 + [True] * 4
    # exactly max_len is fine
    assert len(encode_prompt_response(tok, "Q: hi\nA:", " ih", max_len=12)["input_ids"]) == 12


def test_too_long_is_data_error(tok):
    d = Demonstration("Q: hello\nA:", " olleh", source="demos.jsonl", line=7)
    with pytest.raises(DataError) as ei:
        encode_demonstration(tok, d, max_len=10)
    assert "demos.jsonl:7" in str(ei.value) and "max_len=10" in str(ei.value)


def test_truncate_prompt_left(tok, caplog):
    with caplog.at_level(logging.WARNING):
        enc = encode_prompt_response(tok, "abcdefgh", "xy", max_len=6, truncation="truncate_prompt_left")
    assert enc["input_ids"] == ids(tok, "fgh") + ids(tok, "xy") + [EOS]
    assert enc["loss_mask"] == [False] * 3 + [True] * 3
    assert "truncated" in caplog.text
    with pytest.raises(DataError) as ei:  # the response alone does not fit
        encode_prompt_response(tok, "ab", "xyzw", max_len=5, truncation="truncate_prompt_left", path="f.jsonl", line=2)
    assert ei.value.field == "response" and "f.jsonl:2" in str(ei.value)
    with pytest.raises(ConfigError):
        encode_prompt_response(tok, "ab", "x", max_len=5, truncation="cut")


def test_chat_template_used_when_present():
    tok = char_tokenizer()
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    d = Demonstration("User: hi\nAssistant:", " yo", msgs)
    # without a template: the plain rendering
    plain = encode_demonstration(tok, d, max_len=64)
    assert plain["input_ids"][:-1] == ids(tok, "User: hi\nAssistant: yo")
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    enc = encode_demonstration(tok, d, max_len=64)
    assert enc["input_ids"] == ids(tok, "<user>hi\n<assistant>") + ids(tok, "yo") + [EOS]
    assert sum(enc["loss_mask"]) == 3
    r = Ranking("User: hi\nAssistant:", [" yo", " no"], [0, 1], messages=msgs[:1])
    e0, e1 = encode_ranking(tok, r, max_len=64)
    assert e0["input_ids"] == ids(tok, "<user>hi\n<assistant>yo") + [EOS]
    assert e1["input_ids"] == ids(tok, "<user>hi\n<assistant>no") + [EOS]


def test_pad_right_and_left():
    seqs = [[5, 6, 7], [8], [9, 10]]
    ids_, mask = pad_right(seqs, pad_id=0)
    assert ids_.dtype == torch.long and mask.dtype == torch.bool
    assert ids_.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    ids_, mask = pad_left([torch.tensor(s) for s in seqs], pad_id=0)
    assert ids_.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert mask.tolist() == [[True] * 3, [False, False, True], [False, True, True]]
    with pytest.raises(ValueError):
        pad_right([], 0)


def test_batch_encode_demonstrations(tok):
    demos = [Demonstration("Q:a\nA:", " b"), Demonstration("Q:abc\nA:", " xyz")]
    b = batch_encode_demonstrations(tok, demos, max_len=32)
    assert b["input_ids"].shape == b["attention_mask"].shape == b["loss_mask"].shape == (2, 13)
    assert b["loss_mask"][0].tolist() == [False] * 6 + [True] * 3 + [False] * 4
    assert b["attention_mask"][0].sum() == 9 and b["input_ids"][0, 9:].eq(PAD).all()
    assert not (b["loss_mask"] & ~b["attention_mask"]).any()


def test_batch_encode_rankings(tok):
    rs = [
        Ranking("p1", ["a", "bb", "ccc"], [2, 0, 1]),
        Ranking("p2", ["x", "yy", "z", "w"], [0, 1, 3, 2], ties=[[1, 3]]),
    ]
    batch = batch_encode_rankings(tok, rs, max_len=16)
    assert isinstance(batch, RankingBatch)
    input_ids, attention_mask, group, rank = batch
    assert input_ids.shape == (7, 6)  # "p1" + "ccc" + EOS
    assert group.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert rank.tolist() == [1, 2, 0, 0, 1, 2, 1]
    last = attention_mask.sum(1) - 1
    assert input_ids[torch.arange(7), last].eq(EOS).all()  # the score is read at the EOS
    assert input_ids[1, : last[1] + 1].tolist() == ids(tok, "p1bb") + [EOS]


def test_batch_encode_prompts(tok):
    x, m = batch_encode_prompts(tok, [Prompt("Q:a\nA:"), "Q:\nA:"])
    assert x.shape == (2, 6) and m[1].tolist() == [False] + [True] * 5
    assert x[1, 0] == PAD
    with pytest.raises(DataError) as ei:
        batch_encode_prompts(tok, [Prompt("abcdef", source="p.jsonl", line=4)], max_len=3)
    assert "p.jsonl:4" in str(ei.value)
    x, _ = batch_encode_prompts(tok, ["abcdef"], max_len=3, truncation="truncate_prompt_left")
    assert x.tolist() == [ids(tok, "def")]
