"""The math of InstructGPT as pure tensor functions: tensors in, tensors out, no models, no state.

Every stage's training loop (``sft.py``, ``rm.py``, ``ppo.py``) calls these; each function says the
shapes it takes, the equation it computes and where that equation comes from. Source keys are
those of ``shared/PAPER_NOTES.md``: [IG] Ouyang et al. 2022 (InstructGPT), [ZG] Ziegler et al.
2019, [ST] Stiennon et al. 2020, [NB] Huang et al., "The N Implementation Details of RLHF with
PPO", [N+] Huang et al. 2024, [GA] Gao et al. 2022. ``docs/algorithms.md`` maps each paper
equation to the function here.

Conventions
-----------
* Masks are bool (or 0/1) with **True / 1 = a real token that counts**. Positions where the mask is
  False never contribute to a loss, a statistic or a gradient, and functions that return per-token
  tensors put 0 there.
* Shapes: ``(B, T)`` per token, ``(B,)`` per sequence, ``(B, T, V)`` logits. Per-token tensors are
  aligned: ``logits[:, t]`` predicts ``labels[:, t]`` (callers shift once, before calling).
* Fixed names: ``logprobs``, ``ref_logprobs``, ``values``, ``scores``, ``rewards``,
  ``advantages``, ``returns``, ``response_mask``.
* Statistics are returned as a ``dict[str, Tensor]`` of detached 0-dim tensors (call ``.item()``
  when logging).

Where we depart from, or fill gaps in, the paper
-----------------------------------------------
* **Loss normalisation.** [IG] gives objectives, not reductions. The SFT, PPO-policy, value and
  pretraining (ptx) losses here are **per-token means over counted tokens** of the minibatch (as in
  [NB]/[N+] code). The RM loss is exactly [IG] Eq. 1: the mean over the C(K,2) pairs of a prompt,
  then the mean over prompts (each prompt is one batch element, [IG] §3.5 footnote 5).
* **Ties** in a ranking are dropped from the RM loss, and the per-prompt normaliser is then the
  number of non-tied pairs rather than C(K,2) ([IG] App. C.2 drops ties; the paper does not say
  which normaliser it then uses).
* **KL estimator.** [IG] Eq. 2 uses the log-ratio itself (``k1``), summed per token ([IG] §3.5).
  That is our default; ``k2`` / ``k3`` are options for experiments and logging, not the paper.
* **GAE.** [IG] uses no discount (γ = 1) but does not state λ; we default to λ = 0.95 ([ZG] code,
  [ST] App. B.1). The value after the last response token is 0 (the bandit episode ends there).
* **Value clipping, reward / advantage whitening** are [ZG] code details ([NB], [N+]), not stated
  in [IG]. They are provided here; the PPO loop decides whether to use them.
* **Adaptive KL** ([ZG] §2.2) is an option; [IG] uses a fixed β = 0.02 (``FixedKLController``).
* **ptx coefficient.** The paper's γ = 27.8 is relative to its own (unpublished) loss scaling and to
  8 pretraining examples per RL episode; see :func:`ptx_loss` for why that number does not carry
  over to our per-token means. The default γ is defined once, ``config.PTX_COEF``, and
  ``docs/algorithms.md`` ("The scale of ptx_coef") explains it.
* **State.** The functions are stateless; the two KL controllers at the end are the one exception
  (a float β with ``state_dict``), kept here because their update rule is paper math.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "masked_sum",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "token_logprobs",
    "sft_loss",
    "ptx_loss",
    "kwise_ranking_loss",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "KL_ESTIMATORS",
    "per_token_rewards",
    "gae",
    "ppo_policy_loss",
    "ppo_value_loss",
    "entropy_from_logits",
    "explained_variance",
    "AdaptiveKLController",
    "FixedKLController",
    "best_of_n_kl",
    "PAPER_KL_COEF",
    "PAPER_PTX_COEF",
    "PAPER_PTX_EXAMPLES_PER_EPISODE",
]

#: [IG] App. C.4: fixed KL coefficient β of the per-token penalty.
PAPER_KL_COEF = 0.02
#: [IG] App. C.4: pretraining-loss coefficient γ of PPO-ptx, relative to the paper's loss scaling.
PAPER_PTX_COEF = 27.8
#: [IG] App. C.4 / E.11: pretraining examples mixed in per RL episode.
PAPER_PTX_EXAMPLES_PER_EPISODE = 8


# --------------------------------------------------------------------------------------------
# Masked reductions and whitening
# --------------------------------------------------------------------------------------------


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` over positions where ``mask`` is True.

    Shapes: ``x`` and ``mask`` broadcastable (usually both ``(B, T)``). Returns a scalar when
    ``dim`` is None, otherwise ``x`` reduced over ``dim``. Masked positions are replaced by 0 with
    ``torch.where`` (not multiplied), so a NaN or inf there cannot leak into the result or the
    gradient.
    """
    mask = _as_bool(mask)
    x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is True: ``Σ mask·x / Σ mask``.

    Shapes as :func:`masked_sum`. An empty selection (no True in ``mask``, or in a row when
    ``dim`` is given) gives 0, not NaN, so an all-padding row cannot poison a batch.
    """
    mask = _as_bool(mask)
    count = mask.expand_as(x).sum() if dim is None else mask.expand_as(x).sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(
    x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False, dim: int | None = None
) -> torch.Tensor:
    """Variance of ``x`` over positions where ``mask`` is True.

    ``var = mean_mask((x - mean_mask(x))^2)``, times ``n / (n - 1)`` when ``unbiased``. The
    default is the biased variance, as in [ZG]'s ``whiten`` ([NB] "advantage whitening"). With
    ``unbiased=True`` and fewer than 2 counted elements the biased value (0 or empty) is returned.
    """
    mask = _as_bool(mask)
    mean = masked_mean(x, mask, dim)
    if dim is not None:
        mean = mean.unsqueeze(dim)
    var = masked_mean((x - mean) ** 2, mask, dim)
    if unbiased:
        count = mask.expand_as(x).sum() if dim is None else mask.expand_as(x).sum(dim=dim)
        count = count.to(x.dtype)
        var = torch.where(count > 1, var * count / (count - 1).clamp(min=1), var)
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise ``x`` to mean 0 and variance 1 over the masked positions of the whole tensor.

    ``whitened = (x - μ) · rsqrt(σ² + eps)`` with μ, σ² the masked mean and **biased** variance;
    with ``shift_mean=False`` the mean is added back: ``whitened + μ`` (only the scale changes).
    Source: [ZG] code ``whiten``, used with ``shift_mean=False`` on rewards (rescaled, mean kept)
    and ``shift_mean=True`` on advantages ([NB] policy details, [N+]). Not stated in [IG].

    Shapes: ``x``, ``mask`` ``(B, T)`` (any shape works). Returns the same shape, 0 where masked.
    """
    mask = _as_bool(mask)
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=False)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros((), dtype=whitened.dtype, device=x.device))


