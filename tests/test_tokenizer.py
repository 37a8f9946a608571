"""instructrl.tokenizer: the world's character and BPE tokenizers."""

import random

import pytest

from instructrl.tokenizer import build_bpe_tokenizer, build_char_tokenizer, build_tokenizer
from instructrl.world.corpus import make_corpus


@pytest.fixture(scope="module")
def texts():
    return make_corpus(random.Random(0), 60_000)


def test_bpe_is_deterministic_and_shorter(texts):
    a = build_bpe_tokenizer(texts, vocab_size=512)
    b = build_bpe_tokenizer(texts, vocab_size=512)
    assert a.get_vocab() == b.get_vocab()  # same corpus, same tokenizer: base models share it
    assert len(a) == 512 and a.pad_token_id == 0 and a.eos_token_id == 1
    char = build_char_tokenizer()
    n_bpe = sum(len(a(t)["input_ids"]) for t in texts[:200])
    n_char = sum(len(char(t)["input_ids"]) for t in texts[:200])
    assert n_bpe < 0.5 * n_char


def test_bpe_prompt_response_boundary(texts):
    """The world's prompt ends with "A:" and a response starts with a space: tokenizing them apart
    gives the tokens of the whole (what SFT trains on is what PPO and evaluation sample)."""
    tok = build_bpe_tokenizer(texts, vocab_size=512)
    for prompt, response in [("Q: Name two animals.\nA:", " bear and cat."),
                             ("Q: What is 12 + 7?\nA:", " 19"), ("Q: Hi!\nA:", " Hello Zoe!")]:
        ids = tok(prompt + response)["input_ids"]
        assert ids == tok(prompt)["input_ids"] + tok(response)["input_ids"]
        assert tok.decode(ids) == prompt + response
    assert tok.decode(tok("café ☕")["input_ids"]) == "café ☕"  # byte level: nothing is unknown


def test_build_tokenizer_choices(texts, tmp_path):
    assert len(build_tokenizer("char")) == len(build_char_tokenizer())
    tok = build_tokenizer("bpe", texts, vocab_size=300)
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("a river")["input_ids"] == tok("a river")["input_ids"]
    with pytest.raises(ValueError):
        build_tokenizer("bpe")
    with pytest.raises(ValueError):
        build_tokenizer("words", texts)
