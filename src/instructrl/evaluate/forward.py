"""Model-forward metrics: what evaluation measures by running a model's weights.

- :func:`rm_scores` — a reward model's scores of (prompt, response) pairs (``rm_score.*``).
- :func:`kl_to_reference` — KL(π || π_SFT) estimated from samples of π at T = 1 (``kl*.*``).
- :func:`benchmark_scores`, :func:`benchmark_accuracy`, :func:`pretrain_nll` — the alignment tax:
  multiple-choice accuracy scored by log-probability (as the paper's few-shot evals) and held-out
  pretraining loss (``tax.*``); :func:`read_benchmarks` reads the items.
- :func:`best_of_n_samples`, :func:`best_of_n` — the RM's best of n samples, whose KL to the
  sampling policy is :func:`best_of_n_kl` ``= log n - (n-1)/n`` ([ST] Table 10, [GA], [AF]) (``bon.*``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from instructrl.data.collate import pad_right
from instructrl.data.readers import read_records
from instructrl.errors import DataError
from instructrl.losses import best_of_n_kl  # log n - (n-1)/n, re-exported here
from instructrl.losses import kl_k3
from instructrl.models import context_length, score_texts
from instructrl.rollout import decode_responses, encode_prompts, forward_logprobs, generate, prompt_room, sample

__all__ = ["rm_scores", "kl_to_reference", "option_logprobs", "read_benchmarks", "benchmark_scores",
           "benchmark_accuracy", "pretrain_nll", "best_of_n_samples", "best_of_n", "best_of_n_kl"]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _toks(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def rm_scores(rm, tokenizer, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 64, fmt=None, messages: Sequence | None = None) -> torch.Tensor:
    """Reward-model scores (N,) of ``tokens(prompt) + tokens(response) + [eos]``, read at the EOS,
    the text rendered by ``fmt`` (instructrl.data.render, as the RM was trained; None: as written);
    ``messages[i]``: the conversation of prompt i when it was a chat record.

    The same rule as PPO's rollouts and SFT's RM-score selection (`models.score_token_pairs`);
    a too-long sequence keeps the end of its prompt (the model's context bounds it).
    """
    return score_texts(rm, tokenizer, list(prompts), list(responses), batch_size, fmt=fmt, messages=messages)


@torch.no_grad()
def kl_to_reference(policy, ref, tokenizer, prompts: Sequence[str], n_samples: int | None = None,
                    max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0,
                    batch_size: int = 64) -> dict:
    """KL(π || π_ref) per response and per token, estimated from samples of the policy.

    Draws ``n_samples`` responses (prompts cycled) from ``policy`` at ``temperature`` (1 = the
    policy itself) and returns the mean over samples of Σ_t [log π(y_t) - log π_ref(y_t)] over the
    response tokens including the EOS (the "k1" estimator; nats). ``per_token`` is the same sum
    divided by the number of response tokens. Both models see logits / T. ``per_response_k3`` /
    ``per_token_k3`` use the k3 estimator ``Σ_t (ρ_t - 1) - log ρ_t`` with ``ρ_t = π_ref / π``
    (Schulman 2020): also unbiased, and never negative, where the mean of a few k1 sums can be.
    ``prompts`` are texts or token-id lists (rendered by instructrl.data.render).
    Returns ``{"per_response", "per_token", "per_response_k3", "per_token_k3", "per_response_se",
    "n", "mean_tokens", "texts"}`` (``texts``: the sampled responses, one per prompt in order: the
    policy's answers at T).
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("kl_to_reference: no prompts")
    n = n_samples or len(prompts)
    chosen = [prompts[i % len(prompts)] for i in range(n)]
    device = _device(policy)
    states = (policy.training, ref.training)
    policy.eval()
    ref.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    per_seq, per_seq_k3, n_tok, texts = [], [], [], []
    for i in range(0, n, batch_size):
        ids, mask = encode_prompts(tokenizer, chosen[i:i + batch_size], prompt_room(policy, max_new_tokens), device)
        s = sample(policy, ids, mask, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   temperature, g)
        texts.extend(decode_responses(tokenizer, s))
        P = ids.shape[1]
        # Recompute the policy's log-probs with a full forward (same numerics as the reference's).
        lp = forward_logprobs(policy, s.input_ids, s.attention_mask.long(), P, temperature)
        ref_lp = forward_logprobs(ref, s.input_ids.to(_device(ref)), s.attention_mask.long().to(_device(ref)),
                                  P, temperature).to(device)
        m = s.response_mask.float()
        per_seq.append(((lp - ref_lp) * m).sum(1).cpu())
        per_seq_k3.append((kl_k3(lp, ref_lp) * m).sum(1).cpu())
        n_tok.append(m.sum(1).cpu())
    policy.train(states[0])
    ref.train(states[1])
    kl = torch.cat(per_seq).double()
    k3 = torch.cat(per_seq_k3).double()
    toks = torch.cat(n_tok).double()
    return {
        "per_response": float(kl.mean()),
        "per_token": float(kl.sum() / toks.sum().clamp(min=1)),
        "per_response_k3": float(k3.mean()),
        "per_token_k3": float(k3.sum() / toks.sum().clamp(min=1)),
        "per_response_se": float(kl.std() / math.sqrt(len(kl))) if len(kl) > 1 else 0.0,
        "n": int(len(kl)),
        "mean_tokens": float(toks.mean()),
        "texts": texts,
    }


def _item_fields(item, i: int) -> tuple[str, list[str], int, str]:
    try:
        context, options, label = item["context"], list(item["options"]), item["label"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"benchmark item {i}: needs 'context', 'options' and 'label' ({e})") from None
    if isinstance(label, str):
        if label not in options:
            raise ValueError(f"benchmark item {i}: label {label!r} is not one of its options")
        label = options.index(label)
    if not (isinstance(label, int) and 0 <= label < len(options)):
        raise ValueError(f"benchmark item {i}: label {label!r} is not an option index")
    return context, options, int(label), str(item.get("task") or item.get("kind") or "benchmark")


@torch.no_grad()
def option_logprobs(model, tokenizer, contexts: Sequence[str], options: Sequence[str],
                    batch_size: int = 64) -> list[float]:
    """Σ log p(option tokens | context) for each (context, option) pair (batched, right padded)."""
    device = _device(model)
    limit = context_length(model, 1024)
    out: list[float] = []
    for i in range(0, len(contexts), batch_size):
        seqs, starts = [], []
        for c, o in zip(contexts[i:i + batch_size], options[i:i + batch_size]):
            o_ids = _toks(tokenizer, o)[: limit - 1]
            c_ids = _toks(tokenizer, c)
            c_ids = c_ids[-(limit - len(o_ids)):] if c_ids else []
            if not c_ids:  # nothing to condition on: condition on EOS (the document separator)
                c_ids = [tokenizer.eos_token_id]
            seqs.append(c_ids + o_ids)
            starts.append(len(c_ids))
        ids, mask = pad_right(seqs, tokenizer.pad_token_id)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask.long()).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(2, ids[:, 1:, None]).squeeze(-1)
        pos = torch.arange(1, ids.shape[1], device=device)[None, :]
        st = torch.tensor(starts, device=device)[:, None]
        option_mask = (pos >= st) & mask[:, 1:]
        out.extend((logp * option_mask).sum(1).cpu().tolist())
    return out


def read_benchmarks(path) -> list[dict]:
    """Benchmark items ``{"kind", "context", "options", "label"}`` from JSONL; a bad line is a
    DataError naming file, line and field."""
    def parse(obj, path, line):
        if not isinstance(obj, dict):
            raise DataError(path, line, None, "expected a JSON object")
        for key in ("context", "options", "label"):
            if key not in obj:
                raise DataError(path, line, key, "missing")
        if not isinstance(obj["context"], str):
            raise DataError(path, line, "context", "expected a string")
        opts = obj["options"]
        if not (isinstance(opts, list) and len(opts) >= 2 and all(isinstance(o, str) and o for o in opts)):
            raise DataError(path, line, "options", "expected a list of at least two non-empty strings")
        try:
            _item_fields(obj, line)
        except ValueError as e:
            raise DataError(path, line, "label", str(e).split(": ", 1)[-1]) from None
        return obj

    return read_records(path, parse)


def benchmark_scores(model, tokenizer, items: Sequence[dict], batch_size: int = 64) -> list[dict]:
    """Per item: ``{"task", "pred", "label", "correct"}``.

    The prediction is the option with the highest log-probability given the context (how the
    paper's few-shot evals score choices); ``task`` is the item's "task", else its "kind".
    """
    flat_c, flat_o, owner = [], [], []
    parsed = [_item_fields(it, i) for i, it in enumerate(items)]
    for i, (c, opts, _, _) in enumerate(parsed):
        for o in opts:
            flat_c.append(c)
            flat_o.append(o)
            owner.append(i)
    was_training = model.training
    model.eval()
    lps = option_logprobs(model, tokenizer, flat_c, flat_o, batch_size)
    model.train(was_training)
    per_item: list[list[float]] = [[] for _ in parsed]
    for i, lp in zip(owner, lps):
        per_item[i].append(lp)
    out = []
    for (c, opts, label, task), scores in zip(parsed, per_item):
        pred = int(np.argmax(scores))
        out.append({"task": task, "pred": pred, "label": label, "correct": pred == label})
    return out


def benchmark_accuracy(model, tokenizer, items: Sequence[dict], batch_size: int = 64) -> float:
    """Accuracy of argmax-log-prob option choice on the world's "public NLP benchmarks"."""
    if not items:
        raise ValueError("benchmark_accuracy: no items")
    res = benchmark_scores(model, tokenizer, items, batch_size)
    return float(np.mean([r["correct"] for r in res]))


@torch.no_grad()
def pretrain_nll(model, tokenizer, texts: Sequence[str], seq_len: int = 128, max_tokens: int = 32768,
                 batch_size: int = 32) -> float:
    """Mean next-token NLL (nats per token) on held-out pretraining text.

    Documents are tokenized, each followed by EOS, concatenated, cut at ``max_tokens`` predicted
    tokens, and read in non-overlapping windows of ``seq_len`` predictions.
    """
    stream: list[int] = []
    for t in texts:
        stream.extend(_toks(tokenizer, t))
        stream.append(tokenizer.eos_token_id)
        if len(stream) > max_tokens:
            break
    stream = stream[: max_tokens + 1]
    if len(stream) < 2:
        raise ValueError("pretrain_nll: not enough text")
    seq_len = min(seq_len, context_length(model, 1024) - 1) if context_length(model, 1024) > 1 else seq_len
    windows = [stream[i:i + seq_len + 1] for i in range(0, len(stream) - 1, seq_len)]
    windows = [w for w in windows if len(w) >= 2]
    device = _device(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        T = max(len(w) for w in chunk)
        ids = torch.full((len(chunk), T), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), T), dtype=torch.bool)
        for b, w in enumerate(chunk):
            ids[b, : len(w)] = torch.tensor(w)
            mask[b, : len(w)] = True
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1].long()).logits.float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        m = mask[:, 1:]
        total += float((nll * m).sum())
        count += int(m.sum())
    model.train(was_training)
    return total / max(count, 1)


