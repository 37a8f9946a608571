"""Tokenization and padding: records -> tensors.

The one rule (docs/architecture.md, "Text format"): a training sequence is
``tokens(prompt) + tokens(response) + [eos]``; loss, score and KL count only the response tokens
and the EOS. Text is tokenized with ``tokenizer(text, add_special_tokens=False)`` so that nothing
is added behind our back; prompt and response are tokenized separately so the boundary is exact.

When a demonstration (or ranking) carries chat ``messages`` and the tokenizer has a
``chat_template``, the prompt is rendered by
``apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)`` and the response
is the last message's content; otherwise the plain rendering made by the readers is used.

Masks: True = a real token that counts. Right padding for training (SFT, RM), left padding for
generation (prompts).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import torch

from instructrl.data.readers import Demonstration, Prompt, Ranking
from instructrl.errors import ConfigError, DataError, ModelFolderError

__all__ = [
    "TRUNCATION_MODES",
    "encode_prompt_response",
    "encode_demonstration",
    "encode_ranking",
    "pad_right",
    "pad_left",
    "batch_encode_demonstrations",
    "batch_encode_rankings",
    "batch_encode_prompts",
    "RankingBatch",
]

log = logging.getLogger(__name__)

#: ``"error"``: a too-long sequence is a DataError; ``"truncate_prompt_left"``: drop prompt tokens
#: from the left (keeping the end of the prompt, next to the response) and log a warning.
TRUNCATION_MODES = ("error", "truncate_prompt_left")


def _tokens(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _eos_id(tokenizer) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ModelFolderError("the tokenizer has no eos_token; set one (responses must end with EOS)")
    return int(eos)


def _check_mode(truncation: str) -> None:
    if truncation not in TRUNCATION_MODES:
        raise ConfigError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")


def _render_chat(tokenizer, messages: list) -> tuple[str, str] | None:
    """(prompt text, response text) through the tokenizer's chat template, or None if it has none."""
    if not messages or not getattr(tokenizer, "chat_template", None):
        return None
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    return prompt, messages[-1]["content"]


def _fit(prompt_ids: list[int], response_ids: list[int], max_len: int, truncation: str,
         path, line) -> list[int]:
    """Return the (possibly left-truncated) prompt ids so that prompt + response + eos <= max_len."""
    total = len(prompt_ids) + len(response_ids) + 1
    if total <= max_len:
        return prompt_ids
    if truncation == "error":
        raise DataError(
            path, line, None,
            f"sequence of {total} tokens (prompt {len(prompt_ids)} + response {len(response_ids)} + EOS) "
            f"is longer than max_len={max_len}; raise max_len, shorten the record, or set "
            "truncation='truncate_prompt_left'",
        )
    keep = max_len - len(response_ids) - 1
    if keep < 1:
        raise DataError(
            path, line, "response",
            f"the response alone ({len(response_ids)} tokens + EOS) leaves no room for the prompt "
            f"in max_len={max_len}",
        )
    log.warning(
        "%s: prompt truncated from the left, %d -> %d tokens (max_len=%d)",
        f"{path}:{line}" if path is not None else "<data>", len(prompt_ids), keep, max_len,
    )
    return prompt_ids[len(prompt_ids) - keep:]


def encode_prompt_response(tokenizer, prompt: str, response: str, max_len: int,
                           truncation: str = "error", *, messages: list | None = None,
                           path=None, line: int | None = None) -> dict:
    """Tokenize one (prompt, response) pair.

    Returns ``{"input_ids": list[int], "loss_mask": list[bool]}`` for
    ``tokens(prompt) + tokens(response) + [eos]``, with ``loss_mask`` True on the response tokens
    and the EOS. If ``messages`` (the whole chat, last message = response) is given and the
    tokenizer has a chat template, the template renders the prompt and the response is the last
    message's content. ``path``/``line`` locate the record in error messages.
    """
    _check_mode(truncation)
    eos = _eos_id(tokenizer)
    chat = _render_chat(tokenizer, messages) if messages is not None else None
    if chat is not None:
        prompt, response = chat
    prompt_ids = _tokens(tokenizer, prompt)
    response_ids = _tokens(tokenizer, response)
    if not response_ids:
        raise DataError(path, line, "response", "tokenizes to zero tokens")
    prompt_ids = _fit(prompt_ids, response_ids, max_len, truncation, path, line)
    ids = prompt_ids + response_ids + [eos]
    mask = [False] * len(prompt_ids) + [True] * (len(response_ids) + 1)
    return {"input_ids": ids, "loss_mask": mask}


def encode_demonstration(tokenizer, demo: Demonstration, max_len: int, truncation: str = "error") -> dict:
    """:func:`encode_prompt_response` for a :class:`Demonstration` (uses its chat messages if any)."""
    return encode_prompt_response(tokenizer, demo.prompt, demo.response, max_len, truncation,
                                  messages=demo.messages, path=demo.source, line=demo.line)


