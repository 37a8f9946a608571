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
  the optimizer step; five consecutive skips stop the run (the weights are never touched by a
  bad step, so the last good state is what is saved).
- **KL stop.** The run stops (after saving) when the mean per-response KL exceeds ``max_kl``.
- **EMA** of the policy weights ([IG] App. C.4, decay 0.992) is optional and, when on, is what
  gets saved as the final policy (the checkpoint keeps both).

Output folder ``out``: a plain HF causal-LM folder (the policy) plus ``value_model/`` (a plain HF
sequence-classification folder), ``config.yaml``, ``log.csv``, ``metrics.json`` and, for resume,
``checkpoint/state.pt``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from instructrl import distributed, lora
from instructrl.config import PPOConfig, save_config, to_dict
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
    _fsync_tree,
    load_policy,
    load_reward_model,
    n_params,
    pick_device,
    replace_dir,
    score_token_pairs,
    set_dropout,
    token_scores,
)
from instructrl.rollout import decode_responses, encode_prompts, forward_logprobs, sample
from instructrl.tracking import require_trackers
from instructrl.train_utils import (
    RUN_FILE,
    MetricsLogger,
    guard_run_dir,
    make_optimizer,
    progress as progress_bar,
    run_fingerprint,
    save_checkpoint,
    seed_everything,
    set_lr,
    stage_trackers,
    write_json,
)

log = logging.getLogger(__name__)

#: Columns of log.csv, in order (one row per update).
LOG_COLUMNS = [
    "update", "episodes", "score", "score_std", "score_raw", "gold", "kl", "kl_k3", "kl_coef",
    "reward_total", "entropy", "clipfrac", "approx_kl", "ratio_max", "policy_loss", "value_loss",
    "ptx_loss", "explained_variance", "grad_norm", "value_grad_norm", "response_length",
    "eos_fraction", "bad_scores", "skipped_steps", "lr", "value_lr", "time_gen", "time_score",
    "time_train", "time_total",
]

#: Stop after this many consecutive skipped steps / batches (non-finite loss, grad or scores).
MAX_CONSECUTIVE_BAD = 5
#: A few rollouts per update, one JSON line each: update, prompt, response, score, kl, ended.
SAMPLES_FILE = "samples.jsonl"

ScoreFn = Callable[[list, list], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Data: prompts (cycled in a seeded shuffled order) and packed pretraining windows (PPO-ptx)
# ---------------------------------------------------------------------------------------------


def load_prompt_texts(path, tokenizer, max_prompt_len: int, fmt=None) -> tuple[list[str], list[list[int]]]:
    """(prompt strings, their rendered token ids) of a prompts file, rendered by `fmt`
    (instructrl.data.render; default: as written); prompts that do not fit the context are skipped (logged).
    The strings (the prompt as the file gives it, or a chat prompt's plain rendering) go to
    `score_fn` / `gold_fn` and samples.jsonl; the ids are what the policy reads."""
    prompts = read_prompts(path)
    fmt = fmt or render.legacy_format(tokenizer, None)
    keep, keep_ids, too_long, empty = [], [], [], []
    for p in prompts:
        ids = render.prompt_ids(fmt, tokenizer, p.prompt, p.messages)
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
                    score_fn: ScoreFn | None = None, prompt_tokens: list[list[int]] | None = None) -> Rollout:
    """Steps 2-3 of an update: sample responses and evaluate them (no gradient).

    `prompt_tokens`: the prompts as the policy reads them (rendered token ids); default: `prompts`
    tokenized as written. `prompts` are what `score_fn` sees."""
    device = next(policy.parameters()).device
    t0 = time.time()
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompt_tokens or prompts, None, device)
    s = sample(policy, prompt_ids, prompt_mask, cfg.max_new_tokens, tokenizer.eos_token_id,
               tokenizer.pad_token_id, cfg.temperature, generator)
    responses = decode_responses(tokenizer, s)
    t1 = time.time()
    ids, attn, P = s.input_ids, s.attention_mask, prompt_ids.shape[1]
    response_mask = s.response_mask.clone()

    logprobs, token_entropy = forward_logprobs(policy, ids, attn, P, cfg.temperature, return_entropy=True)
    entropy = masked_mean(token_entropy, response_mask).item()
    ref_logprobs = forward_logprobs(ref_policy, *_on(ref_policy, ids, attn), P, cfg.temperature).to(device)
    # Value of the state before each response token: the outputs at positions P-1 .. T-2.
    values = token_scores(value_model, ids, attn)[:, P - 1:-1].float()
    if score_fn is not None:
        scores_raw = torch.as_tensor(score_fn(prompts, responses), dtype=torch.float32, device=device).reshape(-1)
        if scores_raw.numel() != len(prompts):
            raise ValueError(f"score_fn returned {scores_raw.numel()} scores for {len(prompts)} responses")
    else:  # the RM reads its score at an EOS, appended where the response was cut off (models.score_token_pairs)
        scores_raw = score_token_pairs(reward_model, *_prompt_and_response_tokens(s), tokenizer.eos_token_id,
                                       tokenizer.pad_token_id, batch_size=len(prompts)).to(device)
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


