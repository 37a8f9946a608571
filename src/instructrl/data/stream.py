"""Packed pretraining text: every document's tokens followed by EOS, concatenated into one stream.

One implementation for the three users of pretraining text: pretraining (random windows each
step, :mod:`instructrl.pretrain`), SFT's pretraining mix (the stream cut into consecutive windows,
:func:`instructrl.sft.ptx_windows`) and PPO-ptx (random windows, :func:`instructrl.ppo.ptx_windows`).
"""

from __future__ import annotations

import math

import torch

__all__ = ["token_stream", "repeat_to_fit", "random_windows"]


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All documents as one 1-D stream: doc tokens followed by EOS, concatenated."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def repeat_to_fit(stream: torch.Tensor, length: int) -> torch.Tensor:
    """The stream, repeated when it is shorter than `length` so that one window fits (a short corpus)."""
    if len(stream) < length:
        stream = stream.repeat(math.ceil(length / max(1, len(stream))) + 1)
    return stream


def random_windows(stream: torch.Tensor, batch_size: int, length: int, generator: torch.Generator,
                   last_start: bool = True) -> torch.Tensor:
    """(batch_size, length) windows starting at random offsets of the stream.

    The offsets are one ``torch.randint`` draw from ``generator`` over every offset where a window
    fits, ``[0, len(stream) - length]``; with ``last_start=False`` the last of them is left out
    (pretraining's draw, kept so that its runs stay bit-identical). The stream must be long enough:
    ``len(stream) >= length`` (``> length`` with ``last_start=False``).
    """
    n_starts = len(stream) - length + (1 if last_start else 0)
    starts = torch.randint(0, n_starts, (batch_size,), generator=generator)
    return torch.stack([stream[s:s + length] for s in starts.tolist()])
