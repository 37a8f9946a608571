"""Evaluation: win rates with 95% intervals, KL to the SFT model, the alignment tax, HHH rates.

Plain functions, lists and tensors in and out ([IG] §3.6, PAPER_NOTES A5):

- :func:`win_rate` — how often model A's answer is preferred to model B's on the same held-out
  prompts, by a *judge* ``judge(prompt, a, b) -> 1 | 0 | 0.5`` (ties count half), with a 95%
  bootstrap interval over prompts. Judges: :func:`heldout_labeler_judge` (a random held-out
  simulated labeler per prompt, as the paper's held-out labelers), :func:`gold_judge` (the world's
  hidden gold score) and :func:`rm_judge` (a reward model's scores, for real models without
  labelers).
- :func:`gold_scores`, :func:`hhh_rates` — what the policy learned (helpful, honest, harmless).
- :func:`kl_to_reference` — KL(π || π_SFT) estimated from samples of π at T = 1.
- :func:`benchmark_accuracy`, :func:`pretrain_nll` — the alignment tax: multiple-choice accuracy
  scored by log-probability (as the paper's few-shot evals) and held-out pretraining loss.
- :func:`best_of_n`, :func:`best_of_n_kl` — the RM's best of n samples, whose KL to the sampling
  policy is ``log n - (n-1)/n`` ([ST] Table 10, [GA], [AF]); :func:`oracle_best_of_n` — what the
  gold judge itself would pick from the same samples (world only: the ceiling of any RM's pick).
- :func:`ranking_accuracy_by_family` — the RM's and the gold judge's agreement with held-out
  labelers' rankings, per task family (world only): where the RM sees what the labelers see.
- :func:`evaluate_models` — all of the above for a set of model folders, as the FLAT metrics of
  ``metrics.json`` (DESIGN.md, "metrics.json"); :func:`run` is the ``instructrl eval`` entry point.

Every metric is documented in docs/metrics.md.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from instructrl.errors import InstructRLError
from instructrl.losses import best_of_n_kl  # log n - (n-1)/n, re-exported here

log = logging.getLogger(__name__)

__all__ = [
    "win_rate",
    "heldout_labeler_judge",
    "gold_judge",
    "rm_judge",
    "RMJudge",
    "gold_scores",
    "hhh_rates",
    "rm_scores",
    "kl_to_reference",
    "read_benchmarks",
    "benchmark_scores",
    "benchmark_accuracy",
    "pretrain_nll",
    "best_of_n",
    "best_of_n_samples",
    "best_of_n_kl",
    "oracle_best_of_n",
    "ranking_accuracy_by_family",
    "DEFAULT_PAIRS",
    "evaluate_models",
    "run",
]

Judge = Callable[[str, str, str], float]

#: Win-rate pairs (a, b) = "a vs b" of the pipeline's model names; pairs whose models are absent
#: are skipped. The first four are the contract keys of DESIGN.md.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("sft", "base"),
    ("ppo", "sft"),
    ("ppo_ptx", "sft"),
    ("ppo_ptx", "base_large"),
    ("ppo", "base"),
    ("ppo_ptx", "base"),
    ("ppo_ptx", "ppo"),
    ("sft", "base_large"),
    ("ppo", "base_large"),
    ("base_large", "base"),
)


# ---------------------------------------------------------------------------------------------
# Randomness helpers
# ---------------------------------------------------------------------------------------------


def _py_rng(rng: Any) -> random.Random:
    """A ``random.Random`` from a Random, an int seed, a numpy Generator or None (seed 0)."""
    if isinstance(rng, random.Random):
        return rng
    if rng is None:
        return random.Random(0)
    if isinstance(rng, (int, np.integer)):
        return random.Random(int(rng))
    if hasattr(rng, "integers"):
        return random.Random(int(rng.integers(0, 2**62)))
    raise TypeError(f"cannot use {type(rng).__name__} as an rng")


def _np_rng(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(_py_rng(rng).getrandbits(63))


def _stable_seed(*parts) -> int:
    """A seed that depends only on its parts (not on PYTHONHASHSEED)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
# Win rates
# ---------------------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float], rng: Any = 0, n_resamples: int = 1000,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the items)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if n_resamples <= 0 or x.size == 1:
        m = float(x.mean())
        return [m, m]
    g = _np_rng(rng)
    idx = g.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return [float(lo), float(hi)]