# --------------------------------------------------------------------------------------------
# Log-probabilities, SFT and pretraining losses
# --------------------------------------------------------------------------------------------


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probability of each label token: ``log softmax(logits / temperature)[labels]``.

    Shapes: ``logits (B, T, V)`` already aligned so that ``logits[:, t]`` predicts
    ``labels[:, t]`` (``(B, T)``, long). Returns ``(B, T)`` float32 (or float64 if the logits are).

    Dividing by the sampling temperature matters: log-probs used in the KL penalty and the PPO
    ratio must be those of the distribution that was sampled from ([NB] policy detail "scale the
    logits by the sampling temperature"); otherwise KL ≠ 0 and ratio ≠ 1 at step 0. [IG] samples
    at temperature 1. Labels outside ``[0, V)`` (e.g. an ignore index of -100 at padding) are
    clamped to 0 before gathering; the value there is meaningless and must be masked by the
    caller. Computed as ``logit[label] - logsumexp(logits)`` to avoid a ``(B, T, V)`` log-softmax
    copy.
    """
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if temperature != 1.0:
        logits = logits / temperature
    labels = labels.long().clamp(min=0, max=logits.size(-1) - 1)
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning loss: mean token cross-entropy over the counted tokens.

    ``loss = -(1 / Σ m) · Σ_{b,t} m_{b,t} · log p(labels_{b,t} | logits_{b,t})``

    Shapes: ``logits (B, T, V)`` predicting ``labels (B, T)`` (already shifted), ``loss_mask
    (B, T)`` True on response tokens (and the EOS) — prompt and padding tokens are masked
    ([IG] §3.5 "SFT": supervised learning on labeler demonstrations; loss on the response only, as
    in DESIGN.md). Normalisation: the mean over all counted tokens of the batch (a long response
    weighs more than a short one), not a mean of per-sequence means. Returns a scalar; 0 (with a
    graph) when no token is counted. Masked positions get exactly zero gradient.
    """
    mask = _as_bool(loss_mask)
    flat_labels = torch.where(mask, labels.long(), torch.full_like(labels.long(), -100))
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        flat_labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    return total / mask.sum().clamp(min=1).to(total.dtype)


def ptx_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pretraining negative log-likelihood, the PPO-ptx term: mean NLL over counted tokens.

    [IG] Eq. 2:
    ``objective(φ) = E[r_θ(x,y) - β log(π^RL/π^SFT)] + γ E_{x~D_pretrain}[log π^RL(x)]``.
    As a loss to minimise, the PPO-ptx total is ``ppo_loss + ptx_coef * ptx_loss`` with this
    function giving ``-log π(x)`` as a per-token mean (same arithmetic as :func:`sft_loss`;
    ``mask`` True on real, non-padding pretraining tokens). Shapes: ``logits (B, T, V)``,
    ``labels (B, T)``, ``mask (B, T)``; returns a scalar.

    Scale of ``ptx_coef`` (a documented choice, not a claim about the paper): the paper's
    γ = 27.8 ([IG] App. C.4) multiplies a pretraining gradient under a loss scaling it does not
    publish, taken on **8× as many pretraining examples as RL episodes**, accumulated into the same
    gradient buffers as the PPO gradient. Here both our PPO loss and this loss are per-token means
    over their own minibatch, and the PPO loop mixes about one pretraining sequence per episode.
    Copying 27.8 onto two per-token means would let the pretraining term swamp the policy
    gradient. The default γ (``config.PTX_COEF``) and its scale are documented once, in
    ``docs/algorithms.md``; γ should be swept (the ``paper`` preset does); γ = 0 is plain PPO.
    """
    return sft_loss(logits, labels, mask)


# --------------------------------------------------------------------------------------------
# Reward model: K-wise ranking loss
# --------------------------------------------------------------------------------------------


def kwise_ranking_loss(
    scores: torch.Tensor, group: torch.Tensor, rank: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """InstructGPT's reward-model loss over all ranked pairs of each prompt ([IG] Eq. 1, §3.5).

    For a prompt (group) g with K ranked responses and scores ``s``::

        loss_g = -(1 / P_g) · Σ_{(w, l): rank_w < rank_l} log σ(s_w - s_l)
        loss   = mean over groups with P_g > 0 of loss_g

    where ``P_g`` is the number of non-tied ordered pairs (``C(K, 2)`` when there are no ties).
    Responses with equal rank in a group are a tie and that pair is excluded ([IG] App. C.2). All
    comparisons of a prompt form **one batch element** ([IG] §3.5 footnote 5): each prompt weighs
    the same in the batch mean whatever its K, and the caller runs exactly one forward pass per
    response (N = Σ_g K_g passes, not 2·Σ_g C(K_g, 2)). K may differ between groups.

    Args:
        scores: ``(N,)`` one RM score per response, N = total responses in the batch.
        group: ``(N,)`` long, the prompt each response belongs to (any integer ids).
        rank: ``(N,)`` long, the labeler's rank within its prompt, **0 = best**.

    Returns:
        ``(loss, stats)``: the scalar loss and detached statistics over all non-tied pairs:
        ``accuracy`` (fraction with ``s_w > s_l``; an exact score tie counts as wrong),
        ``margin`` (mean ``s_w - s_l``), ``num_pairs``, ``num_groups`` (groups with a pair).

    Vectorised: an ``(N, N)`` pair mask is built by broadcasting (N ≤ 64 · 9 = 576 in the paper's
    setting), and per-group sums use ``index_add``.
    """
    if scores.dim() != 1 or group.shape != scores.shape or rank.shape != scores.shape:
        raise ValueError(
            f"kwise_ranking_loss expects 1-D scores, group, rank of equal length; got "
            f"{tuple(scores.shape)}, {tuple(group.shape)}, {tuple(rank.shape)}"
        )
    # Map arbitrary group ids to 0..G-1.
    _, gid = torch.unique(group, return_inverse=True)
    num_groups_total = int(gid.max().item()) + 1 if gid.numel() else 0

    same_group = gid.unsqueeze(1) == gid.unsqueeze(0)
    w_above_l = rank.unsqueeze(1) < rank.unsqueeze(0)  # row i = winner, column j = loser
    pairs = same_group & w_above_l

    margin = scores.unsqueeze(1) - scores.unsqueeze(0)  # s_w - s_l
    pair_loss = F.softplus(-margin)  # = -log σ(s_w - s_l), numerically stable
    pair_loss = torch.where(pairs, pair_loss, pair_loss.new_zeros(()))

    loss_per_group = torch.zeros(num_groups_total, dtype=pair_loss.dtype, device=scores.device)
    loss_per_group = loss_per_group.index_add(0, gid, pair_loss.sum(dim=1))
    pairs_per_group = torch.zeros(num_groups_total, dtype=torch.long, device=scores.device)
    pairs_per_group = pairs_per_group.index_add(0, gid, pairs.sum(dim=1))

    has_pairs = pairs_per_group > 0
    num_groups = int(has_pairs.sum().item())
    num_pairs = int(pairs.sum().item())
    if num_groups == 0:
        loss = scores.sum() * 0.0
    else:
        per_group = loss_per_group[has_pairs] / pairs_per_group[has_pairs].to(loss_per_group.dtype)
        loss = per_group.mean()

    with torch.no_grad():
        m = margin.detach()
        if num_pairs:
            accuracy = (m[pairs] > 0).float().mean()
            mean_margin = m[pairs].float().mean()
        else:
            accuracy = torch.zeros((), device=scores.device)
            mean_margin = torch.zeros((), device=scores.device)
    stats = {
        "accuracy": accuracy,
        "margin": mean_margin,
        "num_pairs": torch.tensor(num_pairs),
        "num_groups": torch.tensor(num_groups),
    }
    return loss, stats


# --------------------------------------------------------------------------------------------
# KL estimators and per-token rewards
# --------------------------------------------------------------------------------------------


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimator k1 = ``log p - log q`` (p = policy, q = reference).

    Unbiased for KL(p‖q) when the token is sampled from p; can be negative per token. Its sum
    over a response is exactly the sequence log-ratio of [IG] Eq. 2.
    Shapes ``(B, T)`` -> ``(B, T)``.
    Source: Schulman, "Approximating KL divergence" (2020); [IG] §3.5.
    """
    return logprobs - ref_logprobs


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimator k2 = ``½ (log p - log q)²``: low variance, biased, always ≥ 0.

    Shapes ``(B, T)`` -> ``(B, T)``. Source: Schulman, "Approximating KL divergence" (2020).
    """
    return 0.5 * (logprobs - ref_logprobs) ** 2


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimator k3 = ``(r - 1) - log r`` with ``r = q/p = exp(log q - log p)``.

    Unbiased for KL(p‖q) under samples from p, and ≥ 0 for every token. Shapes ``(B, T)`` ->
    ``(B, T)``. Source: Schulman, "Approximating KL divergence" (2020).
    """
    log_r = ref_logprobs - logprobs
    return torch.expm1(log_r) - log_r


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def per_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    kl_coef: float | torch.Tensor,
    kl_estimator: Literal["k1", "k2", "k3"] = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assemble the PPO reward of each response token: KL penalty per token, RM score at the end.

    ``r_t = -β · kl_t`` on every response token, and ``r_T += score`` at the **last real response
    token** T of each row; 0 on every masked position. With ``kl_estimator="k1"``,
    ``kl_t = log π^RL(y_t) - log π^SFT(y_t)`` and ``Σ_t r_t = score - β log(π^RL(y)/π^SFT(y))``,
    the per-episode reward of [IG] Eq. 2 ("a per-token KL penalty from the SFT model at each
    token", [IG] §3.5; [NB] "per-token KL penalty"; [ZG] code ``rewards[:, -1] += scores``).

    Args:
        scores: ``(B,)`` RM score of each response (after any EOS penalty / normalisation).
        logprobs, ref_logprobs: ``(B, T)`` policy and reference log-probs of the sampled tokens.
        response_mask: ``(B, T)`` True on response tokens. Rows may have different lengths (right
            padding), and prompt positions may be masked on the left.
        kl_coef: β, a float or a ``(B,)`` tensor (one β per row).
        kl_estimator: ``"k1"`` (the paper), ``"k2"`` or ``"k3"``.

    Returns:
        ``(rewards, kl)``, both ``(B, T)`` and 0 where masked; ``kl`` is the per-token estimate
        used in the penalty (sum it over tokens for the per-response KL). A row with no response
        token gets no score.
    """
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(
            f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {kl_estimator!r}"
        )
    mask = _as_bool(response_mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    kl = torch.where(mask, KL_ESTIMATORS[kl_estimator](logprobs, ref_logprobs), zero)
    beta = torch.as_tensor(kl_coef, dtype=kl.dtype, device=kl.device)
    if beta.dim() == 1:
        beta = beta.unsqueeze(-1)
    rewards = -beta * kl
    T = mask.size(-1)
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    last = torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=-1).values  # (B,)
    has_tokens = last >= 0
    score_add = torch.zeros_like(rewards)
    score_add.scatter_(
        -1,
        last.clamp(min=0).unsqueeze(-1),
        torch.where(has_tokens, scores.to(rewards.dtype), zero).unsqueeze(-1),
    )
    rewards = torch.where(mask, rewards + score_add, zero)
    return rewards, kl


# --------------------------------------------------------------------------------------------
# GAE and PPO losses
# --------------------------------------------------------------------------------------------


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the response tokens of each row.

    For the real tokens ``t_1 < … < t_n`` of a row (in order)::

        δ_i = r_{t_i} + γ · V_{t_{i+1}} - V_{t_i}       with V_{t_{n+1}} = 0 (the episode ends)
        A_i = δ_i + γλ · A_{i+1}                         with A_{n+1} = 0
        R_i = A_i + V_{t_i}

    Masked positions (prompt on the left, padding on the right, even holes) are skipped: they get
    advantage and return 0 and do not break the recursion. Sources: Schulman et al. 2016 (GAE);
    [IG] §3.5 bandit episode with no discount (γ = 1, App. C.4); λ = 0.95 is [ZG]/[ST]'s value
    (the paper does not state λ).

    Shapes: ``rewards``, ``values``, ``response_mask`` ``(B, T)``. Returns ``(advantages,
    returns)``, both ``(B, T)``, computed without gradient (targets, not graph nodes).
    A reverse loop over T, vectorised over B.
    """
    mask = _as_bool(response_mask)
    with torch.no_grad():
        rewards = rewards.detach()
        values = values.detach().to(rewards.dtype)
        B, T = rewards.shape
        advantages = torch.zeros_like(rewards)
        next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
        next_adv = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
        for t in reversed(range(T)):
            m = mask[:, t]
            delta = rewards[:, t] + gamma * next_value - values[:, t]
            adv_t = delta + gamma * lam * next_adv
            advantages[:, t] = torch.where(m, adv_t, torch.zeros_like(adv_t))
            next_adv = torch.where(m, adv_t, next_adv)
            next_value = torch.where(m, values[:, t], next_value)
        returns = torch.where(mask, advantages + values, torch.zeros_like(advantages))
    return advantages, returns


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate, as a loss (to minimise), per-token masked mean.

    ``ρ_t = exp(log π_φ(a_t) - log π_old(a_t))``,
    ``L = mean_mask( max(-A_t · ρ_t, -A_t · clip(ρ_t, 1-ε, 1+ε)) )``
    (= minus the clipped objective ``min(ρA, clip(ρ)A)``). Sources: Schulman et al. 2017 (PPO)
    Eq. 7; [IG] §3.5, App. C.4 (clip ratio 0.2). The per-token mean over the minibatch is [ZG]
    code / [NB], not stated in [IG].

    Shapes: all ``(B, T)``; ``old_logprobs`` and ``advantages`` are treated as constants.

    Returns ``(loss, stats)`` with detached ``clipfrac`` (fraction of tokens where the clipped
    branch is the active one), ``approx_kl`` (``mean(½ (log ρ)²)``, [ZG]'s approxkl),
    ``approx_kl_k3`` (``mean((ρ - 1) - log ρ)``), ``ratio_mean`` and ``ratio_max``.
    """
    mask = _as_bool(response_mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    advantages = advantages.detach()
    log_ratio = torch.where(mask, logprobs - old_logprobs.detach(), zero)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "approx_kl_k3": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": (
                ratio.masked_fill(~mask, float("-inf")).max() if mask.any() else ratio.new_ones(())
            ),
        }
    return loss, {k: v.detach() for k, v in stats.items()}


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    clip_eps: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ``½ · mean_mask( max((V - R)², (clip(V, V_old ± ε) - R)²) )``.

    The clipped value stays within ``ε`` of the value predicted at rollout time, and the
    pessimistic (larger) of the two squared errors is used. Source: [ZG] code (``cliprange_value``
    = 0.2), [NB] "clipped value loss", [N+]; not stated in [IG]. ``clip_eps=None`` gives the plain
    ``½ mean (V - R)²``.

    Shapes: all ``(B, T)``; ``old_values`` and ``returns`` are constants. Returns ``(loss, stats)``
    with detached ``vf_clipfrac`` (fraction of tokens where the clipped error is the larger one),
    ``value_mean`` and ``value_error`` (mean ``(V - R)²``).
    """
    mask = _as_bool(response_mask)
    returns = returns.detach()
    err_unclipped = (values - returns) ** 2
    if clip_eps is None:
        err = err_unclipped
        clipfrac = torch.zeros((), device=values.device)
    else:
        old_values = old_values.detach()
        v_clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
        err_clipped = (v_clipped - returns) ** 2
        err = torch.maximum(err_unclipped, err_clipped)
        with torch.no_grad():
            clipfrac = masked_mean((err_clipped > err_unclipped).float(), mask)
    loss = 0.5 * masked_mean(err, mask)
    with torch.no_grad():
        stats = {
            "vf_clipfrac": clipfrac.detach(),
            "value_mean": masked_mean(values.detach(), mask),
            "value_error": masked_mean(err_unclipped.detach(), mask),
        }
    return loss, stats


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax distribution at each position: ``H = logsumexp(z) - Σ_v p_v z_v``.

    Shapes: ``(B, T, V)`` -> ``(B, T)``. A diagnostic ([NB] logs it; [ST] §3.4 notes the KL
    penalty acts as an entropy bonus). Computed in float32 for half-precision inputs.
    """
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Fraction of the variance of the returns explained by the value predictions.

    ``EV = 1 - Var_mask(R - V) / Var_mask(R)`` (biased variances). 1 is perfect, 0 is no better
    than predicting the mean, negative is worse. NaN when the returns have zero variance.
    Shapes: ``(B, T)`` each; returns a detached scalar. Source: the standard PPO diagnostic
    (OpenAI baselines, CleanRL).
    """
    with torch.no_grad():
        var_r = masked_var(returns.detach(), mask)
        var_res = masked_var((returns - values).detach(), mask)
        if var_r.item() == 0.0:
            return torch.full((), float("nan"), dtype=var_r.dtype, device=var_r.device)
        return 1.0 - var_res / var_r


# --------------------------------------------------------------------------------------------
# KL coefficient controllers
# --------------------------------------------------------------------------------------------


def _to_float(x) -> float:
    return float(x.detach().item()) if isinstance(x, torch.Tensor) else float(x)


class AdaptiveKLController:
    """Adaptive KL coefficient β of Ziegler et al. 2019 ([ZG] §2.2, code ``AdaptiveKLController``).

    A proportional controller in log space that steers the measured KL(π‖π_ref) towards
    ``target``::

        e    = clip(KL / target - 1, -0.2, 0.2)
        mult = 1 + e · n_steps / horizon
        β   ← β · mult

    ``n_steps`` is the number of episodes in the batch just used and ``horizon`` the number of
    episodes over which the error would be corrected (10,000 in [ZG]; with 1,024 episodes per
    batch, K_β ≈ 0.1). Each update changes β by a factor within ``1 ± 0.2 · n_steps / horizon``,
    and KL = target leaves β unchanged. [IG] itself uses a fixed β = 0.02
    (:class:`FixedKLController`).
    ``current_kl`` is the mean **per-response** KL (nats), in the same units as ``target``.
    ``n_steps`` must count the episodes of the *global* batch (all processes together): the
    caller passes ``batch_size × world_size``. A non-finite ``current_kl`` (NaN/inf, e.g. a batch
    whose every score was dropped) leaves β unchanged: ``min``/``max`` would pass a NaN through
    and make β NaN for the rest of the run.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if target <= 0:
            raise ValueError(f"AdaptiveKLController target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"AdaptiveKLController horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """Update β from the KL just measured over ``n_steps`` episodes; returns the new β."""
        kl = _to_float(current_kl)
        if not math.isfinite(kl):
            return self.value
        proportional_error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        mult = 1.0 + proportional_error * n_steps / self.horizon
        self.value *= mult
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
        self.target = float(state.get("target", self.target))
        self.horizon = float(state.get("horizon", self.horizon))

    def __repr__(self) -> str:
        return (
            f"AdaptiveKLController(value={self.value:g}, target={self.target:g}, "
            f"horizon={self.horizon:g})"
        )


class FixedKLController:
    """A constant KL coefficient β with the controller interface; [IG] App. C.4 uses β = 0.02."""

    def __init__(self, kl_coef: float = PAPER_KL_COEF):
        self.value = float(kl_coef)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """No-op (the coefficient is fixed); returns β."""
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])

    def __repr__(self) -> str:
        return f"FixedKLController(value={self.value:g})"


def best_of_n_kl(n: int) -> float:
    """Analytic KL(π_bon ‖ π) of best-of-n sampling: ``log n - (n - 1) / n`` nats.

    Sources: [ST] App. (Table 10); [GA] §2 (KL_bon). It is an upper bound in general and exact
    when the n samples are distinct. Examples: n = 1 -> 0, n = 16 -> 1.8351.
    """
    if n < 1:
        raise ValueError(f"best_of_n_kl needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n
