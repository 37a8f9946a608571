"""PPO and PPO-ptx: optimise the SFT policy against the reward model ([IG] §3.5, Eq. 2).

One visible loop, read top to bottom like CleanRL's ``ppo.py`` or torchtune's PPO recipe. Each
update: take a batch of prompts, sample one response each (a bandit episode), score it with the
frozen RM, build per-token rewards ``-β·KL_t`` plus the score on the last token, estimate
advantages with GAE from a value model initialised from the RM, then take clipped-PPO steps on
shuffled minibatches (plus ``γ·NLL`` of pretraining text for PPO-ptx, in the same backward).

Models (all fp32, dropout off, [NB]):
- policy: the SFT folder, trainable; reference: a frozen second load of the same folder;
- reward model: frozen (``models.load_reward_model``); value model: a second, trainable load of
  the RM folder (its own backbone, [ST] App. G.1), per-token values via ``models.token_scores``.

Source keys as in ``shared/PAPER_NOTES.md``. Where this departs from, or fills gaps in, [IG]:

- **Sizes.** Defaults are small (batch 64, minibatch 16) for a CPU; the paper uses batch 512,
  minibatch 64, 1 epoch, 256k episodes. ``ppo_epochs`` is configurable ([ZG]/[N+] use 4).
- **Loss scaling.** The policy, value and ptx losses are per-token means over their minibatch
  ([NB]/[N+] code); [IG] does not publish its reduction. See ``losses.ptx_loss`` for the resulting
  scale of ``ptx_coef`` (γ) and why its default is not 27.8.
- **PPO-ptx.** ``ptx_batch_size`` packed pretraining windows per minibatch (the paper uses 8×
  as many pretraining examples as episodes), their ``ptx_coef``-weighted NLL added to the PPO loss
  so one backward fills the gradient buffers with ∇PPO + γ∇NLL and one optimizer step follows —
  the same sum the paper accumulates in two consecutive backward passes.
- **Optimizers.** AdamW (β=(0.9, 0.95), ε=1e-5, no weight decay), one per model (policy ``lr``,
  value ``value_lr``), constant LR after a linear warmup from 1/10 over ``warmup_updates``
  ([IG] App. C.4). Gradient norms are clipped per model. PyTorch (not TF-style) Adam ([NB] #35).
- **Value function.** Clipped value loss with ``vf_coef`` and ``value_clip_eps`` ([ZG] code); the
  value of the state before each response token is read at the position that predicts it.
- **Whitening.** Advantages are whitened over the whole rollout batch (masked, biased variance,
  [NB]); reward whitening (scale only) is an option, off by default ([N+]).
- **Truncated responses.** A response cut off at ``max_new_tokens`` (no EOS) is scored by the RM at
  an EOS appended after its last token — the rule evaluation and SFT's RM-score selection use too
  (``models.score_token_pairs``), and where the RM was trained to read its score. The [N+] EOS
  trick is an option on top: ``eos_penalty`` replaces such a response's score by a fixed value.
- **Old log-probs** are recomputed with one full forward pass at the sampling temperature
  rather than taken from the KV-cache sampler; both agree up to float error, and this way the
  ratio is computed between two identical code paths ([NB] "divide logits by T").
- **Bad scores.** Episodes whose RM score is NaN/inf are dropped from the update (masked out)
  with a warning; a batch with no finite score is skipped. Non-finite losses or gradients skip
  the optimizer step; ``max_bad_steps`` consecutive skips stop the run (the weights are never
  touched by a bad step, so the last good state is what is saved).
- **KL stop.** The run stops (after saving) when the mean per-response KL exceeds ``max_kl``.
- **EMA** of the policy weights ([IG] App. C.4, decay 0.992) is optional and, when on, is what
  gets saved as the final policy (the checkpoint keeps both).

Output folder ``out``: a plain HF causal-LM folder (the policy) plus ``value_model/`` (a plain HF
sequence-classification folder), ``config.yaml``, ``log.csv``, ``metrics.json``, ``run.json``. The
run lifecycle (``run.py``) writes it atomically at the end (an existing output is replaced only
then, and only with ``overwrite``) and keeps the resume state every ``checkpoint_every`` updates
in ``<out>.checkpoint/`` (safetensors + JSON), removed once the output is in place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import torch

from instructrl import distributed, lora
from instructrl.config import PPOConfig, validate
from instructrl.data import render
from instructrl.data.readers import read_pretrain_texts, read_prompts
from instructrl.data.stream import random_windows, repeat_to_fit, token_stream
from instructrl.errors import ConfigError, InstructRLError, ModelFolderError
from instructrl.losses import (
    AdaptiveKLController,
    FixedKLController,
    explained_variance,
    gae,
    kl_k1,
    kl_k3,
    masked_mean,
    masked_whiten,
    per_token_rewards,
    ppo_policy_loss,
    ppo_value_loss,
    ptx_loss,
)
from instructrl.models import (
    context_length,
    load_policy,
    load_reward_model,
    n_params,
    pick_device,
    score_token_pairs,
    set_dropout,
    token_scores,
)
from instructrl.rollout import concat_samples, decode_responses, encode_prompts, forward_logprobs, sample, split_generators
from instructrl.run import Run, rng_state, set_rng_state
from instructrl.tracking import require_trackers
from instructrl.train_utils import make_optimizer, seed_everything, set_lr, warn_unknown_tokens
from instructrl.train_utils import progress as progress_bar

log = logging.getLogger(__name__)

#: A few rollouts per update, one JSON line each: update, prompt, response, score, kl, ended.
SAMPLES_FILE = "samples.jsonl"

#: Columns of log.csv, in order (one row per update).
LOG_COLUMNS = [
    "update", "episodes", "score", "score_std", "score_raw", "gold", "kl", "kl_k3", "kl_coef",
    "reward_total", "entropy", "clipfrac", "approx_kl", "ratio_max", "policy_loss", "value_loss",
    "ptx_loss", "explained_variance", "grad_norm", "value_grad_norm", "response_length",
    "eos_fraction", "bad_scores", "skipped_steps", "lr", "value_lr", "time_gen", "time_score",
    "time_train", "time_total",
]

ScoreFn = Callable[[list, list], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Data: prompts (cycled in a seeded shuffled order) and packed pretraining windows (PPO-ptx)
# ---------------------------------------------------------------------------------------------


def load_prompt_texts(path, tokenizer, max_prompt_len: int, fmt=None) -> tuple[list[str], list[list[int]]]:
    """(prompt strings, their rendered token ids) of a prompts file, rendered by `fmt`
    (instructrl.data.render; default: as written); prompts that do not fit the context are skipped
    (logged). The strings (the prompt as the file gives it, or a chat prompt's plain rendering) go to
    `score_fn` / `gold_fn` and samples.jsonl; the ids are what the policy reads."""
    prompts = read_prompts(path)
    fmt = fmt or render.legacy_format(tokenizer, None)
    keep, keep_ids, too_long, empty, seen = [], [], [], [], []
    for p in prompts:
        ids = render.prompt_ids(fmt, tokenizer, p.prompt, p.messages)
        seen.append((f"{path}:{p.line}", ids))
        n = len(ids)
        if n == 0:
            empty.append(p)
        elif n > max_prompt_len:
            too_long.append((p, n))
        else:
            keep.append(p.prompt)
            keep_ids.append(ids)
    if too_long:
        p, n = too_long[0]
        log.warning(
            "%s: %d of %d prompts are longer than %d tokens (context minus max_new_tokens) and are "
            "skipped; the first is line %s with %d tokens", path, len(too_long), len(prompts),
            max_prompt_len, p.line, n)
    if empty:
        log.warning("%s: %d empty prompts skipped (first at line %s)", path, len(empty), empty[0].line)
    warn_unknown_tokens(tokenizer, seen, "prompts")
    if not keep:
        raise InstructRLError(
            f"{path}: no usable prompt: every prompt is empty or longer than {max_prompt_len} tokens "
            f"(the model's context minus max_new_tokens); shorten the prompts or max_new_tokens")
    return keep, keep_ids


class PromptOrder:
    """Cycles through prompt indices, reshuffled each pass by (seed, pass); resumable from (epoch, pos)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.pos = n, seed, 0, 0
        self._perm = self._shuffle()

    def _shuffle(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._perm = self._shuffle()
            take = min(k - len(out), self.n - self.pos)
            out.extend(self._perm[self.pos:self.pos + take])
            self.pos += take
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._perm = self._shuffle()


def warmup_scale(update: int, warmup_updates: int) -> float:
    """LR multiplier of the update after `update` earlier ones: 0.1 at the first, rising linearly to
    1.0 at update `warmup_updates` (0-based), then 1.0 ([IG] App. C.4: "a 10-iteration warmup
    starting from 1/10 of the peak")."""
    if warmup_updates <= 0:
        return 1.0
    return 0.1 + 0.9 * min(1.0, update / warmup_updates)


def ptx_windows(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """(batch_size, seq_len + 1) windows at random offsets of the stream (inputs + shifted labels).

    A short corpus is repeated so that one window fits.
    """
    length = seq_len + 1
    return random_windows(repeat_to_fit(stream, length), batch_size, length, generator)


class WeightEMA:
    """Exponential moving average of the policy's weights ([IG] App. C.4, decay 0.992): after each
    update ``ema ← d·ema + (1 - d)·θ``, starting from the initial (SFT) weights; the EMA is what
    the run saves.

    With LoRA the average is over the *merged* weights: the shadow holds, per LoRA layer, the EMA of
    its delta B·A·scale (`lora.adapter_deltas`), because averaging A and B separately would not
    average the weights (EMA(B)·EMA(A) ≠ EMA(B·A)). The saved policy is then merged (an EMA of
    deltas is not a rank-r adapter), so `lora_merge: false` with `ema_decay > 0` is refused.
    """

    def __init__(self, model, decay: float):
        self.decay = decay
        self.lora = lora.is_peft_model(model)
        self.shadow = self._current(model)

    def _current(self, model) -> dict[str, torch.Tensor]:
        if self.lora:
            return lora.adapter_deltas(model)
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model) -> None:
        current = (self._current(model) if self.lora
                   else {n: p.detach() for n, p in model.named_parameters()})
        for n, v in current.items():
            self.shadow[n].mul_(self.decay).add_(v, alpha=1 - self.decay)

    @torch.no_grad()
    def apply_to(self, model):
        """The model to save, holding the EMA weights (a LoRA model comes back merged)."""
        if not self.lora:
            for n, p in model.named_parameters():
                p.copy_(self.shadow[n])
            return model
        current = lora.adapter_deltas(model)
        merged = model.merge_and_unload()  # base + current delta, in place
        for n, delta in self.shadow.items():
            w = merged.get_submodule(lora.merged_module_name(n)).weight
            w.add_(delta.to(w.dtype) - current[n].to(w.dtype))
        return merged

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for n, v in state.items():
            self.shadow[n].copy_(v)


# ---------------------------------------------------------------------------------------------
# One rollout batch: sample, then one no-grad forward each for old log-probs, reference,
# values and scores; then rewards and GAE
# ---------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A scored batch of episodes; per-token tensors are (B, R) over the response positions."""

    prompts: list[str]
    responses: list[str]
    input_ids: torch.Tensor  # (B, P+R) prompt (left padded) + response (right padded)
    attention_mask: torch.Tensor  # (B, P+R)
    n_prompt: int  # P
    response_mask: torch.Tensor  # (B, R) bool; rows with a non-finite score are all False
    sample_logprobs: torch.Tensor  # from the KV-cache sampler
    logprobs: torch.Tensor  # old log-probs, one full forward at temperature T
    ref_logprobs: torch.Tensor
    values: torch.Tensor  # V(state before each response token)
    scores: torch.Tensor  # (B,) used for training (EOS trick applied, bad ones 0)
    scores_raw: torch.Tensor  # (B,) as returned by the RM / score_fn
    ended: torch.Tensor  # (B,) bool
    valid: torch.Tensor  # (B,) bool: finite score
    entropy: float
    rewards: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    time_gen: float = 0.0  # seconds spent sampling
    time_score: float = 0.0  # seconds spent in the four no-grad forwards (policy, ref, value, RM)


@torch.no_grad()
def collect_rollout(policy, ref_policy, value_model, reward_model, tokenizer, prompts: list[str],
                    cfg: PPOConfig, generator: torch.Generator | None = None,
                    score_fn: ScoreFn | None = None, prompt_tokens: list[list[int]] | None = None,
                    score_side_by_side: bool = False, sample_side_by_side: bool = False) -> Rollout:
    """Steps 2-3 of an update: sample responses and evaluate them (no gradient).

    `prompt_tokens`: the prompts as the policy reads them (rendered token ids); default: `prompts`
    tokenized as written. `prompts` are what `score_fn` sees. `score_side_by_side`: score half of the
    row chunks in each of two threads of one intra-op thread (PPOConfig.side_by_side_scoring; the
    caller checks that it may: `side_by_side_allowed`). `sample_side_by_side`: sample each half of
    the rows in its own thread, from its own generator seeded by `generator`
    (PPOConfig.side_by_side_sampling: the same distribution, other draws at a fixed seed)."""
    device = next(policy.parameters()).device
    t0 = time.time()
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompt_tokens or prompts, None, device)
    s = sample_batch(policy, prompt_ids, prompt_mask, cfg, tokenizer, generator, sample_side_by_side)
    responses = decode_responses(tokenizer, s)
    t1 = time.time()
    ids, attn, P = s.input_ids, s.attention_mask, prompt_ids.shape[1]
    response_mask = s.response_mask.clone()

    # Row chunks to score: the whole batch at once, or length-sorted chunks (cfg.score_chunk).
    chunks = score_chunks(attn, P, cfg.score_chunk)
    pair_prompts, pair_responses = _prompt_and_response_tokens(s) if score_fn is None else (None, None)

    def forwards(rows, i, a, p):  # every no-grad forward of one chunk of rows (i, a: its columns)
        out = {}
        if not cfg.reuse_sample_logprobs:  # one full forward of the policy, as every update step's computes them
            out["logprobs"], out["entropy"] = forward_logprobs(policy, i, a, p, cfg.temperature, return_entropy=True)
        out["ref_logprobs"] = forward_logprobs(ref_policy, *_on(ref_policy, i, a), p, cfg.temperature).to(device)
        # Value of the state before each response token: the outputs at positions P-1 .. T-2.
        out["values"] = token_scores(value_model, i, a)[:, p - 1:-1].float()
        if score_fn is None:  # the RM reads its score at an EOS, appended where the response was cut off
            r = rows.tolist()  # (models.score_token_pairs), right padded per chunk: sorted chunks pad less
            out["scores"] = score_token_pairs(reward_model, [pair_prompts[j] for j in r],
                                              [pair_responses[j] for j in r], tokenizer.eos_token_id,
                                              tokenizer.pad_token_id, batch_size=len(r))
        return out

    full = _per_chunk(chunks, ids, attn, P, forwards, score_side_by_side)
    if cfg.reuse_sample_logprobs:  # the sampler's own log-probs are the old ones (TRL does the same)
        logprobs, token_entropy = s.logprobs, s.entropy
    else:
        logprobs, token_entropy = full["logprobs"], full["entropy"]
    entropy = masked_mean(token_entropy, response_mask).item()
    ref_logprobs, values = full["ref_logprobs"], full["values"]
    if score_fn is not None:
        scores_raw = torch.as_tensor(score_fn(prompts, responses), dtype=torch.float32, device=device).reshape(-1)
        if scores_raw.numel() != len(prompts):
            raise ValueError(f"score_fn returned {scores_raw.numel()} scores for {len(prompts)} responses")
    else:
        scores_raw = full["scores"].to(device)
    scores = scores_raw.clone()
    if cfg.eos_penalty is not None:  # the EOS trick ([N+]): no EOS, fixed low score
        scores = torch.where(s.ended, scores, torch.full_like(scores, cfg.eos_penalty))
    valid = torch.isfinite(scores)
    scores = torch.where(valid, scores, torch.zeros_like(scores))
    response_mask &= valid[:, None]
    zero = torch.zeros((), device=device)
    return Rollout(prompts, responses, ids, attn, P, response_mask,
                   torch.where(response_mask, s.logprobs, zero), torch.where(response_mask, logprobs, zero),
                   torch.where(response_mask, ref_logprobs, zero), torch.where(response_mask, values, zero),
                   scores, scores_raw, s.ended, valid, entropy, time_gen=t1 - t0, time_score=time.time() - t1)


def sample_batch(policy, prompt_ids, prompt_mask, cfg: PPOConfig, tokenizer, generator, side_by_side: bool = False):
    """Step 2's sampling: `rollout.sample` of the whole batch, or (``side_by_side``, >= 2 rows) of
    each half of its rows in its own thread of one intra-op thread, from generators drawn from
    ``generator`` (`rollout.split_generators`), put back together by `rollout.concat_samples`. A
    decode step at the world's widths is bound by per-op overhead, not arithmetic (one intra-op
    thread decodes faster than two: benchmarks/README.md), so two half batches at once use both cores."""
    args = (cfg.max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.temperature)
    B = prompt_ids.shape[0]
    if not side_by_side or B < 2:
        return sample(policy, prompt_ids, prompt_mask, *args, generator)
    h = (B + 1) // 2
    gens = split_generators(generator, 2)

    def half(rows, g):
        with torch.no_grad():  # grad mode is per thread
            return sample(policy, prompt_ids[rows], prompt_mask[rows], *args, g)

    parts = run_side_by_side(lambda: half(slice(0, h), gens[0]), lambda: half(slice(h, B), gens[1]))
    return concat_samples(parts, tokenizer.pad_token_id)


def score_chunks(attention_mask: torch.Tensor, n_prompt: int, chunk: int) -> list[tuple[torch.Tensor, int, int]]:
    """How to score a rollout (B, T) whose prompts are left padded to ``n_prompt`` columns:
    ``[(rows, first, r)]``, each chunk's row indices, its first column that is real in some row and
    its response length (columns after ``n_prompt`` up to the last real one), so that the chunk is
    ``input_ids[rows, first:n_prompt + r]``. ``chunk`` = 0: one chunk of every row and every column
    (the batch as it is); else rows sorted by their real length, ``chunk`` at a time, so each chunk
    holds rows of like length and drops the columns that are padding in all of them."""
    B, T = attention_mask.shape
    if chunk <= 0:
        return [(torch.arange(B, device=attention_mask.device), 0, T - n_prompt)]
    real = attention_mask.bool()
    order = torch.argsort(real.sum(1), stable=True)
    out = []
    for i in range(0, B, chunk):
        rows = order[i:i + chunk]
        cols = real[rows].any(0)
        first, r = kept_columns(cols[:n_prompt], cols[n_prompt:])
        out.append((rows, first, r))
    return out


def kept_columns(prompt_real: torch.Tensor, response_real: torch.Tensor) -> tuple[int, int]:
    """The columns a set of rows needs, from which of its P prompt columns (``prompt_real`` (P,))
    and R response columns (``response_real`` (R,)) hold a real token in some row: ``(first, r)``,
    so that ``[first, P + r)`` is kept. ``first`` is the first real prompt column, at most P - 1
    (its logits predict the first response token); ``r`` is one past the last real response
    column, at least 1. Shared by :func:`score_chunks` and :func:`trim_padding`."""
    P = prompt_real.shape[0]
    first = int(prompt_real.int().argmax()) if bool(prompt_real.any()) else P
    r = int(response_real.nonzero().max()) + 1 if bool(response_real.any()) else 1
    return min(first, P - 1), r


def _per_chunk(chunks, ids, attn, P: int, fn, side_by_side: bool = False) -> dict[str, torch.Tensor]:
    """``fn(rows, input_ids, attention_mask, n_prompt)`` -> {name: tensor (b, r) over the response
    columns of the chunk, or (b,) per row} for each chunk (:func:`score_chunks`), put back together
    as (B, R) / (B,) tensors; positions beyond a chunk's ``r`` (padding in all its rows) are 0. One
    chunk of the whole batch calls ``fn`` on it as it is. ``side_by_side``: the even chunks in one
    thread and the odd ones in another (`run_side_by_side`); one whole-batch chunk is split into two
    halves of its rows, every column kept."""
    B, R = ids.shape[0], ids.shape[1] - P
    whole = len(chunks) == 1 and chunks[0][1] == 0 and chunks[0][2] == R
    rows = torch.arange(B, device=ids.device)  # a whole chunk's rows may be in length order: use the batch's
    if whole and not side_by_side:
        return fn(rows, ids, attn, P)
    if whole and B >= 2:
        chunks = [(rows[:(B + 1) // 2], 0, R), (rows[(B + 1) // 2:], 0, R)]

    def run(part):
        with torch.no_grad():  # grad mode is per thread: a new one starts with it on
            return [fn(rows, ids[rows, first:P + r], attn[rows, first:P + r], P - first) for rows, first, r in part]

    if side_by_side and len(chunks) >= 2:
        even, odd = run_side_by_side(lambda: run(chunks[0::2]), lambda: run(chunks[1::2]))
        parts = [None] * len(chunks)
        parts[0::2], parts[1::2] = even, odd
    else:
        parts = run(chunks)
    full: dict[str, torch.Tensor] = {}
    for (rows, _, r), out in zip(chunks, parts):
        for k, t in out.items():
            if k not in full:
                full[k] = torch.zeros((B, R) if t.dim() == 2 else (B,), dtype=t.dtype, device=t.device)
            if t.dim() == 2:
                full[k][rows.to(t.device), :r] = t
            else:
                full[k][rows.to(t.device)] = t
    return full


def side_by_side_allowed(dist, device, *models) -> bool:
    """Whether a `run_side_by_side` switch may act: a single-process CPU run with >= 2 intra-op
    threads, and (for scoring) no model that is a LoRA view of another (lora.ReferenceView: its
    forward switches the shared model's adapter off, which a forward in the other thread would see)."""
    return (dist.acc is None and torch.device(device).type == "cpu" and torch.get_num_threads() >= 2
            and not any(getattr(m, "adapter_view_of", None) is not None for m in models))


def _prompt_and_response_tokens(s) -> tuple[list[list[int]], list[list[int]]]:
    """Each row's real prompt tokens and its response tokens without the EOS (if it emitted one)."""
    prompts = [ids[m].tolist() for ids, m in zip(s.prompt_ids, s.prompt_mask)]
    responses = [ids[m].tolist()[:-1] if ended else ids[m].tolist()
                 for ids, m, ended in zip(s.response_ids, s.response_mask, s.ended.tolist())]
    return prompts, responses


def _on(model, *tensors):
    """`tensors` moved to `model`'s device (the frozen models may live on the CPU: offload_frozen)."""
    dev = next(model.parameters()).device
    return tuple(t.to(dev) for t in tensors)


def compute_advantages(ro: Rollout, cfg: PPOConfig, kl_coef: float) -> Rollout:
    """Step 4: per-token rewards (-β·KL_t, score on the last token), GAE, advantage whitening."""
    mask = ro.response_mask
    ro.rewards, ro.kl = per_token_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, mask, kl_coef, cfg.kl_estimator)
    rewards = masked_whiten(ro.rewards, mask, shift_mean=False) if cfg.whiten_rewards else ro.rewards
    advantages, ro.returns = gae(rewards, ro.values, mask, cfg.gamma, cfg.lam)
    ro.advantages = masked_whiten(advantages, mask, shift_mean=True)
    return ro


# ---------------------------------------------------------------------------------------------
# The loss of one minibatch (kept a plain function so that it can be tested on its own)
# ---------------------------------------------------------------------------------------------


def policy_minibatch_loss(policy, mb: dict, cfg: PPOConfig, ptx_ids: torch.Tensor | None = None,
                          weight: float = 1.0, ptx_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """The policy's part of a minibatch loss: PPO's clipped loss (+ ptx_coef · pretraining NLL for
    PPO-ptx). ``mb`` holds (b, ·) slices of a rollout (see :func:`minibatch_loss`); ``ptx_ids``
    (n, L+1) are pretraining windows. ``weight`` / ``ptx_weight`` scale the two per-token means
    (a part of a minibatch: its share of the minibatch's response / pretraining tokens, so that the
    parts' losses sum to the whole's); the logged stats are unscaled."""
    ids, attn, P, mask = mb["input_ids"], mb["attention_mask"], mb["n_prompt"], mb["response_mask"]
    logprobs = forward_logprobs(policy, ids, attn, P, cfg.temperature)
    policy_loss, pstats = ppo_policy_loss(logprobs, mb["logprobs"], mb["advantages"], mask, cfg.clip_eps)
    stats = {"policy_loss": policy_loss.detach(), **pstats}
    loss = weight * policy_loss
    if ptx_ids is not None and cfg.ptx_coef > 0:
        logits = policy(input_ids=ptx_ids[:, :-1]).logits
        nll = ptx_loss(logits, ptx_ids[:, 1:], torch.ones_like(ptx_ids[:, 1:], dtype=torch.bool))
        loss = loss + cfg.ptx_coef * ptx_weight * nll
        stats["ptx_loss"] = nll.detach()
    return loss, stats


def value_minibatch_loss(value_model, mb: dict, cfg: PPOConfig, weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """The value model's part of a minibatch loss: vf_coef · clipped value loss (· ``weight``, as in
    :func:`policy_minibatch_loss`)."""
    ids, attn, P, mask = mb["input_ids"], mb["attention_mask"], mb["n_prompt"], mb["response_mask"]
    values = token_scores(value_model, ids, attn)[:, P - 1:-1].float()
    value_loss, vstats = ppo_value_loss(values, mb["values"], mb["returns"], mask, cfg.value_clip_eps)
    return cfg.vf_coef * weight * value_loss, {"value_loss": value_loss.detach(), **vstats}


def minibatch_loss(policy, value_model, mb: dict, cfg: PPOConfig,
                   ptx_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """PPO clipped loss + vf_coef · value loss (+ ptx_coef · pretraining NLL for PPO-ptx).

    ``mb`` holds (b, ·) slices of a rollout: input_ids, attention_mask, n_prompt, response_mask,
    logprobs (old), values (old), advantages, returns. ``ptx_ids`` (n, L+1) are pretraining
    windows. The policy and value model have disjoint parameters, so one backward of the sum gives
    each its own gradient; the policy's is ∇PPO + ptx_coef·∇NLL (tested). The training loop
    (:func:`ppo_epochs`) takes the two parts' backward passes one after the other — the same
    gradients, bit for bit (tested) — so that only one model's activations are held at a time.
    """
    lp, stats = policy_minibatch_loss(policy, mb, cfg, ptx_ids)
    lv, vstats = value_minibatch_loss(value_model, mb, cfg)
    return lp + lv, {**stats, **vstats}


def slice_minibatch(ro: Rollout, idx: torch.Tensor) -> dict:
    return {"input_ids": ro.input_ids[idx], "attention_mask": ro.attention_mask[idx], "n_prompt": ro.n_prompt,
            "response_mask": ro.response_mask[idx], "logprobs": ro.logprobs[idx], "values": ro.values[idx],
            "advantages": ro.advantages[idx], "returns": ro.returns[idx]}


PER_TOKEN_KEYS = ("response_mask", "logprobs", "values", "advantages", "returns")


def trim_padding(mb: dict) -> dict:
    """The minibatch without the columns that are padding in every row: leading prompt columns (the
    prompts are left padded to the longest of the whole batch) and response columns after the last
    token that counts. Same losses (no kept position attends to a dropped one, and masked ones add
    nothing); the gradients differ by float rounding only (tested), so it is a switch
    (`PPOConfig.trim_padding`)."""
    P = mb["n_prompt"]
    first, r = kept_columns(mb["attention_mask"].bool()[:, :P].any(0), mb["response_mask"].any(0))
    out = dict(mb, input_ids=mb["input_ids"][:, first:P + r], attention_mask=mb["attention_mask"][:, first:P + r],
               n_prompt=P - first)
    out.update({k: mb[k][:, :r] for k in PER_TOKEN_KEYS})
    return out


# ---------------------------------------------------------------------------------------------
# Setup pieces
# ---------------------------------------------------------------------------------------------


def check_config(cfg: PPOConfig, ptx_data) -> None:
    """Every rule PPO's settings must meet, before any model loads (field domains: config.validate)."""
    validate(cfg)
    if cfg.ptx_coef > 0 and not ptx_data:
        raise ConfigError("ptx_coef > 0 (PPO-ptx) needs pretraining data (ptx_data / --ptx-data)")


def load_models(cfg: PPOConfig, policy: str, reward: str, score_fn, device, frozen_dtype=torch.float32) -> SimpleNamespace:
    """The four models: trainable policy, frozen reference, frozen RM, trainable value model (a
    second load of the RM: its own backbone, [ST] App. G.1). All fp32, dropout off, eval mode.
    With LoRA the reference is the policy with its adapter disabled and the frozen RM is the value
    model with its adapter disabled (lora.ReferenceView): no second copy of either. The frozen
    reference and RM are held in `frozen_dtype` (bf16 / fp16 under that mixed precision: half the memory)."""
    policy_model, tok = load_policy(policy)
    use_lora = lora.enabled(cfg)
    ref_model = None if use_lora else load_policy(policy, dtype=frozen_dtype)[0]
    value_model, rm_tok = load_reward_model(reward)
    if rm_tok.get_vocab() != tok.get_vocab():
        raise ModelFolderError(
            f"{reward}: the reward model's tokenizer differs from the policy's ({policy}); the RM and "
            f"the value model must read the policy's tokens (train the RM from the SFT folder)")
    rm_model = None if score_fn is not None or use_lora else load_reward_model(reward, dtype=frozen_dtype)[0]
    use_cache = [policy_model.config.use_cache, value_model.config.use_cache]  # restored before saving
    for m in (policy_model, ref_model, value_model, rm_model):
        if m is None:
            continue
        set_dropout(m, 0.0)
        m.eval()  # dropout is 0 anyway; eval() keeps every forward identical
        m.config.use_cache = False  # full-sequence forwards need no KV cache (sample() asks for one)
        m.to("cpu" if cfg.offload_frozen and m in (ref_model, rm_model) else device)
    for m in (ref_model, rm_model):
        if m is not None:
            m.requires_grad_(False)
    # Gradient checkpointing and LoRA adapters (if configured) on the two trainable models.
    policy_model = lora.prepare(policy_model, cfg, policy)
    value_model = lora.prepare(value_model, cfg, reward, task="SEQ_CLS")
    if use_lora:
        ref_model = lora.ReferenceView(policy_model)
        rm_model = lora.ReferenceView(value_model) if score_fn is None else None
    return SimpleNamespace(policy=policy_model, ref=ref_model, value=value_model, rm=rm_model, tok=tok,
                           use_cache=use_cache)


def load_data(cfg: PPOConfig, policy_model, tok, prompts: str, ptx_data, fmt=None) -> SimpleNamespace:
    """The prompts that fit the context (minus max_new_tokens), as texts and rendered by `fmt`
    (instructrl.data.render) and, for PPO-ptx, the pretraining token stream (windows of at most the context)."""
    n_ctx = context_length(policy_model)
    max_prompt_len = (n_ctx - cfg.max_new_tokens) if n_ctx else 10**9
    if max_prompt_len <= 0:
        raise ConfigError(f"max_new_tokens ({cfg.max_new_tokens}) leaves no room for a prompt in the context ({n_ctx})")
    texts, ids = load_prompt_texts(prompts, tok, max_prompt_len, fmt)
    d = SimpleNamespace(prompts=texts, prompt_ids=ids, ptx_stream=None, ptx_len=cfg.ptx_seq_len)
    if cfg.ptx_coef > 0:
        d.ptx_stream = token_stream(tok, read_pretrain_texts(ptx_data))
        if n_ctx and d.ptx_len > n_ctx:
            log.warning("ptx_seq_len %d exceeds the context %d; using %d", d.ptx_len, n_ctx, n_ctx)
            d.ptx_len = n_ctx
    return d


def rollout_stats(ro: Rollout) -> dict:
    """What a rollout batch logs before training: RM score, response length, EOS share, entropy."""
    finite = torch.isfinite(ro.scores_raw)
    valid = ro.valid
    lengths = ro.response_mask.sum(1).float()
    return {"entropy": ro.entropy, "bad_scores": int((~valid).sum()),
            "score_raw": ro.scores_raw[finite].mean().item() if finite.any() else float("nan"),
            "response_length": lengths[valid].mean().item() if valid.any() else float("nan"),
            "eos_fraction": ro.ended.float().mean().item()}


def advantage_stats(ro: Rollout) -> dict:
    """KL to the reference per response (k1, the penalty's; k3, a check), score, total reward and
    how well the value function explains the returns, over the valid episodes."""
    mask, valid = ro.response_mask, ro.valid
    k1 = kl_k1(ro.logprobs, ro.ref_logprobs).masked_fill(~mask, 0).sum(1)
    k3 = kl_k3(ro.logprobs, ro.ref_logprobs).masked_fill(~mask, 0).sum(1)
    return {"score": ro.scores[valid].mean().item(),
            "score_std": ro.scores[valid].std().item() if int(valid.sum()) > 1 else 0.0,
            "kl": k1[valid].mean().item(), "kl_k3": k3[valid].mean().item(),
            "reward_total": ro.rewards.sum(1)[valid].mean().item(),
            "explained_variance": explained_variance(ro.values, ro.returns, mask).item()}


def ppo_epochs(ro: Rollout, models, train_policy, train_value, opts, cfg: PPOConfig, d, gens, guard, update: int,
               dist, device) -> tuple[dict, int]:
    """Step 5: `ppo_epochs` passes over shuffled minibatches of the rollout, each the backward of
    the clipped PPO loss (+ ptx_coef · pretraining NLL), then of vf_coef · value loss, and one step
    of each optimizer. A non-finite loss or gradient skips the step (the weights stay the last good ones).
    Returns (the mean of each logged statistic, skipped steps)."""
    opt_policy, opt_value = opts
    policy_params, value_params = list(models.policy.parameters()), list(models.value.parameters())
    side_by_side = cfg.side_by_side_backward and side_by_side_allowed(dist, device)
    acc: dict[str, list] = {}
    skipped = 0
    if cfg.gradient_checkpointing:  # it acts only in train mode (dropout is 0: same numbers)
        models.policy.train()
        models.value.train()
    for _epoch in range(cfg.ppo_epochs):
        perm = torch.randperm(cfg.batch_size, generator=gens["minibatch"])
        for j in range(cfg.batch_size // cfg.minibatch_size):
            mb = slice_minibatch(ro, perm[j * cfg.minibatch_size:(j + 1) * cfg.minibatch_size].to(device))
            if not mb["response_mask"].any():
                continue  # only dropped episodes in this minibatch
            ptx_ids = (ptx_windows(d.ptx_stream, cfg.ptx_batch_size, d.ptx_len, gens["ptx"]).to(device)
                       if d.ptx_stream is not None else None)
            halves = split_minibatch(mb, ptx_ids) if side_by_side else None
            if cfg.trim_padding:
                mb = trim_padding(mb)
                halves = halves and [(trim_padding(h), *rest) for h, *rest in halves]
            # The policy's loss and backward, then the value model's: the same gradients as one
            # backward of their sum (minibatch_loss), with one model's activations held at a time.
            opt_policy.zero_grad(set_to_none=True)
            opt_value.zero_grad(set_to_none=True)
            if halves:  # each half of the rows' backward at once, one intra-op thread each
                parts = run_side_by_side(*(lambda h=h: _half_backward(train_policy, train_value, cfg, dist, *h)
                                           for h in halves))
                loss, stats = sum(p[0] for p in parts), merge_half_stats(parts, halves)
                finite = bool(torch.isfinite(loss))
            else:
                loss, stats = policy_minibatch_loss(train_policy, mb, cfg, ptx_ids)
                finite = bool(torch.isfinite(loss))
                if finite:
                    dist.backward(loss)
                    loss, vstats = value_minibatch_loss(train_value, mb, cfg)
                    stats.update(vstats)
                    finite = bool(torch.isfinite(loss))
                if finite:
                    dist.backward(loss)
            if finite:
                gn = dist.clip_grad_norm_(policy_params, cfg.max_grad_norm)
                gv = dist.clip_grad_norm_(value_params, cfg.max_grad_norm)
                finite = bool(torch.isfinite(gn)) and bool(torch.isfinite(gv))
            if not finite:  # never step on NaN/inf
                what = "loss" if not torch.isfinite(loss) else f"gradient norm (policy {gn.item()}, value {gv.item()})"
                guard.bad(update, f"non-finite {what}; optimizer step skipped")
                skipped += 1
                if guard.exhausted:
                    break
                continue
            opt_policy.step()
            opt_value.step()
            guard.good()
            stats["grad_norm"], stats["value_grad_norm"] = gn, gv
            for k, v in stats.items():
                acc.setdefault(k, []).append(float(v))
        if guard.exhausted:
            break
    models.policy.eval()
    models.value.eval()
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    return {"policy_loss": mean.get("policy_loss"), "value_loss": mean.get("value_loss"),
            "clipfrac": mean.get("clipfrac"), "approx_kl": mean.get("approx_kl"),
            "ratio_max": max(acc["ratio_max"]) if "ratio_max" in acc else None, "ptx_loss": mean.get("ptx_loss"),
            "grad_norm": mean.get("grad_norm"), "value_grad_norm": mean.get("value_grad_norm")}, skipped


def split_minibatch(mb: dict, ptx_ids: torch.Tensor | None) -> list[tuple[dict, torch.Tensor | None, float, float]] | None:
    """``side_by_side_backward``: the minibatch's rows (and its pretraining windows) in two
    halves, each with its share of the minibatch's response tokens and of its windows:
    ``[(mb_half, ptx_half, weight, ptx_weight)]``. The per-token means of the halves, scaled by
    those shares, sum to the whole minibatch's means, so the two backwards sum to its gradient.
    None for a minibatch of one row (nothing to halve)."""
    b = mb["input_ids"].shape[0]
    if b < 2:
        return None
    n = mb["response_mask"].sum().clamp(min=1).item()
    h = (b + 1) // 2
    out = []
    for rows in (slice(0, h), slice(h, b)):
        half = {k: (v[rows] if isinstance(v, torch.Tensor) else v) for k, v in mb.items()}
        ptx, pw = None, 1.0
        if ptx_ids is not None:
            m = ptx_ids.shape[0]
            pr = slice(0, (m + 1) // 2) if rows.start == 0 else slice((m + 1) // 2, m)
            ptx, pw = (ptx_ids[pr] if pr.stop > pr.start else None), (pr.stop - pr.start) / m
        out.append((half, ptx, half["response_mask"].sum().item() / n, pw))
    return out


def _half_backward(policy, value_model, cfg: PPOConfig, dist, mb: dict, ptx_ids, weight: float, ptx_weight: float):
    """One half of a minibatch (:func:`split_minibatch`): the policy's and the value model's scaled
    losses and their backwards. Returns (scaled loss sum, policy stats, value stats)."""
    loss, stats = policy_minibatch_loss(policy, mb, cfg, ptx_ids, weight, ptx_weight)
    if not bool(torch.isfinite(loss)):
        return loss, stats, {}
    dist.backward(loss)
    vloss, vstats = value_minibatch_loss(value_model, mb, cfg, weight)
    if bool(torch.isfinite(vloss)):
        dist.backward(vloss)
    return loss.detach() + vloss.detach(), stats, vstats


def merge_half_stats(parts, halves) -> dict:
    """The minibatch's logged stats from its halves': token-weighted means (pretraining-window
    weighted for ptx_loss), the max of ratio_max."""
    out = {}
    for (_, stats, vstats), (_, _, w, pw) in zip(parts, halves):
        for k, v in {**stats, **vstats}.items():
            if k == "ratio_max":
                out[k] = v if k not in out else torch.maximum(out[k], v)
            else:
                out[k] = out.get(k, 0.0) + (pw if k == "ptx_loss" else w) * v
    return out


def run_side_by_side(*fns):
    """Call each of `fns` in its own thread with one intra-op thread, wait for all and return their
    results in order (the first exception is raised). At the widths of the embedded world two
    intra-op threads on 2 cores buy little, while two independent computations side by side use
    both cores (benchmarks/bench_concurrency.py: 1.26x for a policy + value backward)."""
    import threading

    n = torch.get_num_threads()
    out: list = [None] * len(fns)
    errors: list = []

    def work(i, fn):
        try:
            torch.set_num_threads(1)
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.set_num_threads(n)
    if errors:
        raise errors[0]
    return out


def make_trainers(cfg: PPOConfig, m, d, dist, device) -> SimpleNamespace:
    """What the loop trains with: one AdamW per model (policy ``lr``, value ``value_lr``; β=(0.9,
    0.95), ε=1e-5, no weight decay), their DDP/FSDP views (the plain models sample, score and are
    saved), the KL controller, the RNGs (sampling seeded per process), the prompt order, the EMA,
    and the counters a checkpoint restores."""
    opt_policy = make_optimizer(m.policy, cfg.lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5, fused=cfg.fused_adamw)
    opt_value = make_optimizer(m.value, cfg.value_lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5, fused=cfg.fused_adamw)
    train_policy, opt_policy = dist.prepare(m.policy, opt_policy)
    train_value, opt_value = dist.prepare_scorer(m.value, opt_value)
    return SimpleNamespace(
        opt_policy=opt_policy, opt_value=opt_value, train_policy=train_policy, train_value=train_value,
        kl_ctl=(AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
                else FixedKLController(cfg.kl_coef)),
        gens={"sample": torch.Generator(device=device).manual_seed(cfg.seed + dist.rank * distributed.RANK_SEED_STRIDE),
              "minibatch": torch.Generator().manual_seed(cfg.seed + 1),
              "ptx": torch.Generator().manual_seed(cfg.seed + 2)},
        order=PromptOrder(len(d.prompts), cfg.seed),
        ema=WeightEMA(m.policy, cfg.ema_decay) if cfg.ema_decay > 0 else None,
        update=0, episodes=0, elapsed=0.0, last_row={}, samples=[])


def checkpoint_state(m, t, guard, log_rows) -> dict:
    """Everything a resumed run needs to continue bit for bit (run.py stores it without pickle)."""
    return {"policy": m.policy.state_dict(), "value_model": m.value.state_dict(),
            "opt_policy": t.opt_policy.state_dict(), "opt_value": t.opt_value.state_dict(),
            "kl_ctl": t.kl_ctl.state_dict(), "prompt_order": t.order.state_dict(),
            "ema": t.ema.state_dict() if t.ema else None, "rng": rng_state(),
            "generators": {k: g.get_state() for k, g in t.gens.items()}, "update": t.update, "episodes": t.episodes,
            "bad_streak": guard.streak, "elapsed": t.elapsed, "last_row": t.last_row, "log": log_rows,
            "samples": t.samples}


def restore(st: dict, m, t, guard) -> None:
    """Put a checkpoint's state back into the models, optimizers, controller, RNGs and counters."""
    m.policy.load_state_dict(st["policy"])
    m.value.load_state_dict(st["value_model"])
    t.opt_policy.load_state_dict(st["opt_policy"])
    t.opt_value.load_state_dict(st["opt_value"])
    t.kl_ctl.load_state_dict(st["kl_ctl"])
    t.order.load_state_dict(st["prompt_order"])
    if t.ema is not None:
        t.ema.load_state_dict(st["ema"])
    set_rng_state(st["rng"])
    for k, g in t.gens.items():
        g.set_state(st["generators"][k])
    t.update, t.episodes, t.elapsed, t.last_row = st["update"], st["episodes"], st["elapsed"], st["last_row"]
    t.samples = list(st.get("samples", []))
    guard.streak = st["bad_streak"]


def stop_reason(guard, row: dict, cfg: PPOConfig) -> str | None:
    """Why the run stops after this update, if it does: too many bad steps, or a KL explosion."""
    if guard.exhausted:
        return (f"stopped at update {row['update']}: {guard.streak} consecutive steps or batches with "
                f"non-finite scores, losses or gradients; the last good weights are saved")
    if row.get("kl") is not None and row["kl"] > cfg.max_kl:
        return (f"stopped at update {row['update']}: mean KL per response {row['kl']:.2f} nats exceeds "
                f"max_kl {cfg.max_kl}; the policy so far is saved")
    return None


def final_metrics(t, stopped, time_s: float, params: int) -> dict:
    """metrics.json: the last update's logged numbers, with the run's counters (NaN/inf as null)."""
    metrics = {k: v for k, v in t.last_row.items() if v is None or isinstance(v, (int, float))}
    metrics.update({"updates": t.update, "episodes": t.episodes, "stopped": stopped, "time_s": time_s,
                    "params": params})
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def mean_gold(gold_fn, ro: Rollout):
    """The judge's mean score of the batch (evaluation only, never trained on); None if it fails."""
    try:
        return sum(float(gold_fn(p, r)) for p, r in zip(ro.prompts, ro.responses)) / len(ro.prompts)
    except Exception as e:  # noqa: BLE001 - a failing judge disables the column, not the run
        log.warning("gold_fn failed (%s: %s); the gold column is left empty from now on", type(e).__name__, e)
        return None


def sample_rows(ro: Rollout, update: int, n: int) -> list[str]:
    """The first `n` episodes of an update as samples.jsonl lines (RM score; KL to the reference, nats)."""
    kl = (ro.logprobs - ro.ref_logprobs).masked_fill(~ro.response_mask, 0).sum(1)
    return [json.dumps({"update": update, "prompt": ro.prompts[i], "response": ro.responses[i],
                        "score": _finite_or_none(ro.scores_raw[i]), "kl": _finite_or_none(kl[i]),
                        "ended": bool(ro.ended[i])}, ensure_ascii=False) for i in range(min(n, len(ro.prompts)))]


def _finite_or_none(t) -> float | None:
    v = float(t)
    return round(v, 6) if math.isfinite(v) else None


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def train_ppo(cfg: PPOConfig, policy: str, reward: str, prompts: str, out: str, ptx_data: str | None = None,
              gold_fn: Callable[[str, str], float] | None = None, overwrite: bool = False, resume: bool | str = False,
              score_fn: ScoreFn | None = None, progress: bool | None = None) -> dict:
    """Train PPO (``cfg.ptx_coef == 0``) or PPO-ptx from an SFT folder against a reward model.

    Args:
        policy: SFT model folder (initial policy and KL reference).
        reward: reward-model folder (the RM, and the value model's initialisation).
        prompts: prompts JSONL. ptx_data: pretraining text (needed when ``cfg.ptx_coef > 0``).
        gold_fn: ``gold_fn(prompt, response) -> float``, logged as ``gold``, never trained on.
        score_fn: ``score_fn(prompts, responses) -> (B,) tensor`` used instead of the RM (tests,
            or a programmatic reward); the RM folder then only initialises the value model.
        resume: continue from ``<out>.checkpoint/`` (models, optimizers, KL controller, EMA, RNGs,
            prompt position); "auto" when a checkpoint of this very run exists. progress: tqdm bar
            (None: only on a terminal).
    Returns the final metrics (also written to ``out/metrics.json``).
    """
    t_start = time.time()
    # 0. Check the config, the inputs and the output folder before any model loads. Distributed
    #    (accelerate launch / torchrun): only rank 0 writes the real output folder.
    check_config(cfg, ptx_data)
    dist = distributed.setup(cfg.mixed_precision)
    require_trackers(cfg.report_to if dist.is_main else [])  # a missing wandb/mlflow: before `out` is touched
    inputs = {"policy": policy, "reward": reward, "prompts": prompts, "ptx_data": ptx_data if cfg.ptx_coef > 0 else None}
    values = {"score_fn": getattr(score_fn, "__qualname__", None)} if score_fn is not None else None
    run = Run.start("ppo", cfg, out, inputs, overwrite, resume, values=values, dist=dist,
                    max_bad_steps=cfg.max_bad_steps, stop_on_bad_steps=False)
    with run:
        seed_everything(cfg.seed)
        device = dist.device(pick_device("auto"))
        n_updates = cfg.total_episodes // cfg.batch_size

        # 1. Models, prompts, pretraining text (PPO-ptx). The frozen models in the precision asked for.
        frozen_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            getattr(dist.acc, "mixed_precision", None) if dist.acc is not None else None, torch.float32)
        if cfg.reuse_sample_logprobs and frozen_dtype != torch.float32:
            # Under autocast the sampler's KV-cache decode and the training forward round differently
            # (~1e-2 in a log-prob), which would put noise into the step-0 ratio: recompute instead.
            log.info("PPO: mixed precision, so the old log-probs are recomputed by a forward "
                     "(reuse_sample_logprobs applies in fp32 only)")
            cfg = run.cfg = dataclasses.replace(cfg, reuse_sample_logprobs=False)
        m = load_models(cfg, policy, reward, score_fn, device, frozen_dtype)
        # How prompts read to the policy: as SFT rendered them (its prompt_format.json); a run asked to
        # render otherwise, or a reward model trained on other renderings, is an error.
        fmt = render.resolve(m.tok, cfg.prompt_format, cfg.plain_template, policy, [prompts, ptx_data])
        render.check_matches(fmt, policy, "the policy (SFT model)")
        render.check_matches(fmt, reward, "the reward model")
        cfg = run.cfg = dataclasses.replace(cfg, prompt_format=fmt.kind, plain_template=fmt.plain_template)
        d = load_data(cfg, m.policy, m.tok, prompts, ptx_data, fmt)
        first = read_prompts(prompts)[0]
        render.announce("ppo", fmt, m.tok, first)
        for sub in ("", "value_model"):
            render.write_record(run.staging / sub, fmt, m.tok, first)

        # 2. Optimizers, KL controller, RNGs, prompt order, EMA; resume from a checkpoint of this run.
        t = make_trainers(cfg, m, d, dist, device)
        score_side_by_side = cfg.side_by_side_scoring and side_by_side_allowed(dist, device, m.ref, m.rm)
        sample_side_by_side = cfg.side_by_side_sampling and side_by_side_allowed(dist, device)
        for name, asked, acts in (("side_by_side_scoring", cfg.side_by_side_scoring, score_side_by_side),
                                  ("side_by_side_sampling", cfg.side_by_side_sampling, sample_side_by_side),
                                  ("side_by_side_backward", cfg.side_by_side_backward,
                                   side_by_side_allowed(dist, device))):
            if asked and not acts:  # said, not silently dropped
                log.info("PPO: %s is ignored here (it needs a single-process CPU run with >= 2 threads%s)",
                         name, ", without LoRA" if name == "side_by_side_scoring" else "")
        st = run.resume_state()
        if st is not None:
            restore(st, m, t, run.guard)
        # log.csv, plus TensorBoard/wandb/MLflow as cfg.report_to asks (rank 0 only); a resumed run
        # logs its rows so far again, so both hold exactly the rows of an uninterrupted run.
        logger = run.logger(LOG_COLUMNS, step_field="update", rows=st["log"] if st else ())
        log.info("PPO%s: policy %.2fM params, %d prompts, %d updates of %d episodes on %s",
                 "-ptx" if cfg.ptx_coef > 0 else "", n_params(m.policy) / 1e6, len(d.prompts),
                 n_updates, cfg.batch_size, device)
        stopped = None
        bar = progress_bar(n_updates, "ppo-ptx" if cfg.ptx_coef > 0 else "ppo", unit="update",
                           disable=None if progress is None else not progress)
        bar.update(t.update)
        elapsed0 = t.elapsed
        # A few rollouts of every update: samples.jsonl (a resumed run's so far first).
        samples_fh = open(run.staging / SAMPLES_FILE, "w", encoding="utf-8")
        samples_fh.writelines(line + "\n" for line in t.samples)
        samples_fh.flush()
        warmup = round(cfg.warmup_fraction * n_updates) if cfg.warmup_fraction > 0 else cfg.warmup_updates
        while t.update < n_updates:
            t0 = time.time()
            # Warmup: 0.1·lr at the first update, rising linearly to lr at update `warmup` (warmup_updates,
            # or warmup_fraction of the run's updates) ([IG] App. C.4).
            lr_scale = warmup_scale(t.update, warmup)
            set_lr(t.opt_policy, cfg.lr * lr_scale)
            set_lr(t.opt_value, cfg.value_lr * lr_scale)

            # 1. A batch of prompts (a seeded shuffled pass over the file, cycled).
            #    Distributed: batch_size prompts per process, each its own share of the global batch.
            batch_idx = dist.shard(t.order.next(cfg.batch_size * dist.world_size))[0]
            batch_prompts = [d.prompts[i] for i in batch_idx]

            # 2-3. Rollout and evaluation (no grad): sample, then old log-probs, reference, values, RM scores.
            ro = collect_rollout(m.policy, m.ref, m.value, m.rm, m.tok, batch_prompts, cfg, t.gens["sample"], score_fn,
                                 [d.prompt_ids[i] for i in batch_idx], score_side_by_side=score_side_by_side,
                                 sample_side_by_side=sample_side_by_side)
            t.episodes += cfg.batch_size
            t.update += 1
            row = {"update": t.update, "episodes": t.episodes, "kl_coef": t.kl_ctl.value, "lr": cfg.lr * lr_scale,
                   "value_lr": cfg.value_lr * lr_scale, **rollout_stats(ro)}
            if row["bad_scores"]:
                log.warning("update %d: %d of %d reward scores are NaN/inf; those episodes are dropped",
                            t.update, row["bad_scores"], cfg.batch_size)
            row["gold"] = mean_gold(gold_fn, ro) if gold_fn is not None else None
            gold_fn = gold_fn if row["gold"] is not None else None  # a failing judge: the column stays empty
            t_train = time.time()
            skipped = 0
            if not ro.valid.any():  # a whole batch without a finite score: nothing to learn from
                run.guard.bad(t.update, "every reward score is NaN/inf; the update is skipped")
                skipped = 1
            else:
                # 4. Rewards (-β·KL per token, score on the last token), GAE, whitened advantages.
                ro = compute_advantages(ro, cfg, t.kl_ctl.value)
                row.update(advantage_stats(ro))

                # 5. PPO epochs over shuffled minibatches; PPO-ptx adds γ·NLL into the same backward.
                stats, skipped = ppo_epochs(ro, m, t.train_policy, t.train_value, (t.opt_policy, t.opt_value), cfg, d,
                                            t.gens, run.guard, t.update, dist, device)
                row.update(stats)

                # 6. KL controller (a no-op for the paper's fixed β) with the batch's mean KL per response;
                #    n_steps is the global batch: every process's episodes count ([ZG]'s horizon is in episodes).
                t.kl_ctl.update(dist.mean(row["kl"]), cfg.batch_size * dist.world_size)  # the same β on every process

                # 7. EMA of the policy weights (the saved model when ema_decay > 0).
                if t.ema is not None and stats["policy_loss"] is not None:
                    t.ema.update(m.policy)

            # 8. Log the update (CSV, trackers such as TensorBoard, progress bar): means over processes.
            now = time.time()
            row.update(skipped_steps=skipped, time_gen=ro.time_gen, time_score=ro.time_score,
                       time_train=now - t_train, time_total=now - t0)
            t.last_row = row = dist.mean_dict(row)
            logger.log(**row)
            if dist.is_main and cfg.samples_per_update > 0:  # what the policy says as it trains
                lines = sample_rows(ro, t.update, cfg.samples_per_update)
                t.samples.extend(lines)
                samples_fh.writelines(line + "\n" for line in lines)
                samples_fh.flush()
            bar.update(1)
            bar.set_postfix(lr=f"{row['lr']:.2e}", score=_fmt(row.get("score")), kl=_fmt(row.get("kl")),
                            tok_s=_fmt(float(ro.response_mask.sum()) / max(now - t0, 1e-9)))

            # 9. Checkpoint (after a good update); stop on too many bad steps or a KL explosion.
            t.elapsed = elapsed0 + time.time() - t_start
            run.checkpoint(t.update, n_updates, run.guard.streak == 0, lambda: checkpoint_state(m, t, run.guard, logger.rows))
            stopped = stop_reason(run.guard, row, cfg)
            if stopped:
                break
        bar.close()
        samples_fh.close()

        # 10. Save: the policy (EMA weights if enabled) as a plain HF folder at `out`, the value model
        #     in `out/value_model/`, with config, log, samples and metrics, in one atomic swap; the KV
        #     cache (off for the full-sequence forwards) back on for whoever generates with them.
        for model, cached in zip((m.policy, m.value), m.use_cache):
            lora.unwrap(model).config.use_cache = cached
        policy_model = t.ema.apply_to(m.policy) if t.ema is not None else m.policy
        metrics = final_metrics(t, stopped, elapsed0 + time.time() - t_start, n_params(policy_model))
        run.finish(metrics, [("", policy_model, m.tok), ("value_model", m.value, m.tok)], merge=cfg.lora_merge)
    if stopped:
        log.warning("%s (saved to %s)", stopped, run.out)
    log.info("PPO done: %s", {k: metrics.get(k) for k in ("score", "kl", "gold", "time_s")})
    return metrics