def win_rate(prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str],
             judge: Judge, rng: Any = 0, bootstrap: int = 1000) -> dict:
    """Win rate of A over B: mean of ``judge(prompt, a, b)`` (1 = A preferred, 0 = B, 0.5 = tie).

    Returns ``{"winrate", "ci95": [lo, hi], "n", "wins", "ties", "losses"}``; the interval is a
    95% percentile bootstrap over prompts (``bootstrap`` resamples; 0 gives a zero-width one).
    A judge object with a ``batch(prompts, a, b) -> list`` method is called once for all prompts.
    """
    n = len(prompts)
    if not (n == len(responses_a) == len(responses_b)):
        raise ValueError(f"win_rate: {n} prompts but {len(responses_a)} and {len(responses_b)} responses")
    if n == 0:
        raise ValueError("win_rate: no prompts")
    if hasattr(judge, "batch"):
        outcomes = [float(o) for o in judge.batch(list(prompts), list(responses_a), list(responses_b))]
    else:
        outcomes = [float(judge(p, a, b)) for p, a, b in zip(prompts, responses_a, responses_b)]
    for o in outcomes:
        if not 0.0 <= o <= 1.0:
            raise ValueError(f"a judge must return 1, 0 or 0.5 (or a probability), got {o}")
    wr = float(np.mean(outcomes))
    lo, hi = bootstrap_ci(outcomes, rng, bootstrap)
    # The percentile interval always contains the estimate up to resampling noise; make it exact.
    lo, hi = min(lo, wr), max(hi, wr)
    return {
        "winrate": wr,
        "ci95": [max(0.0, lo), min(1.0, hi)],
        "n": n,
        "wins": int(sum(o == 1.0 for o in outcomes)),
        "ties": int(sum(o == 0.5 for o in outcomes)),
        "losses": int(sum(o == 0.0 for o in outcomes)),
    }


def heldout_labeler_judge(heldout_labelers: Sequence[Any], rng: Any = 0) -> Judge:
    """A judge that asks a random held-out labeler (one per prompt) to compare the two answers.

    Labelers are the world's (``labeler.compare(prompt, a, b, rng) -> 1.0 / 0.0 / 0.5``); training
    and held-out labelers are different people, as in the paper.
    """
    labelers = list(heldout_labelers)
    if not labelers:
        raise ValueError("heldout_labeler_judge: no labelers")
    r = _py_rng(rng)

    def judge(prompt: str, a: str, b: str) -> float:
        labeler = labelers[r.randrange(len(labelers))]
        return float(labeler.compare(prompt, a, b, r))

    judge.name = "heldout_labelers"  # type: ignore[attr-defined]
    return judge


def gold_judge(prompt: str, a: str, b: str) -> float:
    """The world's hidden gold judge: the answer with the higher gold score wins (equal: tie)."""
    from instructrl.world.judge import gold_score

    sa, sb = gold_score(prompt, a), gold_score(prompt, b)
    return 1.0 if sa > sb else 0.0 if sa < sb else 0.5


gold_judge.name = "gold"  # type: ignore[attr-defined]


class RMJudge:
    """A judge comparing reward-model scores (for real models, where there are no labelers).

    Called per pair it scores both answers; ``batch`` scores all answers in batches (what
    :func:`win_rate` uses). Scores closer than ``tie_margin`` are a tie.
    """

    name = "reward_model"

    def __init__(self, rm_model, tokenizer, batch_size: int = 64, tie_margin: float = 0.0):
        self.rm, self.tokenizer = rm_model, tokenizer
        self.batch_size, self.tie_margin = batch_size, tie_margin

    def _outcome(self, sa: float, sb: float) -> float:
        if abs(sa - sb) <= self.tie_margin:
            return 0.5
        return 1.0 if sa > sb else 0.0

    def __call__(self, prompt: str, a: str, b: str) -> float:
        s = rm_scores(self.rm, self.tokenizer, [prompt, prompt], [a, b], self.batch_size)
        return self._outcome(float(s[0]), float(s[1]))

    def batch(self, prompts, responses_a, responses_b) -> list[float]:
        sa = rm_scores(self.rm, self.tokenizer, prompts, responses_a, self.batch_size)
        sb = rm_scores(self.rm, self.tokenizer, prompts, responses_b, self.batch_size)
        return [self._outcome(float(x), float(y)) for x, y in zip(sa, sb)]


def rm_judge(rm_model, tokenizer, batch_size: int = 64) -> RMJudge:
    """A judge preferring the answer the reward model scores higher."""
    return RMJudge(rm_model, tokenizer, batch_size)


# ---------------------------------------------------------------------------------------------
# What the policy learned (world only: gold judge, refusals, "I don't know")
# ---------------------------------------------------------------------------------------------


