"""Tiny random-init Hugging Face model folders of several architectures, built in code.

Each folder is what an engineer would bring: `config.json` + `model.safetensors` + tokenizer files,
loaded by path. Tokenizers are small ones trained here on a few sentences (byte-level BPE as GPT-2 /
Llama-3 / Qwen2 / GPT-NeoX use, or a Metaspace WordPiece), some without a pad token, one with a
chat template.

Also the tests' tiny GPT-2 with the world's character tokenizer (`char_gpt2_folder`), a reward
model folder made from a causal LM (`reward_folder`) and a JSONL writer (`write_jsonl`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SENTENCES = [
    "Q: say a.\nA: a", "Q: hi\nA: hello there", "the cat sat on the mat.", "reverse the word cat: tac",
    "Q: 1+1?\nA: 2", "hello world, hello again.", "demo answer question ok count reverse",
    "Q: question 1?\nA: answer 1", "user assistant system you are helpful",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# name -> (architecture, tokenizer kind, has a pad token, chat template)
ARCHS = {
    "gpt2": ("gpt2", "bpe", True, False),
    "llama": ("llama", "bpe", False, False),
    "qwen2": ("qwen2", "bpe", False, True),
    "gpt_neox": ("gpt_neox", "metaspace", True, False),
}


def make_tokenizer(kind: str = "bpe", pad: bool = True, chat: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<eos>", "<bos>"] + (["<pad>"] if pad else [])
    if kind == "bpe":
        t = Tokenizer(models.BPE(unk_token="<unk>"))
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        t.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # SentencePiece-like: words with a ▁ prefix, WordPiece model, characters as fallback
        t = Tokenizer(models.BPE(unk_token="<unk>"))
        t.pre_tokenizer = pre_tokenizers.Metaspace()
        t.decoder = decoders.Metaspace()
        alphabet = sorted(set("".join(SENTENCES)) | set("abcdefghijklmnopqrstuvwxyz0123456789 .,:?!'\n+-*"))
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=alphabet)
    t.train_from_iterator(SENTENCES * 3, trainer)
    kw = dict(tokenizer_object=t, eos_token="<eos>", unk_token="<unk>", bos_token="<bos>")
    if pad:
        kw["pad_token"] = "<pad>"
    tok = PreTrainedTokenizerFast(**kw)
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def make_config(arch: str, tok, n_ctx: int = 128):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    ids = dict(eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "gpt2":
        return GPT2Config(vocab_size=len(tok), n_positions=n_ctx, n_embd=16, n_layer=1, n_head=2, **ids)
    small = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                 num_attention_heads=2, max_position_embeddings=n_ctx, **ids)
    if arch == "llama":
        return LlamaConfig(num_key_value_heads=1, tie_word_embeddings=False, **small)
    if arch == "qwen2":
        return Qwen2Config(num_key_value_heads=1, tie_word_embeddings=True, **small)
    if arch == "gpt_neox":
        return GPTNeoXConfig(**small)
    raise ValueError(arch)


def make_model_folder(name: str, root, seed: int = 0) -> Path:
    """Write a tiny random-init causal-LM folder for ARCHS[name] under root/name; return its path."""
    from transformers import AutoModelForCausalLM

    arch, kind, pad, chat = ARCHS[name]
    tok = make_tokenizer(kind, pad, chat)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(arch, tok))
    out = Path(root) / name
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def char_gpt2_folder(path, n_embd: int = 16, n_positions: int = 128, seed: int = 0) -> Path:
    """Write a tiny random-init GPT-2 (1 layer, 2 heads) with the world's character tokenizer to `path`."""
    from instructrl.models import build_gpt2, save_model_folder
    from instructrl.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    return save_model_folder(build_gpt2(tok, n_layer=1, n_embd=n_embd, n_head=2, n_positions=n_positions, seed=seed),
                             tok, path)


def reward_folder(causal_lm, path, seed: int = 0) -> Path:
    """Write a reward model made from the causal-LM folder `causal_lm` (its backbone, a fresh head) to `path`."""
    from instructrl.models import reward_model_from_causal_lm, save_model_folder

    rm, rm_tok = reward_model_from_causal_lm(causal_lm, seed=seed)
    return save_model_folder(rm, rm_tok, path)


def write_jsonl(path, rows) -> Path:
    """One line per row: a dict as JSON, a string as it is (e.g. a malformed line)."""
    Path(path).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return Path(path)


PROMPTS = ["Q: say a.\nA:", "Q: hi\nA:", "Q: 1+1?\nA:", "Q: question 1?\nA:"]
DEMOS = [{"prompt": p, "response": r} for p, r in
         [("Q: say a.\nA:", " a"), ("Q: hi\nA:", " hello there"), ("Q: 1+1?\nA:", " 2"), ("Q: question 1?\nA:", " answer 1")]]
CHAT_DEMOS = [{"messages": [{"role": "user", "content": d["prompt"][3:-3]}, {"role": "assistant", "content": d["response"].strip()}]}
              for d in DEMOS]
RANKINGS = [{"prompt": p, "responses": [" hello there", " a", " the cat"], "ranking": [i % 3, (i + 1) % 3, (i + 2) % 3]}
            for i, p in enumerate(PROMPTS * 2)]


SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str):
    """The module of scripts/<name>.py (the scripts folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def chat_llama_folder(path, seed: int = 0) -> Path:
    """A tiny Llama-config chat model as a hub chat model comes (scripts/make_chat_model.py, size tiny):
    a ChatML chat template with a default system prompt, and pad = EOS = <|im_end|> in its tokenizer."""
    return load_script("make_chat_model").build_chat_model(path, "tiny", SCRIPTS.parent / "examples" / "chat", seed)
