"""Build a Llama-config chat model folder, the kind an engineer brings, without any download.

    python scripts/make_chat_model.py --out models/chat-135m              # SmolLM2-135M's shape, 135M params
    python scripts/make_chat_model.py --out models/chat-tiny --size tiny  # 1 layer, 16 wide (tests)

The folder holds what a hub chat model holds: ``config.json`` + ``model.safetensors`` (a
``LlamaForCausalLM``, random init: no pretrained weights can be fetched here) and a fast
tokenizer (byte-level BPE trained on the example data and a few sentences) with a ChatML chat
template that adds a default system prompt, and **pad = EOS = ``<|im_end|>``** as in
SmolLM2-Instruct and many other chat models. It loads with plain transformers.

``135m`` is SmolLM2-135M's shape: 30 layers, hidden 576, 9 heads (3 key/value heads), MLP 1536,
vocabulary 49152 (the embedding is larger than the trained tokenizer; the unused rows cost memory
as in the real model), tied embeddings, 2048 positions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: ChatML with a default system prompt (the shape of SmolLM2-Instruct's / Qwen2's templates).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
DEFAULT_SYSTEM = "You are a helpful assistant."
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SIZES = {
    "tiny": dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, vocab_size=None, max_position_embeddings=256),
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048),
}
SENTENCES = [
    "system user assistant You are a helpful assistant.", "What is the capital of France? Paris.",
    "Hello! How can I help you today?", "I can't help with that.", "The quick brown fox jumps over the lazy dog.",
    "1 2 3 4 5 6 7 8 9 10 plus minus times equals", "Give me three tips. First, second, third.",
]


def _texts(data_dir: Path | None) -> list[str]:
    """Every string in the example JSONL files (to train the tokenizer on), plus a few sentences."""
    out = list(SENTENCES)

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for p in sorted(Path(data_dir).glob("*.jsonl")) if data_dir and Path(data_dir).is_dir() else []:
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                walk(json.loads(line))
    return out


def build_chat_tokenizer(texts: list[str], vocab_size: int = 1000):
    """A byte-level BPE fast tokenizer with ChatML specials, pad = EOS = <|im_end|>, the ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train_from_iterator(texts * 2, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  bos_token="<|im_start|>", unk_token="<|endoftext|>", model_max_length=2048,
                                  clean_up_tokenization_spaces=False)
    tok.chat_template = CHATML_TEMPLATE
    return tok


def build_chat_model(out, size: str = "135m", data_dir=None, seed: int = 0) -> Path:
    """Write the folder (see the module docstring); returns its path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_chat_tokenizer(_texts(data_dir), vocab_size=1000 if size != "tiny" else 400)
    shape = dict(SIZES[size])
    shape["vocab_size"] = shape["vocab_size"] or len(tok)
    config = LlamaConfig(**shape, tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="Model folder to write.")
    ap.add_argument("--size", choices=sorted(SIZES), default="135m", help="135m (SmolLM2-135M's shape) or tiny.")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parent.parent / "examples" / "chat"),
                    help="Folder of JSONL files to train the tokenizer on (default: examples/chat).")
    ap.add_argument("--seed", type=int, default=0, help="Init seed.")
    args = ap.parse_args(argv)
    out = build_chat_model(args.out, args.size, args.data, args.seed)
    n = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(out).parameters())
    print(f"wrote {out}: LlamaForCausalLM, {n / 1e6:.1f}M parameters, ChatML chat template, pad = eos = <|im_end|>")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
