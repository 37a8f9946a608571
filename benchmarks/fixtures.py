"""The synthetic setup shared by every benchmark (ours and the peer load the same folders).

Runs with instructrl's interpreter (it only needs transformers + tokenizers, which both sides
pin to the same release): ``python benchmarks/fixtures.py`` builds, once, under
``benchmarks/.cache/``:

- ``tokenizer/``: a 512-token byte-level BPE trained on the synthetic text, with separate EOS
  (``<|endoftext|>``) and pad (``<pad>``) tokens;
- ``policy/``: GPT-2, 4 layers, 128 wide, 4 heads, 256 positions, random init (seed 0);
- ``rm/``: the same config as a 1-output sequence classifier (reward model and value model);
- ``prompts.jsonl``: 512 short synthetic prompts;
- ``rank_k4.jsonl`` / ``rank_k9.jsonl``: ranking data with K = 4 / 9 responses of ~48 tokens.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("BENCH_CACHE", HERE / ".cache"))

N_LAYER, N_EMBD, N_HEAD, N_POS, VOCAB = 4, 128, 4, 256, 512
N_PROMPTS = 512
N_RANK_PROMPTS = {4: 64, 9: 32}
RESPONSE_TOKENS = 48

WORDS = ("apple river stone cloud seven blue table light quick under green paper horse "
         "little number letter reverse sort count word upper answer question fact city "
         "north south large small first last next repeat times add sum the a of and to").split()
TASKS = ["Reverse the word '{w}'.", "Sort the numbers {n}.", "Add {a} and {b}.",
         "Count the letters in '{w}'.", "Uppercase '{w}'.", "Repeat '{w}' {k} times.",
         "What is the largest of {n}?", "Which letter comes after '{c}'?"]


def _rng_word(r: random.Random) -> str:
    return r.choice(WORDS) if r.random() < 0.7 else "".join(r.choice("abcdefghijklmnopqrstuvwxyz")
                                                          for _ in range(r.randint(3, 7)))


def make_prompt(r: random.Random) -> str:
    t = r.choice(TASKS)
    return "Q: " + t.format(w=_rng_word(r), n=" ".join(str(r.randint(0, 99)) for _ in range(r.randint(2, 4))),
                            a=r.randint(0, 999), b=r.randint(0, 999), k=r.randint(2, 4),
                            c=r.choice("abcdefghijklmnopqrstuvwxy")) + "\nA:"


def make_text(r: random.Random, n_words: int) -> str:
    return " " + " ".join(_rng_word(r) for _ in range(n_words))


def build_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    r = random.Random(1)
    corpus = [make_prompt(r) + make_text(r, 30) for _ in range(4000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<pad>", unk_token=None)
    assert fast.eos_token_id != fast.pad_token_id and len(fast) == VOCAB, (len(fast), fast.eos_token_id)
    fast.save_pretrained(out)
    return fast


def gpt2_config(tok, **kw):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tok), n_positions=N_POS, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
                      bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, **kw)


def build(cache: Path = CACHE) -> Path:
    marker = cache / "DONE"
    if marker.exists():
        return cache
    import torch
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    cache.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(cache / "tokenizer")
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(gpt2_config(tok))
    policy.save_pretrained(cache / "policy")
    tok.save_pretrained(cache / "policy")
    torch.manual_seed(1)
    rm = GPT2ForSequenceClassification(gpt2_config(tok, num_labels=1))
    rm.save_pretrained(cache / "rm")
    tok.save_pretrained(cache / "rm")

    r = random.Random(2)
    with open(cache / "prompts.jsonl", "w") as fh:
        for _ in range(N_PROMPTS):
            fh.write(json.dumps({"prompt": make_prompt(r)}) + "\n")
    for K, n in N_RANK_PROMPTS.items():
        with open(cache / f"rank_k{K}.jsonl", "w") as fh:
            for _ in range(n):
                responses = []
                for _k in range(K):  # ~48 tokens: trim word by word to RESPONSE_TOKENS
                    text = make_text(r, 40)
                    ids = tok(text, add_special_tokens=False)["input_ids"][:RESPONSE_TOKENS]
                    responses.append(tok.decode(ids))
                fh.write(json.dumps({"prompt": make_prompt(r), "responses": responses,
                                     "ranking": list(range(K))}) + "\n")
    marker.write_text("ok\n")
    return cache


def read_jsonl(path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE))
