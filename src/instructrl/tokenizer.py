"""The world's tokenizer: one token per character, saved as an ordinary HF fast tokenizer.

Character level keeps the vocabulary tiny (≈100 ids), so a small model spends its parameters on
behaviour rather than on an embedding table, and no tokenizer training is needed. It is a
`PreTrainedTokenizerFast` (tokenizer.json), so `AutoTokenizer.from_pretrained(folder)` loads it with
plain transformers. Pad and EOS are separate tokens: if pad were EOS, EOS would be masked out of
the loss and the model would never learn to stop ([N+] detail).
"""

from __future__ import annotations

import string

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
# Printable ASCII (space..~) and newline: everything the world writes.
CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))


def build_char_tokenizer(model_max_length: int = 256):
    """Return a character-level `PreTrainedTokenizerFast` with <pad>=0, <eos>=1, <unk>=2."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for ch in CHARSET:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    return fast


assert set(string.ascii_letters + string.digits) <= set(CHARSET)


def build_bpe_tokenizer(texts, vocab_size: int = 1024, model_max_length: int = 256):
    """A byte-level BPE tokenizer trained on ``texts`` (the kind real LMs use), <pad>=0, <eos>=1.

    Byte level: every string is encodable (no <unk>); a word and the space before it are one
    token ("Ġriver"), so the world's sequences are about 3x shorter than in characters and a fixed
    compute budget buys a larger model. Training is deterministic for the same texts in the same
    order. The trade-off: a word's letters are not visible to the model (a first-letter check
    must be learned word by word), which the character tokenizer gives for free.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )


def build_tokenizer(kind: str, texts=None, vocab_size: int = 1024, model_max_length: int = 256):
    """The world's tokenizer: ``"char"`` (one token per character) or ``"bpe"`` (trained on ``texts``)."""
    if kind == "char":
        return build_char_tokenizer(model_max_length)
    if kind == "bpe":
        if texts is None:
            raise ValueError("a BPE tokenizer needs the texts to train on")
        return build_bpe_tokenizer(texts, vocab_size, model_max_length)
    raise ValueError(f"tokenizer must be 'char' or 'bpe', got {kind!r}")