def encode_ranking(tokenizer, ranking: Ranking, max_len: int, truncation: str = "error") -> list[dict]:
    """Encode each of the K responses of a ranking with its prompt (K dicts, in ``responses`` order)."""
    out = []
    for resp in ranking.responses:
        messages = None
        if ranking.messages is not None:
            messages = list(ranking.messages) + [{"role": "assistant", "content": resp.lstrip()}]
        out.append(encode_prompt_response(tokenizer, ranking.prompt, resp, max_len, truncation,
                                          messages=messages, path=ranking.source, line=ranking.line))
    return out


def _as_lists(seqs) -> list[list[int]]:
    if len(seqs) == 0:
        raise ValueError("cannot pad an empty batch")
    return [s.tolist() if isinstance(s, torch.Tensor) else list(s) for s in seqs]


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = _as_lists(seqs)
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.bool)
    for b, s in enumerate(seqs):
        if s:
            cols = slice(t - len(s), t) if left else slice(0, len(s))
            ids[b, cols] = torch.tensor(s, dtype=torch.long)
            mask[b, cols] = True
    return ids, mask


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the right: ``(ids (B, T) long, attention_mask (B, T) bool)``; T = the longest sequence."""
    return _pad(seqs, pad_id, left=False)


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the left (for generation): ``(ids (B, T) long, attention_mask (B, T) bool)``."""
    return _pad(seqs, pad_id, left=True)


def _pad_id(tokenizer, pad_id: int | None) -> int:
    if pad_id is not None:
        return int(pad_id)
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    return _eos_id(tokenizer)  # padded positions are masked out, so any id works


def batch_encode_demonstrations(tokenizer, demos: Sequence[Demonstration], max_len: int,
                                truncation: str = "error", pad_id: int | None = None) -> dict:
    """SFT batch, right padded: ``{"input_ids", "attention_mask", "loss_mask"}``, each (B, T).

    ``loss_mask`` is True on response tokens and the EOS (never on padding).
    """
    enc = [encode_demonstration(tokenizer, d, max_len, truncation) for d in demos]
    ids, attn = pad_right([e["input_ids"] for e in enc], _pad_id(tokenizer, pad_id))
    loss_mask = torch.zeros_like(attn)
    for b, e in enumerate(enc):
        loss_mask[b, : len(e["loss_mask"])] = torch.tensor(e["loss_mask"], dtype=torch.bool)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask}


class RankingBatch(NamedTuple):
    """Flattened rankings for the K-wise RM loss: row n is one (prompt, response) sequence.

    ``group[n]`` is the index (into the list of rankings) of the prompt the row belongs to;
    ``rank[n]`` is the response's rank in that group (0 = best; tied responses share a rank).
    Rows of a group are contiguous and in ``responses`` order; every response appears once.
    """

    input_ids: torch.Tensor  # (N, T) long, right padded
    attention_mask: torch.Tensor  # (N, T) bool
    group: torch.Tensor  # (N,) long
    rank: torch.Tensor  # (N,) long


def batch_encode_rankings(tokenizer, rankings: Sequence[Ranking], max_len: int,
                          truncation: str = "error", pad_id: int | None = None) -> RankingBatch:
    """Flatten rankings into ``sum(K_i)`` right-padded sequences (K forward passes per prompt).

    The RM score is read at the last real token of each row (the EOS), i.e. at
    ``attention_mask.sum(1) - 1``.
    """
    seqs: list[list[int]] = []
    group: list[int] = []
    rank: list[int] = []
    for g, r in enumerate(rankings):
        enc = encode_ranking(tokenizer, r, max_len, truncation)
        seqs.extend(e["input_ids"] for e in enc)
        group.extend([g] * len(enc))
        rank.extend(r.ranks())
    ids, attn = pad_right(seqs, _pad_id(tokenizer, pad_id))
    return RankingBatch(ids, attn, torch.tensor(group, dtype=torch.long), torch.tensor(rank, dtype=torch.long))


def batch_encode_prompts(tokenizer, prompts: Sequence[Prompt | str], max_len: int | None = None,
                         truncation: str = "error", pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt batch for generation: ``(input_ids (B, T), attention_mask (B, T))``.

    A prompt longer than ``max_len`` (if given) is a DataError, or is cut from the left with a
    warning when ``truncation="truncate_prompt_left"``.
    """
    _check_mode(truncation)
    seqs = []
    for p in prompts:
        text, path, line = (p, None, None) if isinstance(p, str) else (p.prompt, p.source, p.line)
        ids = _tokens(tokenizer, text)
        if not ids:
            raise DataError(path, line, "prompt", "tokenizes to zero tokens")
        if max_len is not None and len(ids) > max_len:
            if truncation == "error":
                raise DataError(path, line, "prompt", f"{len(ids)} tokens is longer than max_len={max_len}")
            log.warning("%s: prompt truncated from the left, %d -> %d tokens",
                        f"{path}:{line}" if path is not None else "<data>", len(ids), max_len)
            ids = ids[len(ids) - max_len:]
        seqs.append(ids)
    return pad_left(seqs, _pad_id(tokenizer, pad_id))