def policy_minibatch_loss(policy, mb: dict, cfg: PPOConfig,
                          ptx_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The policy's part of a minibatch loss: PPO's clipped loss (+ ptx_coef · pretraining NLL for
    PPO-ptx). ``mb`` holds (b, ·) slices of a rollout (see :func:`minibatch_loss`); ``ptx_ids``
    (n, L+1) are pretraining windows."""
    ids, attn, P, mask = mb["input_ids"], mb["attention_mask"], mb["n_prompt"], mb["response_mask"]
    logprobs = forward_logprobs(policy, ids, attn, P, cfg.temperature)
    policy_loss, pstats = ppo_policy_loss(logprobs, mb["logprobs"], mb["advantages"], mask, cfg.clip_eps)
    stats = {"policy_loss": policy_loss.detach(), **pstats}
    loss = policy_loss
    if ptx_ids is not None and cfg.ptx_coef > 0:
        logits = policy(input_ids=ptx_ids[:, :-1]).logits
        nll = ptx_loss(logits, ptx_ids[:, 1:], torch.ones_like(ptx_ids[:, 1:], dtype=torch.bool))
        loss = loss + cfg.ptx_coef * nll
        stats["ptx_loss"] = nll.detach()
    return loss, stats


def value_minibatch_loss(value_model, mb: dict, cfg: PPOConfig) -> tuple[torch.Tensor, dict]:
    """The value model's part of a minibatch loss: vf_coef · clipped value loss."""
    ids, attn, P, mask = mb["input_ids"], mb["attention_mask"], mb["n_prompt"], mb["response_mask"]
    values = token_scores(value_model, ids, attn)[:, P - 1:-1].float()
    value_loss, vstats = ppo_value_loss(values, mb["values"], mb["returns"], mask, cfg.value_clip_eps)
    return cfg.vf_coef * value_loss, {"value_loss": value_loss.detach(), **vstats}


def minibatch_loss(policy, value_model, mb: dict, cfg: PPOConfig,
                   ptx_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """PPO clipped loss + vf_coef · value loss (+ ptx_coef · pretraining NLL for PPO-ptx).

    ``mb`` holds (b, ·) slices of a rollout: input_ids, attention_mask, n_prompt, response_mask,
    logprobs (old), values (old), advantages, returns. ``ptx_ids`` (n, L+1) are pretraining
    windows. The policy and value model have disjoint parameters, so one backward of the sum gives
    each its own gradient; the policy's is ∇PPO + ptx_coef·∇NLL (tested). The training loop
    takes the two parts' backward passes one after the other (the same gradients), so that only
    one model's activations are held at a time.
    """
    lp, stats = policy_minibatch_loss(policy, mb, cfg, ptx_ids)
    lv, vstats = value_minibatch_loss(value_model, mb, cfg)
    return lp + lv, {**stats, **vstats}


def write_samples(fh, ro: Rollout, update: int, n: int) -> None:
    """The first `n` episodes of an update as JSON lines (RM score, KL to the reference in nats)."""
    kl = (ro.logprobs - ro.ref_logprobs).masked_fill(~ro.response_mask, 0).sum(1)
    for i in range(min(n, len(ro.prompts))):
        fh.write(json.dumps({"update": update, "prompt": ro.prompts[i], "response": ro.responses[i],
                             "score": _finite(ro.scores_raw[i]), "kl": _finite(kl[i]), "ended": bool(ro.ended[i])},
                            ensure_ascii=False) + "\n")
    fh.flush()


def _finite(t) -> float | None:
    v = float(t)
    return round(v, 6) if math.isfinite(v) else None


def _slice(ro: Rollout, idx: torch.Tensor) -> dict:
    return {"input_ids": ro.input_ids[idx], "attention_mask": ro.attention_mask[idx], "n_prompt": ro.n_prompt,
            "response_mask": ro.response_mask[idx], "logprobs": ro.logprobs[idx], "values": ro.values[idx],
            "advantages": ro.advantages[idx], "returns": ro.returns[idx]}


# ---------------------------------------------------------------------------------------------
# Output folder, checkpoints
# ---------------------------------------------------------------------------------------------


def _prepare_out(out: Path, model_dirs: list[Path], fingerprint: str, overwrite: bool, resume: bool) -> None:
    """Refuse an output folder that holds something else (train_utils.guard_run_dir) and never write
    into an input model folder. Nothing is removed here: `_clear_out` empties `out` only once every
    input has been read and checked, so a bad input never costs an existing output."""
    out_r = out.resolve()
    for p in model_dirs:
        p = p.resolve()
        if out_r == p or out_r in p.parents:
            raise InstructRLError(f"output folder {out} would overwrite the input model folder {p}")
    if resume:
        if not (out / "checkpoint" / "state.pt").exists():
            raise InstructRLError(f"nothing to resume: {out / 'checkpoint' / 'state.pt'} does not exist")
        return
    guard_run_dir(out, "ppo", fingerprint, overwrite)


def _clear_out(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _can_resume(out: Path, fingerprint: str) -> bool:
    """For resume="auto" (the pipeline): a checkpoint of this very run exists in `out`."""
    try:
        info = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (out / "checkpoint" / "state.pt").exists() and info.get("fingerprint") == fingerprint


def _rng_state(gens: dict) -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            **{k: g.get_state() for k, g in gens.items()}}


def _save_checkpoint(path: Path, state: dict) -> None:
    save_checkpoint(path, state)  # temp file, fsync, rename: a kill -9 leaves the previous one whole


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run(cfg: PPOConfig, policy: str, reward: str, prompts: str, out: str, ptx_data: str | None = None,
        gold_fn: Callable[[str, str], float] | None = None, overwrite: bool = False, resume: bool = False,
        score_fn: ScoreFn | None = None, progress: bool | None = None) -> dict:
    """Train PPO (``cfg.ptx_coef == 0``) or PPO-ptx from an SFT folder against a reward model.

    Args:
        policy: SFT model folder (initial policy and KL reference).
        reward: reward-model folder (the RM, and the value model's initialisation).
        prompts: prompts JSONL. ptx_data: pretraining text (needed when ``cfg.ptx_coef > 0``).
        gold_fn: ``gold_fn(prompt, response) -> float``, logged as ``gold``, never trained on.
        score_fn: ``score_fn(prompts, responses) -> (B,) tensor`` used instead of the RM (tests,
            or a programmatic reward); the RM folder then only initialises the value model.
        resume: continue from ``out/checkpoint/state.pt`` (models, optimizers, KL controller,
            RNGs, prompt position). progress: tqdm bar (None: only on a terminal).
    Returns the final metrics (also written to ``out/metrics.json``).
    """
    t_start = time.time()
    # accelerate launch / torchrun: DDP, FSDP or DeepSpeed through Accelerate; otherwise a no-op.
    # Only rank 0 writes the real output folder; the others write into a private temporary one.
    dist = distributed.setup(cfg.mixed_precision)
    out = Path(dist.private_out(str(out)))
    if cfg.temperature <= 0:
        raise ConfigError("ppo temperature must be > 0 (PPO samples from the policy)")
    if cfg.ptx_coef > 0 and not ptx_data:
        raise ConfigError("ptx_coef > 0 (PPO-ptx) needs pretraining data (ptx_data / --ptx-data)")
    n_updates = cfg.total_episodes // cfg.batch_size
    if n_updates < 1:
        raise ConfigError(f"total_episodes ({cfg.total_episodes}) is smaller than one batch ({cfg.batch_size})")
    inputs = {"policy": policy, "reward": reward, "prompts": prompts, "ptx_data": ptx_data if cfg.ptx_coef > 0 else None,
              "score_fn": getattr(score_fn, "__qualname__", None) if score_fn is not None else None}
    fingerprint = run_fingerprint("ppo", cfg, inputs)
    require_trackers(cfg.report_to if dist.is_main else [])  # a missing wandb/mlflow: before `out` is touched
    if resume == "auto":
        resume = _can_resume(out, fingerprint)
    _prepare_out(out, [Path(policy), Path(reward)], fingerprint, overwrite, resume)
    seed_everything(cfg.seed)
    device = dist.device(pick_device("auto"))

    # 1. Models: trainable policy, frozen reference, frozen RM, trainable value model (from the RM).
    policy_model, tok = load_policy(policy)
    # With LoRA the reference is the policy with its adapter disabled and the frozen RM is the value
    # model with its adapter disabled (lora.ReferenceView): no second copy of either.
    use_lora = lora.enabled(cfg)
    # The frozen reference and RM are only ever run forward: in the precision asked for (bf16 / fp16
    # mixed precision), they are held in it too, which halves their memory.
    frozen_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
        getattr(dist.acc, "mixed_precision", None) if dist.acc is not None else None, torch.float32)
    ref_model = None if use_lora else load_policy(policy, dtype=frozen_dtype)[0]
    value_model, rm_tok = load_reward_model(reward)
    if rm_tok.get_vocab() != tok.get_vocab():
        raise ModelFolderError(
            f"{reward}: the reward model's tokenizer differs from the policy's ({policy}); the RM and "
            f"the value model must read the policy's tokens (train the RM from the SFT folder)")
    rm_model = None if score_fn is not None or use_lora else load_reward_model(reward, dtype=frozen_dtype)[0]
    # How prompts read to the policy: as SFT rendered them (its prompt_format.json); a run asked to
    # render otherwise, or a reward model trained on other renderings, is an error.
    fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, policy, [prompts, ptx_data])
    render.check_matches(fmt, policy, "the policy (SFT model)")
    render.check_matches(fmt, reward, "the reward model")
    cfg = dataclasses.replace(cfg, prompt_format=fmt.kind, plain_template=fmt.plain_template)
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
    n_ctx = getattr(policy_model.config, "n_positions", None) or getattr(policy_model.config, "max_position_embeddings", None)
    max_prompt_len = (n_ctx - cfg.max_new_tokens) if n_ctx else 10**9
    if max_prompt_len <= 0:
        raise ConfigError(f"max_new_tokens ({cfg.max_new_tokens}) leaves no room for a prompt in the context ({n_ctx})")
    prompt_texts, prompt_tokens = load_prompt_texts(prompts, tok, max_prompt_len, fmt)
    render.announce("ppo", fmt, tok, read_prompts(prompts)[0])

    ptx_stream, ptx_len = None, cfg.ptx_seq_len
    if cfg.ptx_coef > 0:
        ptx_stream = token_stream(tok, read_pretrain_texts(ptx_data))
        if n_ctx and ptx_len > n_ctx:
            log.warning("ptx_seq_len %d exceeds the context %d; using %d", ptx_len, n_ctx, n_ctx)
            ptx_len = n_ctx

    if not resume:  # every input is read and checked: only now replace what `out` held
        _clear_out(out)
    opt_policy = make_optimizer(policy_model, cfg.lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5)
    opt_value = make_optimizer(value_model, cfg.value_lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5)
    # The DDP/FSDP views train; the plain models sample, score and are saved.
    train_policy, opt_policy = dist.prepare(policy_model, opt_policy)
    train_value, opt_value = dist.prepare_scorer(value_model, opt_value)
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.kl_coef))
    gens = {"sample": torch.Generator(device=device).manual_seed(cfg.seed + dist.rank * distributed.RANK_SEED_STRIDE),
            "minibatch": torch.Generator().manual_seed(cfg.seed + 1),
            "ptx": torch.Generator().manual_seed(cfg.seed + 2)}
    order = PromptOrder(len(prompt_texts), cfg.seed)
    ema = WeightEMA(policy_model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    update, episodes, bad_streak, elapsed0 = 0, 0, 0, 0.0
    last_row: dict = {}

    # Resume: the full training state of the last checkpoint; log rows after it are dropped.
    ckpt_dir = out / "checkpoint"
    log_path = out / "log.csv"
    samples_path = out / SAMPLES_FILE
    if resume:
        st = torch.load(ckpt_dir / "state.pt", weights_only=False)
        policy_model.load_state_dict(st["policy"])
        value_model.load_state_dict(st["value_model"])
        opt_policy.load_state_dict(st["opt_policy"])
        opt_value.load_state_dict(st["opt_value"])
        kl_ctl.load_state_dict(st["kl_ctl"])
        order.load_state_dict(st["prompt_order"])
        if ema is not None and st.get("ema") is not None:
            ema.load_state_dict(st["ema"])
        torch.set_rng_state(st["rng"]["torch"])
        random.setstate(st["rng"]["python"])
        for k, g in gens.items():
            g.set_state(st["rng"][k])
        update, episodes, bad_streak, elapsed0 = st["update"], st["episodes"], st["bad_streak"], st["elapsed"]
        last_row = st.get("last_row", {})
        changed = sorted(k for k, v in to_dict(cfg).items() if st["cfg"].get(k) != v)
        if changed:
            log.warning("resuming with a changed config: %s", ", ".join(changed))
        kept = []
        if log_path.exists():  # rows logged after the checkpoint are redone
            with open(log_path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["update"]) <= update]
        kept_samples = []
        if samples_path.exists():  # so are their samples
            kept_samples = [line for line in samples_path.read_text(encoding="utf-8").splitlines()
                            if line.strip() and json.loads(line)["update"] <= update]
        log.info("resumed from %s at update %d (%d episodes)", ckpt_dir, update, episodes)
    else:
        kept, kept_samples = [], []
    # log.csv, plus TensorBoard/wandb/MLflow as cfg.report_to asks (rank 0 only). On resume the kept
    # rows are logged again into a fresh tensorboard/, which then holds exactly the rows of log.csv.
    shutil.rmtree(out / "tensorboard", ignore_errors=True)
    logger = MetricsLogger(log_path, LOG_COLUMNS, tracker=stage_trackers(cfg, out, "ppo", dist.is_main, out),
                           step_field="update")
    for r in kept:
        logger.log(**r)
    samples_fh = open(samples_path, "w", encoding="utf-8")
    samples_fh.writelines(line + "\n" for line in kept_samples)
    samples_fh.flush()
    save_config(cfg, out)
    run_info = {"stage": "ppo", "fingerprint": fingerprint, "inputs": {k: v for k, v in inputs.items()}}
    write_json(out / RUN_FILE, run_info)

    def checkpoint_state() -> dict:
        return {"policy": policy_model.state_dict(), "value_model": value_model.state_dict(),
                "opt_policy": opt_policy.state_dict(), "opt_value": opt_value.state_dict(),
                "kl_ctl": kl_ctl.state_dict(), "prompt_order": order.state_dict(), "ema": ema.state_dict() if ema else None,
                "rng": _rng_state(gens), "update": update, "episodes": episodes, "bad_streak": bad_streak,
                "elapsed": elapsed0 + time.time() - t_start, "cfg": to_dict(cfg), "last_row": last_row}

    log.info("PPO%s: policy %.2fM params, %d prompts, %d updates of %d episodes on %s",
             "-ptx" if cfg.ptx_coef > 0 else "", n_params(policy_model) / 1e6, len(prompt_texts),
             n_updates, cfg.batch_size, device)
    stopped = None
    bar = progress_bar(n_updates, "ppo-ptx" if cfg.ptx_coef > 0 else "ppo", unit="update",
                       disable=None if progress is None else not progress)
    bar.update(update)
    policy_params = list(policy_model.parameters())
    value_params = list(value_model.parameters())
    warmup = round(cfg.warmup_fraction * n_updates) if cfg.warmup_fraction > 0 else cfg.warmup_updates
    while update < n_updates:
        t0 = time.time()
        # Warmup: linear from lr/10 at the first update to lr at update `warmup` (0-based `update`
        # before this one; warmup_updates, or warmup_fraction of the run), then constant ([IG] App. C.4).
        lr_scale = warmup_scale(update, warmup)
        set_lr(opt_policy, cfg.lr * lr_scale)
        set_lr(opt_value, cfg.value_lr * lr_scale)

        # 1. A batch of prompts (a seeded shuffled pass over the file, cycled).
        #    Distributed: batch_size prompts per process, each its own share of the global batch.
        batch_idx = dist.shard(order.next(cfg.batch_size * dist.world_size))[0]
        batch_prompts = [prompt_texts[i] for i in batch_idx]

        # 2-3. Rollout and evaluation (no grad): old log-probs, reference, values, scores.
        ro = collect_rollout(policy_model, ref_model, value_model, rm_model, tok, batch_prompts, cfg,
                             gens["sample"], score_fn, [prompt_tokens[i] for i in batch_idx])
        n_bad = int((~ro.valid).sum())
        episodes += cfg.batch_size
        update += 1
        if n_bad:
            log.warning("update %d: %d of %d reward scores are NaN/inf; those episodes are dropped",
                        update, n_bad, cfg.batch_size)
        gold = None
        if gold_fn is not None:  # evaluation only: a failing judge disables the column, not the run
            try:
                gold = sum(float(gold_fn(p, r)) for p, r in zip(ro.prompts, ro.responses)) / len(ro.prompts)
            except Exception as e:
                log.warning("gold_fn failed (%s: %s); the gold column is left empty from now on", type(e).__name__, e)
                gold_fn = None

        valid = ro.valid
        row = {"update": update, "episodes": episodes, "bad_scores": n_bad, "gold": gold,
               "kl_coef": kl_ctl.value, "lr": cfg.lr * lr_scale, "value_lr": cfg.value_lr * lr_scale,
               "entropy": ro.entropy, "score_raw": ro.scores_raw[torch.isfinite(ro.scores_raw)].mean().item()
               if torch.isfinite(ro.scores_raw).any() else float("nan")}
        lengths = ro.response_mask.sum(1).float()
        row["response_length"] = lengths[valid].mean().item() if valid.any() else float("nan")
        row["eos_fraction"] = ro.ended.float().mean().item()
        t_train = time.time()
        skipped = 0
        if not valid.any():
            # A whole batch without a finite score: nothing to learn from.
            log.warning("update %d: every reward score is NaN/inf; the update is skipped", update)
            bad_streak += 1
            skipped = 1
        else:
            # 4. Rewards (-β·KL per token, score on the last token), GAE, whitened advantages.
            ro = compute_advantages(ro, cfg, kl_ctl.value)
            mask = ro.response_mask
            k1 = kl_k1(ro.logprobs, ro.ref_logprobs).masked_fill(~mask, 0).sum(1)
            k3 = kl_k3(ro.logprobs, ro.ref_logprobs).masked_fill(~mask, 0).sum(1)
            kl_mean = k1[valid].mean().item()
            row.update(score=ro.scores[valid].mean().item(),
                       score_std=ro.scores[valid].std().item() if int(valid.sum()) > 1 else 0.0,
                       kl=kl_mean, kl_k3=k3[valid].mean().item(),
                       reward_total=ro.rewards.sum(1)[valid].mean().item(),
                       explained_variance=explained_variance(ro.values, ro.returns, mask).item())

            # 5. PPO epochs over shuffled minibatches; PPO-ptx adds γ·NLL into the same backward.
            acc: dict[str, list] = {}
            n_mb = cfg.batch_size // cfg.minibatch_size
            if cfg.gradient_checkpointing:  # it acts only in train mode (dropout is 0: same numbers)
                policy_model.train()
                value_model.train()
            for _epoch in range(cfg.ppo_epochs):
                perm = torch.randperm(cfg.batch_size, generator=gens["minibatch"])
                for j in range(n_mb):
                    idx = perm[j * cfg.minibatch_size:(j + 1) * cfg.minibatch_size].to(device)
                    mb = _slice(ro, idx)
                    if not mb["response_mask"].any():
                        continue  # only dropped episodes in this minibatch
                    ptx_ids = (ptx_windows(ptx_stream, cfg.ptx_batch_size, ptx_len, gens["ptx"]).to(device)
                               if ptx_stream is not None else None)
                    # The policy's loss and backward, then the value model's: the same gradients as one
                    # backward of their sum (minibatch_loss), with one model's activations held at a time.
                    opt_policy.zero_grad(set_to_none=True)
                    opt_value.zero_grad(set_to_none=True)
                    loss, stats = policy_minibatch_loss(train_policy, mb, cfg, ptx_ids)
                    finite = bool(torch.isfinite(loss))
                    if finite:
                        dist.backward(loss)
                        loss, vstats = value_minibatch_loss(train_value, mb, cfg)
                        stats.update(vstats)
                        finite = bool(torch.isfinite(loss))
                    if finite:
                        dist.backward(loss)
                        gn = dist.clip_grad_norm_(policy_params, cfg.max_grad_norm)
                        gv = dist.clip_grad_norm_(value_params, cfg.max_grad_norm)
                        finite = bool(torch.isfinite(gn)) and bool(torch.isfinite(gv))
                    if not finite:  # never step on NaN/inf: the weights stay the last good ones
                        what = "loss" if not torch.isfinite(loss) else f"gradient norm (policy {gn.item()}, value {gv.item()})"
                        log.warning("update %d: non-finite %s; optimizer step skipped", update, what)
                        skipped += 1
                        bad_streak += 1
                        if bad_streak >= MAX_CONSECUTIVE_BAD:
                            break
                        continue
                    opt_policy.step()
                    opt_value.step()
                    bad_streak = 0
                    stats["grad_norm"], stats["value_grad_norm"] = gn, gv
                    for k, v in stats.items():
                        acc.setdefault(k, []).append(float(v))
                if bad_streak >= MAX_CONSECUTIVE_BAD:
                    break
            policy_model.eval()
            value_model.eval()
            mean = {k: sum(v) / len(v) for k, v in acc.items()}
            row.update(policy_loss=mean.get("policy_loss"), value_loss=mean.get("value_loss"),
                       clipfrac=mean.get("clipfrac"), approx_kl=mean.get("approx_kl"),
                       ratio_max=max(acc["ratio_max"]) if "ratio_max" in acc else None,
                       ptx_loss=mean.get("ptx_loss"), grad_norm=mean.get("grad_norm"),
                       value_grad_norm=mean.get("value_grad_norm"))

            # 6. KL controller (a no-op for the paper's fixed β) with the batch's mean KL per response.
            #    n_steps is the global batch: every process's episodes count ([ZG]'s horizon is in episodes).
            kl_ctl.update(dist.mean(kl_mean), cfg.batch_size * dist.world_size)  # the same beta on every process

            # 7. EMA of the policy weights (the saved model when ema_decay > 0).
            if ema is not None and acc:
                ema.update(policy_model)

        # 8. Log the update (CSV, trackers such as TensorBoard, progress bar), and a few of its
        #    rollouts to samples.jsonl: what the policy says as it trains.
        now = time.time()
        row.update(skipped_steps=skipped, time_gen=ro.time_gen, time_score=ro.time_score,
                   time_train=now - t_train, time_total=now - t0)
        row = dist.mean_dict(row)  # every logged number is the mean over processes
        logger.log(**row)  # and to the trackers (tags ppo/<column>, at this update)
        last_row = row
        if dist.is_main and cfg.samples_per_update > 0:
            write_samples(samples_fh, ro, update, cfg.samples_per_update)
        bar.update(1)
        bar.set_postfix(lr=f"{row['lr']:.2e}", score=_fmt(row.get("score")), kl=_fmt(row.get("kl")),
                        tok_s=_fmt(float(ro.response_mask.sum()) / max(now - t0, 1e-9)))

        if cfg.save_every and (update % cfg.save_every == 0 or update == n_updates) and bad_streak == 0:
            _save_checkpoint(ckpt_dir, checkpoint_state())
        if bad_streak >= MAX_CONSECUTIVE_BAD:
            stopped = (f"stopped at update {update}: {bad_streak} consecutive steps or batches with non-finite "
                       f"scores, losses or gradients; the last good weights are saved")
            break
        if row.get("kl") is not None and row["kl"] > cfg.max_kl:
            stopped = (f"stopped at update {update}: mean KL per response {row['kl']:.2f} nats exceeds "
                       f"max_kl {cfg.max_kl}; the policy so far is saved")
            break
    bar.close()
    logger.close()
    samples_fh.close()

    # 9. Save: the policy (EMA weights if enabled) as a plain HF folder at `out`, the value model
    # in `out/value_model/`, with config, log, metrics and the resume checkpoint, in one rename.
    if ema is not None:
        policy_model = ema.apply_to(policy_model)
    metrics = {k: v for k, v in last_row.items() if v is None or isinstance(v, (int, float))}
    metrics.update({"updates": update, "episodes": episodes, "stopped": stopped,
                    "time_s": elapsed0 + time.time() - t_start, "params": n_params(policy_model)})
    metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    stage = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    for m, cached in zip((policy_model, value_model), use_cache):  # saved for generation: the KV cache back on
        lora.unwrap(m).config.use_cache = cached
    record = {render.RECORD_FILE: fmt.record(tok, prompt_texts[0] if fmt.raw else read_prompts(prompts)[0])}
    lora.save(policy_model, tok, stage, cfg.lora_merge, extra=record)
    lora.save(value_model, tok, stage / "value_model", cfg.lora_merge, extra=record)
    save_config(cfg, stage)
    write_json(stage / "metrics.json", metrics)
    write_json(stage / RUN_FILE, run_info)
    shutil.copy2(log_path, stage / "log.csv")
    shutil.copy2(samples_path, stage / SAMPLES_FILE)
    for name in ("checkpoint", "tensorboard", "wandb", "mlruns"):
        if (out / name).exists():  # hard links (a copy where links fail): `out` stays resumable until the swap
            shutil.copytree(out / name, stage / name, symlinks=True, copy_function=_link_or_copy)
    _fsync_tree(stage)
    replace_dir(stage, out)
    if stopped:
        log.warning("%s (saved to %s)", stopped, out)
    log.info("PPO done: %s", {k: metrics.get(k) for k in ("score", "kl", "gold", "time_s")})
    return metrics
