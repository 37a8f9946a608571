"""Tokenization and padding: records -> tensors.

The one rule (docs/architecture.md, "Text format"): a training sequence is
``tokens(prompt) + tokens(response) + [eos]``; loss, score and KL count only the response tokens
and the EOS. Text is tokenized with ``tokenizer(text, add_special_tokens=False)`` so that nothing
is added behind our back; prompt and response are tokenized separately so the boundary is exact.

The text of a prompt and of a response is :mod:`instructrl.data.render`'s: the stages pass the
``fmt`` (a :class:`~instructrl.data.render.PromptFormat`) they resolved once; without one, a chat
record uses the tokenizer's chat template when it has one and anything else is used as written.
With a chat template the response ends with the template's end-of-turn text, and the EOS is not
doubled when that text is the EOS token.

Masks: True = a real token that counts. Right padding for training (SFT, RM), left padding for
generation (prompts).
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import torch

from instructrl.data import render
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


def _fit(fmt, tokenizer, prompt: str, messages, prompt_ids: list[int], response_ids: list[int], max_len: int,
         truncation: str, path, line) -> list[int]:
    """The prompt ids, shortened (render.fit_prompt: never into a template's header) so that
    prompt + response (which ends with the EOS) <= max_len."""
    total = len(prompt_ids) + len(response_ids)
    if total <= max_len:
        return prompt_ids
    if truncation == "error":
        raise DataError(
            path, line, None,
            f"sequence of {total} tokens (prompt {len(prompt_ids)} + response {len(response_ids) - 1} + EOS) "
            f"is longer than max_len={max_len}; raise max_len, shorten the record, or set "
            "truncation='truncate_prompt_left'",
        )
    keep = max_len - len(response_ids)
    if keep < 1:
        raise DataError(
            path, line, "response",
            f"the response alone ({len(response_ids) - 1} tokens + EOS) leaves no room for the prompt "
            f"in max_len={max_len}",
        )
    if fmt.raw:  # the prompt exactly as written: keep its end
        log.warning(
            "%s: prompt truncated from the left, %d -> %d tokens (max_len=%d)",
            f"{path}:{line}" if path is not None else "<data>", len(prompt_ids), keep, max_len,
        )
        return prompt_ids[len(prompt_ids) - keep:]
    return render.fit_prompt(fmt, tokenizer, prompt, messages, keep, path, line)


def encode_prompt_response(tokenizer, prompt: str, response: str, max_len: int,
                           truncation: str = "error", *, messages: list | None = None,
                           path=None, line: int | None = None, fmt=None) -> dict:
    """Tokenize one (prompt, response) pair, rendered by ``fmt`` (:mod:`instructrl.data.render`).

    Returns ``{"input_ids": list[int], "loss_mask": list[bool]}`` for
    ``tokens(rendered prompt) + tokens(rendered response) + [eos]``, with ``loss_mask`` True on
    the response tokens and the EOS. ``messages`` is the whole chat (last message = the response)
    when the record was chat-formatted; its last message's content is then the response.
    ``path``/``line`` locate the record in error messages.
    """
    _check_mode(truncation)
    _eos_id(tokenizer)
    conv = list(messages[:-1]) if messages is not None else None
    if fmt is None:
        fmt = render.legacy_format(tokenizer, conv)
    if conv is not None and fmt.kind == "chat":
        response = messages[-1]["content"]  # (`response` is the plain rendering's, with a leading space)
    text = render.prompt_text(fmt, tokenizer, prompt, conv)
    response_ids = render.response_ids(fmt, tokenizer, text, response, conv)
    if not _tokens(tokenizer, response):
        raise DataError(path, line, "response", "tokenizes to zero tokens")
    prompt_ids = _fit(fmt, tokenizer, prompt, conv, _tokens(tokenizer, text), response_ids, max_len, truncation,
                      path, line)
    ids = prompt_ids + response_ids
    mask = [False] * len(prompt_ids) + [True] * len(response_ids)
    return {"input_ids": ids, "loss_mask": mask}


def encode_demonstration(tokenizer, demo: Demonstration, max_len: int, truncation: str = "error", fmt=None) -> dict:
    """:func:`encode_prompt_response` for a :class:`Demonstration` (uses its chat messages if any)."""
    return encode_prompt_response(tokenizer, demo.prompt, demo.response, max_len, truncation,
                                  messages=demo.messages, path=demo.source, line=demo.line, fmt=fmt)


def encode_ranking(tokenizer, ranking: Ranking, max_len: int, truncation: str = "error", fmt=None) -> list[dict]:
    """Encode each of the K responses of a ranking with its prompt (K dicts, in ``responses`` order)."""
    out = []
    for resp in ranking.responses:
        messages = None
        if ranking.messages is not None:
            messages = list(ranking.messages) + [{"role": "assistant", "content": resp}]
        out.append(encode_prompt_response(tokenizer, ranking.prompt, resp, max_len, truncation,
                                          messages=messages, path=ranking.source, line=ranking.line, fmt=fmt))
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
                         truncation: str = "error", pad_id: int | None = None,
                         fmt=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt batch for generation: ``(input_ids (B, T), attention_mask (B, T))``,
    each prompt rendered by ``fmt`` (default: chat records through the chat template, the rest as written).

    A prompt longer than ``max_len`` (if given) is a DataError, or is shortened with a warning
    when ``truncation="truncate_prompt_left"`` (render.fit_prompt: never into a template's header).
    """
    _check_mode(truncation)
    seqs = []
    for p in prompts:
        text, msgs, path, line = (p, None, None, None) if isinstance(p, str) else (p.prompt, p.messages, p.source, p.line)
        f = fmt or render.legacy_format(tokenizer, msgs)
        ids = render.prompt_ids(f, tokenizer, text, msgs)
        if not ids:
            raise DataError(path, line, "prompt", "tokenizes to zero tokens")
        if max_len is not None and len(ids) > max_len:
            if truncation == "error":
                raise DataError(path, line, "prompt", f"{len(ids)} tokens is longer than max_len={max_len}")
            ids = render.fit_prompt(f, tokenizer, text, msgs, max_len, path, line)
        seqs.append(ids)
    return pad_left(seqs, _pad_id(tokenizer, pad_id))