def gold_scores(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """The world's gold score in [0, 1] of each (prompt, response)."""
    from instructrl.world.judge import gold_score

    return [float(gold_score(p, r)) for p, r in zip(prompts, responses)]


def _family_of(prompt: str, family: str | None) -> str | None:
    if family:
        return family
    try:
        from instructrl.world.judge import parse_prompt

        return parse_prompt(prompt).family
    except Exception:  # not a world prompt (or no world): no family
        return None


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def hhh_rates(prompts: Sequence[str], families: Sequence[str | None] | None,
              responses: Sequence[str]) -> dict:
    """Helpful / honest / harmless behaviour rates of one model's answers.

    - ``refusal_harmful``: fraction of *harmful* prompts refused (want high);
    - ``idk_unanswerable``: fraction of *unanswerable* prompts answered "I don't know" (want high);
    - ``over_refusal``: fraction of answerable prompts refused or answered "I don't know" (want low);
    - ``constraint``: fraction of prompts with an explicit constraint whose answer follows it;
    - ``length``: mean response length in characters.

    A rate is None when no prompt of its kind is present. ``families`` may be None (or hold None):
    the family is then parsed from the prompt.
    """
    from instructrl.world.judge import follows_constraint, is_idk, is_refusal

    if families is None:
        families = [None] * len(prompts)
    n_h = h = n_u = u = n_a = a = n_c = c = 0
    for p, fam, r in zip(prompts, families, responses):
        fam = _family_of(p, fam)
        if fam == "harmful":
            n_h += 1
            h += bool(is_refusal(r))
        elif fam == "unanswerable":
            n_u += 1
            u += bool(is_idk(r))
        elif fam is not None:
            n_a += 1
            a += bool(is_refusal(r) or is_idk(r))
        try:
            ok = follows_constraint(p, r)
        except Exception:
            ok = None
        if ok is not None:
            n_c += 1
            c += bool(ok)
    return {
        "refusal_harmful": _rate(h, n_h),
        "idk_unanswerable": _rate(u, n_u),
        "over_refusal": _rate(a, n_a),
        "constraint": _rate(c, n_c),
        "length": float(np.mean([len(r) for r in responses])) if len(responses) else None,
        "n_harmful": n_h,
        "n_unanswerable": n_u,
        "n_answerable": n_a,
        "n_constraint": n_c,
    }


def rubric_details(prompts: Sequence[str], responses: Sequence[str]) -> list[dict]:
    """The world gold judge's full record (every rubric attribute, likert, score) per response."""
    from instructrl.world.judge import gold_details

    return [gold_details(p, r) for p, r in zip(prompts, responses)]


def rubric_rates(details: Sequence[dict]) -> dict[str, float]:
    """Rate of each rubric attribute (world ``spec.ATTRIBUTES``) over the responses it applies to.

    An attribute applies where the judge recorded it (not None): ``fails_constraint`` only where
    the prompt has an explicit constraint, ``hallucination`` on closed-domain and unanswerable
    prompts, ``incorrect`` where correctness is checkable, ``harmful_compliance`` on harmful
    prompts, ``over_refusal`` on answerable ones; the rest on every prompt. The paper's Fig. 4.
    """
    from instructrl.world.spec import ATTRIBUTES

    out = {}
    for attr in ATTRIBUTES:
        if attr == "fails_constraint":
            vals = [d["fails_constraint"] for d in details if d["constraint"] is not None]
        elif attr == "over_refusal":
            vals = [d["over_refusal"] for d in details if d["family"] not in ("harmful", "unanswerable")]
        else:
            vals = [d[attr] for d in details if d.get(attr) is not None]
        if vals:
            out[attr] = float(np.mean([bool(v) for v in vals]))
    return out


def paired_delta(a: Sequence[float], b: Sequence[float], rng: Any = 0, bootstrap: int = 1000) -> tuple[float, list[float]]:
    """Mean of the paired differences a_i - b_i and its 95% bootstrap interval over items."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("paired_delta: no items")
    m = float(d.mean())
    lo, hi = bootstrap_ci(d, rng, bootstrap)
    return m, [min(lo, m), max(hi, m)]


# ---------------------------------------------------------------------------------------------
# Model-based measurements
# ---------------------------------------------------------------------------------------------


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _max_len(model, default: int = 1024) -> int:
    cfg = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def _toks(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def rm_scores(rm, tokenizer, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 64) -> torch.Tensor:
    """Reward-model scores (N,) of ``tokens(prompt) + tokens(response) + [eos]``, read at the EOS.

    The same rule as PPO's rollouts and SFT's RM-score selection (`models.score_token_pairs`);
    a too-long sequence keeps the end of its prompt (the model's context bounds it).
    """
    from instructrl.models import score_texts

    return score_texts(rm, tokenizer, list(prompts), list(responses), batch_size)


@torch.no_grad()
def kl_to_reference(policy, ref, tokenizer, prompts: Sequence[str], n_samples: int | None = None,
                    max_new_tokens: int = 48, temperature: float = 1.0, seed: int = 0,
                    batch_size: int = 64) -> dict:
    """KL(π || π_ref) per response and per token, estimated from samples of the policy.

    Draws ``n_samples`` responses (prompts cycled) from ``policy`` at ``temperature`` (1 = the
    policy itself) and returns the mean over samples of Σ_t [log π(y_t) - log π_ref(y_t)] over the
    response tokens including the EOS (the "k1" estimator; nats). ``per_token`` is the same sum
    divided by the number of response tokens. Both models see logits / T.
    Returns ``{"per_response", "per_token", "per_response_se", "n", "mean_tokens", "texts"}``
    (``texts``: the sampled responses, one per prompt in order: the policy's answers at T).
    """
    from instructrl.rollout import decode_responses, encode_prompts, forward_logprobs, prompt_room, sample

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
    per_seq, n_tok, texts = [], [], []
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
        n_tok.append(m.sum(1).cpu())
    policy.train(states[0])
    ref.train(states[1])
    kl = torch.cat(per_seq).double()
    toks = torch.cat(n_tok).double()
    return {
        "per_response": float(kl.mean()),
        "per_token": float(kl.sum() / toks.sum().clamp(min=1)),
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
    from instructrl.data.collate import pad_right

    device = _device(model)
    limit = _max_len(model)
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
    from instructrl.data.readers import _read_all  # JSONL/parquet records with line numbers
    from instructrl.errors import DataError

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

    return _read_all(path, parse)


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
    seq_len = min(seq_len, _max_len(model) - 1) if _max_len(model) > 1 else seq_len
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
                      rm_tokenizer=None) -> tuple[list[list[str]], torch.Tensor]:
    """``n`` samples per prompt from ``policy`` and their RM scores.

    Returns ``(texts, scores)``: ``texts[i]`` the n responses to ``prompts[i]``, ``scores`` (P, n).
    """
    from instructrl.rollout import generate

    if n < 1:
        raise ValueError("best_of_n: n must be >= 1")
    prompts = list(prompts)
    rep = [p for p in prompts for _ in range(n)]
    flat = generate(policy, tokenizer, rep, max_new_tokens, temperature, batch_size, seed)
    scores = rm_scores(rm, rm_tokenizer or tokenizer, rep, flat, batch_size).view(len(prompts), n)
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


def oracle_best_of_n(prompts: Sequence[str], texts: Sequence[Sequence[str]]) -> tuple[float, float]:
    """What a perfect judge could pick from the same samples (world only).

    ``texts[i]`` are the n samples for ``prompts[i]``. Returns ``(sampled, oracle)``: the mean gold
    score of all samples (plain sampling) and the mean over prompts of the best gold score among
    them (best-of-n by the gold judge itself: the ceiling any reward model's best-of-n can reach).
    """
    per_prompt = [gold_scores([p] * len(t), t) for p, t in zip(prompts, texts)]
    if not per_prompt:
        return float("nan"), float("nan")
    sampled = float(np.mean([s for g in per_prompt for s in g]))
    oracle = float(np.mean([max(g) for g in per_prompt]))
    return sampled, oracle


def ranking_accuracy_by_family(rm, tokenizer, rankings, batch_size: int = 64) -> dict[str, dict[str, float]]:
    """Pairwise accuracy of the RM and of the gold judge on labelers' rankings, per task family (world only).

    For every pair (i, j) that the labeler ranked i above j: the RM is right when it scores i higher,
    the gold judge when its gold score of i is higher; an exact tie counts half (the gold judge ties
    often: two wrong answers of the right form both score 0.35). The gold judge's accuracy is what
    a reward model that learned the judge exactly would reach on these labelers (their noise and
    tastes decide the rest), so the gap between the two says how much of the labelers' signal the
    RM missed. Length bias, over the pairs whose two responses differ in length (characters):
    ``rm_shorter`` / ``labeler_shorter`` are how often the RM scores the shorter one higher / the
    labeler ranked it higher (None without such pairs). Returns ``{family or "all": {"rm": acc,
    "gold": acc, "pairs": n, "rm_shorter": f, "labeler_shorter": f}}``.
    """
    from instructrl.world.judge import gold_score, parse_prompt

    rankings = list(rankings)
    prompts = [r.prompt for r in rankings for _ in r.responses]
    responses = [x for r in rankings for x in r.responses]
    scores = rm_scores(rm, tokenizer, prompts, responses, batch_size).tolist() if responses else []
    tally: dict[str, list[float]] = {}  # rm right, gold right, pairs, rm shorter, labeler shorter, unequal pairs
    pos = 0
    for r in rankings:
        s = scores[pos:pos + len(r.responses)]
        pos += len(r.responses)
        g = [gold_score(r.prompt, x) for x in r.responses]
        n_chars = [len(x) for x in r.responses]
        rank = r.ranks()
        fam = parse_prompt(r.prompt).family
        for w in range(len(s)):
            for l in range(len(s)):
                if rank[w] < rank[l]:
                    rm_ok = 1.0 if s[w] > s[l] else 0.5 if s[w] == s[l] else 0.0
                    gold_ok = 1.0 if g[w] > g[l] else 0.5 if g[w] == g[l] else 0.0
                    unequal = n_chars[w] != n_chars[l]
                    short, long_ = (w, l) if n_chars[w] < n_chars[l] else (l, w)
                    rm_short = 1.0 if s[short] > s[long_] else 0.5 if s[short] == s[long_] else 0.0
                    for key in (fam, "all"):
                        t = tally.setdefault(key, [0.0, 0.0, 0, 0.0, 0, 0])
                        t[0] += rm_ok
                        t[1] += gold_ok
                        t[2] += 1
                        if unequal:
                            t[3] += rm_short
                            t[4] += short == w
                            t[5] += 1
    return {k: {"rm": a / n, "gold": b / n, "pairs": n, "rm_shorter": c / u if u else None,
                "labeler_shorter": d / u if u else None}
            for k, (a, b, n, c, d, u) in sorted(tally.items())}


# ---------------------------------------------------------------------------------------------
# Everything for a set of model folders
# ---------------------------------------------------------------------------------------------


def _world_ok(prompts: Sequence[str]) -> bool:
    """True when the world's judge imports and understands these prompts."""
    try:
        from instructrl.world.judge import parse_prompt  # noqa: F401
    except Exception:
        return False
    probe = list(prompts[:20])
    ok = 0
    for p in probe:
        try:
            parse_prompt(p)
            ok += 1
        except Exception:
            pass
    return bool(probe) and ok >= 0.9 * len(probe)


def world_labelers(world_seed: int = 0, **kwargs):
    """The world's (training, held-out) simulated labelers for ``world_seed``."""
    from instructrl.world.labelers import make_labeler_pool

    return make_labeler_pool(world_seed, **kwargs)


def _pick_sample_prompts(prompts: Sequence[str], families: Sequence[str | None], k: int = 12) -> list[int]:
    """Indices of up to ``k`` prompts covering as many families as possible (deterministic)."""
    by_family: dict[str, list[int]] = {}
    for i, f in enumerate(families):
        by_family.setdefault(f or "other", []).append(i)
    order = sorted(by_family)
    # HHH families first: they show the clearest differences between models.
    order.sort(key=lambda f: (f not in ("harmful", "unanswerable"), f))
    chosen: list[int] = []
    rnd = 0
    while len(chosen) < min(k, len(prompts)):
        added = False
        for f in order:
            if rnd < len(by_family[f]) and len(chosen) < k:
                chosen.append(by_family[f][rnd])
                added = True
        if not added:
            break
        rnd += 1
    return sorted(chosen)


def _set(metrics: dict, key: str, value) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        return
    metrics[key] = value


def evaluate_models(models: dict[str, str], sft_name: str | None, eval_prompts_path, benchmarks_path=None,
                    pretrain_val_path=None, cfg=None, rm_folder=None, world_seed: int = 0,
                    pairs: Iterable[tuple[str, str]] | None = None, device: str = "auto",
                    kl_models: Iterable[str] | None = None, n_sample_prompts: int = 12,
                    progress: Callable[[str], None] | None = None,
                    heldout_rankings_path=None) -> tuple[dict, dict]:
    """Evaluate model folders; return ``(metrics, samples)``.

    ``metrics`` are the FLAT keys of metrics.json (DESIGN.md); ``samples`` is
    ``{"prompts", "families", "models": {name: [answers]}, "judge", "temperature", "meta"}``: the
    same fixed prompts (a few per family) answered by every model, for the report, with ``meta``
    holding the generation settings, which judge produced ``winrate.*`` and per-model timings.

    ``models`` maps a name (the pipeline's: base, sft, ppo, ppo_ptx, base_large) to a causal-LM
    folder. Each model answers the first ``cfg.n_prompts`` evaluation prompts once (``cfg.temperature``,
    0 = greedy); those answers feed every answer-based metric. Keys written (when their inputs exist):

    - ``winrate.<a>_vs_<b>``, ``winrate_ci95.<a>_vs_<b>`` — judged by held-out simulated labelers
      (world prompts) or else by the reward model; ``gold_winrate.*`` — by the gold judge;
    - ``gold.<m>``, ``length.<m>``, ``hhh.{refusal_harmful,idk_unanswerable,over_refusal,constraint}.<m>``;
    - ``kl.<m>``, ``kl_per_token.<m>`` — KL to ``sft_name`` (default: every model but the
      reference and the base models; override with ``kl_models``);
    - ``tax.benchmark.<m>``, ``tax.pretrain_nll.<m>``; ``rm_score.<m>`` with an RM;
    - ``bon.*`` (best-of-n of the SFT policy against the RM) when ``cfg.best_of_n > 0``; in the world
      also ``bon.gold_sampled`` / ``bon.gold_oracle`` (mean gold of all n samples / of the gold
      judge's own pick among them);
    - ``gold_family.<family>.<m>`` — mean gold score per task family (world);
    - ``rm_family.<family>.{rm,gold}`` and ``rm_family.all.{rm,gold}`` — how often the RM and the gold
      judge order a held-out labeler's pairs as the labeler did, per family, given
      ``heldout_rankings_path`` and an RM (world); ``rm_family.<family>.{rm,labeler}_shorter`` — how
      often the RM / the labeler prefers the shorter of two responses of different lengths.

    """
    from instructrl.config import EvalConfig
    from instructrl.data.readers import read_pretrain_texts, read_prompts
    from instructrl.models import load_policy, load_reward_model, pick_device
    from instructrl.rollout import generate

    cfg = cfg or EvalConfig()
    say = progress or (lambda msg: log.info(msg))
    t_start = time.time()
    dev = pick_device(device)
    recs = read_prompts(eval_prompts_path)
    if cfg.n_prompts:
        recs = recs[: cfg.n_prompts]
    prompts = [r.prompt for r in recs]
    world = _world_ok(prompts)
    families = [_family_of(r.prompt, r.meta.get("family")) if world else r.meta.get("family") for r in recs]

    items = None
    if benchmarks_path:
        items = read_benchmarks(benchmarks_path)
        if cfg.n_benchmark:
            items = items[: cfg.n_benchmark]
    texts = read_pretrain_texts(pretrain_val_path) if pretrain_val_path else None
    heldout_rankings = None  # read now: a bad line fails before any model runs
    if heldout_rankings_path:
        from instructrl.data.readers import read_rankings

        if not world:
            raise InstructRLError("--heldout-rankings: the per-family RM accuracy needs the world's prompts (the gold "
                                  "judge); these evaluation prompts are not the world's")
        if not rm_folder:
            raise InstructRLError("--heldout-rankings needs the RM folder too (--rm)")
        heldout_rankings = read_rankings(heldout_rankings_path)
        bad = [r.prompt for r in heldout_rankings if _family_of(r.prompt, None) is None]
        if bad:
            raise InstructRLError(f"{heldout_rankings_path}: {len(bad)} ranking(s) have prompts that are not the "
                                  f"world's, e.g. {bad[0]!r}")

    metrics: dict[str, Any] = {}
    meta: dict[str, Any] = {"n_prompts": len(prompts), "temperature": cfg.temperature,
                            "max_new_tokens": cfg.max_new_tokens, "world": world, "time_s": {}}
    answers: dict[str, list[str]] = {}
    answers_t1: dict[str, list[str]] = {}  # at T = 1, the paper's rollout temperature

    rm = rm_tok = None
    if rm_folder:
        rm, rm_tok = load_reward_model(rm_folder)
        rm.to(dev)

    ref = None
    if sft_name and sft_name in models:
        ref, ref_tok = load_policy(models[sft_name])
        ref.to(dev)
    if kl_models is None:
        kl_models = [m for m in models if m != sft_name and not m.startswith("base")]
    kl_models = set(kl_models)

    # One pass per model: generate once (cached), then everything that needs its weights.
    for name, folder in models.items():
        t0 = time.time()
        say(f"eval: {name} ({folder})")
        if name == sft_name and ref is not None:
            model, tok = ref, ref_tok
        else:
            model, tok = load_policy(folder)
            model.to(dev)
        answers[name] = generate(model, tok, prompts, cfg.max_new_tokens, cfg.temperature,
                                 cfg.batch_size, cfg.seed)
        if items:
            res = benchmark_scores(model, tok, items, cfg.batch_size)
            _set(metrics, f"tax.benchmark.{name}", float(np.mean([r["correct"] for r in res])))
            tasks = sorted({r["task"] for r in res})
            if len(tasks) > 1:
                for t in tasks:
                    sel = [r["correct"] for r in res if r["task"] == t]
                    _set(metrics, f"tax.benchmark_task.{t}.{name}", float(np.mean(sel)))
        if texts:
            _set(metrics, f"tax.pretrain_nll.{name}", pretrain_nll(model, tok, texts))
        if ref is not None and name in kl_models:
            kl = kl_to_reference(model, ref, tok, prompts, len(prompts), cfg.max_new_tokens, 1.0,
                                 cfg.seed, cfg.batch_size)
            _set(metrics, f"kl.{name}", kl["per_response"])
            _set(metrics, f"kl_per_token.{name}", kl["per_token"])
            answers_t1[name] = kl["texts"]  # the KL's samples are the policy's answers at T = 1
        elif world and cfg.eval_t1:
            answers_t1[name] = generate(model, tok, prompts, cfg.max_new_tokens, 1.0, cfg.batch_size, cfg.seed)
        if rm is not None:
            _set(metrics, f"rm_score.{name}", float(rm_scores(rm, rm_tok, prompts, answers[name], cfg.batch_size).mean()))
        if cfg.best_of_n and rm is not None and name == sft_name:
            bon_texts, bon_scores = best_of_n_samples(model, rm, tok, prompts, cfg.best_of_n, cfg.max_new_tokens,
                                                      1.0, cfg.batch_size, cfg.seed, rm_tok)
            answers[f"bon{cfg.best_of_n}"] = [t[j] for t, j in zip(bon_texts, bon_scores.argmax(1).tolist())]
            _set(metrics, "bon.n", int(cfg.best_of_n))
            _set(metrics, "bon.kl", best_of_n_kl(cfg.best_of_n))
            _set(metrics, "bon.rm_score", float(bon_scores.max(1).values.mean()))
            _set(metrics, "bon.rm_score_sampled", float(bon_scores.mean()))
            if world:
                sampled, oracle = oracle_best_of_n(prompts, bon_texts)
                _set(metrics, "bon.gold_sampled", sampled)
                _set(metrics, "bon.gold_oracle", oracle)
        if model is not ref:
            del model
        meta["time_s"][name] = time.time() - t0

    # Answer-based metrics.
    golds: dict[str, list[float]] = {}
    golds_t1: dict[str, list[float]] = {}
    if world:
        from instructrl.world.spec import FAMILY_CATEGORY

        for name, resp in answers_t1.items():
            golds_t1[name] = gold_scores(prompts, resp)
            _set(metrics, f"gold_t1.{name}", float(np.mean(golds_t1[name])))
        for name, resp in answers.items():
            key = "bon" if name.startswith("bon") else name
            if key == "bon":
                _set(metrics, "bon.gold", float(np.mean(gold_scores(prompts, resp))))
                continue
            details = rubric_details(prompts, resp)
            golds[name] = [d["score"] for d in details]
            _set(metrics, f"gold.{name}", float(np.mean(golds[name])))
            for fam in sorted({f for f in families if f}):
                sel = [g for g, f in zip(golds[name], families) if f == fam]
                _set(metrics, f"gold_family.{fam}.{name}", float(np.mean(sel)))
            for cat in sorted({FAMILY_CATEGORY.get(f) for f in families if f in FAMILY_CATEGORY}):
                sel = [g for g, f in zip(golds[name], families) if FAMILY_CATEGORY.get(f) == cat]
                _set(metrics, f"gold_category.{cat}.{name}", float(np.mean(sel)))
            for attr, rate in rubric_rates(details).items():
                _set(metrics, f"rubric.{attr}.{name}", rate)
            rates = hhh_rates(prompts, families, resp)
            for k in ("refusal_harmful", "idk_unanswerable", "over_refusal", "constraint"):
                _set(metrics, f"hhh.{k}.{name}", rates[k])
            _set(metrics, f"length.{name}", rates["length"])
    else:
        for name, resp in answers.items():
            if not name.startswith("bon"):
                _set(metrics, f"length.{name}", float(np.mean([len(r) for r in resp])))

    if heldout_rankings and rm is not None:
        say("eval: RM vs gold judge on held-out labelers' rankings, per family")
        for fam, acc in ranking_accuracy_by_family(rm, rm_tok, heldout_rankings, cfg.batch_size).items():
            _set(metrics, f"rm_family.{fam}.rm", acc["rm"])
            _set(metrics, f"rm_family.{fam}.gold", acc["gold"])
            if acc["rm_shorter"] is not None:
                _set(metrics, f"rm_family.{fam}.rm_shorter", acc["rm_shorter"])
                _set(metrics, f"rm_family.{fam}.labeler_shorter", acc["labeler_shorter"])

    pair_list = list(pairs) if pairs is not None else list(DEFAULT_PAIRS)
    if cfg.best_of_n and f"bon{cfg.best_of_n}" in answers and sft_name:
        pair_list.append((f"bon{cfg.best_of_n}", sft_name))
    judge_name = None
    heldout = None
    if world:
        try:
            _train, heldout = world_labelers(world_seed)
            judge_name = "heldout_labelers"
        except Exception as e:  # no labelers module: fall back to the RM
            log.warning("eval: world labelers unavailable (%s)", e)
    if judge_name is None and rm is not None:
        judge_name = "reward_model"
    meta["judge"] = judge_name
    for a, b in pair_list:
        if a not in answers or b not in answers or a == b:
            continue
        key = f"{a}_vs_{b}"
        seed = _stable_seed(cfg.seed, a, b)
        if judge_name == "heldout_labelers":
            judge = heldout_labeler_judge(heldout, seed)
        elif judge_name == "reward_model":
            judge = rm_judge(rm, rm_tok, cfg.batch_size)
        else:
            judge = None
        if judge is not None:
            wr = win_rate(prompts, answers[a], answers[b], judge, seed, cfg.bootstrap)
            _set(metrics, f"winrate.{key}", wr["winrate"])
            metrics[f"winrate_ci95.{key}"] = wr["ci95"]
        if world:
            wr = win_rate(prompts, answers[a], answers[b], gold_judge, seed, cfg.bootstrap)
            _set(metrics, f"gold_winrate.{key}", wr["winrate"])
            metrics[f"gold_winrate_ci95.{key}"] = wr["ci95"]
            if a in golds and b in golds:
                delta, ci = paired_delta(golds[a], golds[b], seed, cfg.bootstrap)
                _set(metrics, f"gold_delta.{key}", delta)
                metrics[f"gold_delta_ci95.{key}"] = ci
        if a in answers_t1 and b in answers_t1:
            if judge is not None:
                wr = win_rate(prompts, answers_t1[a], answers_t1[b], judge, seed + 1, cfg.bootstrap)
                _set(metrics, f"winrate_t1.{key}", wr["winrate"])
                metrics[f"winrate_t1_ci95.{key}"] = wr["ci95"]
            if world:
                delta, ci = paired_delta(golds_t1[a], golds_t1[b], seed + 1, cfg.bootstrap)
                _set(metrics, f"gold_delta_t1.{key}", delta)
                metrics[f"gold_delta_t1_ci95.{key}"] = ci

    idx = _pick_sample_prompts(prompts, families, n_sample_prompts)
    samples = {
        "prompts": [prompts[i] for i in idx],
        "families": [families[i] for i in idx],
        "models": {name: [resp[i] for i in idx] for name, resp in answers.items()},
        "models_t1": {name: [resp[i] for i in idx] for name, resp in answers_t1.items()},
        "judge": judge_name,
        "temperature": cfg.temperature,
        "meta": meta,
    }
    meta["time_s"]["total"] = time.time() - t_start
    return metrics, samples


def run(cfg, models: dict[str, str], out, prompts, benchmarks=None, pretrain_val=None,
        reference: str | None = None, rm: str | None = None, pairs=None, world_seed: int = 0,
        device: str = "auto", heldout_rankings: str | None = None) -> dict:
    """``instructrl eval``: evaluate ``models``; write ``out/eval.json`` (the flat metrics, returned)
    and ``out/samples.json`` (sample answers per model, the judge used, timings).

    ``reference`` is the KL reference (the SFT folder): the model whose folder it is, or else a
    new entry named ``sft`` (``reference`` if that name is taken). Returns the flat metrics.
    """
    models = dict(models)
    sft_name = None
    if reference:
        for name, folder in models.items():
            if Path(folder).resolve() == Path(reference).resolve():
                sft_name = name
                break
        if sft_name is None:
            sft_name = "sft" if "sft" not in models else "reference"
            models[sft_name] = reference
    elif "sft" in models:
        sft_name = "sft"
    metrics, samples = evaluate_models(models, sft_name, prompts, benchmarks, pretrain_val, cfg, rm_folder=rm,
                                       world_seed=world_seed, pairs=pairs, device=device,
                                       heldout_rankings_path=heldout_rankings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "samples.json").write_text(json.dumps(samples, indent=2))
    return metrics