@torch.no_grad()
def best_of_n_samples(policy, rm, tokenizer, prompts: Sequence[str], n: int, max_new_tokens: int = 48,
                      temperature: float = 1.0, batch_size: int = 64, seed: int = 0,
                      rm_tokenizer=None, prompt_inputs: Sequence | None = None, rm_fmt=None,
                      messages: Sequence | None = None) -> tuple[list[list[str]], torch.Tensor]:
    """``n`` samples per prompt from ``policy`` and their RM scores.

    ``prompt_inputs``: the prompts as the policy reads them (rendered token ids; default the
    texts); ``rm_fmt`` / ``messages``: how the RM reads them (see :func:`rm_scores`).
    Returns ``(texts, scores)``: ``texts[i]`` the n responses to ``prompts[i]``, ``scores`` (P, n).
    """
    if n < 1:
        raise ValueError("best_of_n: n must be >= 1")
    prompts = list(prompts)
    inputs = list(prompt_inputs) if prompt_inputs is not None else prompts
    msgs = list(messages) if messages is not None else [None] * len(prompts)
    rep = [p for p in prompts for _ in range(n)]
    flat = generate(policy, tokenizer, [p for p in inputs for _ in range(n)], max_new_tokens, temperature,
                    batch_size, seed)
    scores = rm_scores(rm, rm_tokenizer or tokenizer, rep, flat, batch_size, rm_fmt,
                       [m for m in msgs for _ in range(n)]).view(len(prompts), n)
    return [flat[i * n:(i + 1) * n] for i in range(len(prompts))], scores


def best_of_n(policy, rm, tokenizer, prompts: Sequence[str], n: int, max_new_tokens: int = 48,
              temperature: float = 1.0, batch_size: int = 64, seed: int = 0, rm_tokenizer=None,
              return_scores: bool = False):
    """Sample ``n`` responses per prompt from ``policy`` and keep the one the RM scores highest.

    Returns the chosen responses (and, with ``return_scores``, their RM scores and the mean RM
    score of all samples, i.e. of plain sampling).
    """
    texts, scores = best_of_n_samples(policy, rm, tokenizer, prompts, n, max_new_tokens, temperature,
                                      batch_size, seed, rm_tokenizer)
    best = scores.argmax(1).tolist()
    chosen = [t[j] for t, j in zip(texts, best)]
    if return_scores:
        return chosen, scores.max(1).values.tolist(), float(scores.mean())
    return chosen

