"""Unit tests for instructrl.losses: hand-computed values and brute-force reference loops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from instructrl import losses as L


def _ragged_mask(lengths, T, left=None):
    """(B, T) bool mask with `left[b]` masked prompt positions then `lengths[b]` real tokens."""
    left = left or [0] * len(lengths)
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    for b, (s, n) in enumerate(zip(left, lengths)):
        mask[b, s : s + n] = True
    return mask


# ------------------------------------------------------------------ masked reductions, whitening


def test_masked_mean_sum_var_hand():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, float("nan"), float("inf")]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert L.masked_sum(x, m).item() == pytest.approx(6.0)
    assert L.masked_mean(x, m).item() == pytest.approx(2.0)
    assert torch.allclose(L.masked_mean(x, m, dim=1), torch.tensor([1.5, 3.0]))
    # biased var of {1,2,3} = 2/3; unbiased = 1
    assert L.masked_var(x, m).item() == pytest.approx(2 / 3)
    assert L.masked_var(x, m, unbiased=True).item() == pytest.approx(1.0)
    # an all-masked row gives 0, not NaN
    assert L.masked_mean(x, torch.zeros_like(m), dim=1).tolist() == [0.0, 0.0]


def test_masked_whiten_mean0_var1_and_shift_mean_false():
    torch.manual_seed(0)
    x = torch.randn(4, 9) * 3 + 5
    m = _ragged_mask([9, 3, 6, 1], 9)
    w = L.masked_whiten(x, m)
    assert L.masked_mean(w, m).item() == pytest.approx(0.0, abs=1e-5)
    assert L.masked_var(w, m).item() == pytest.approx(1.0, abs=1e-5)
    assert (w[~m] == 0).all()
    # shift_mean=False: same scaling, original mean kept
    mu = L.masked_mean(x, m)
    w2 = L.masked_whiten(x, m, shift_mean=False)
    assert L.masked_mean(w2, m).item() == pytest.approx(mu.item(), abs=1e-5)
    assert L.masked_var(w2, m).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(w2[m], w[m] + mu)
    # exact formula, biased variance
    var = x[m].var(unbiased=False)
    assert torch.allclose(w[m], (x[m] - x[m].mean()) * torch.rsqrt(var + 1e-8))


# ------------------------------------------------------------------ log-probs, SFT, ptx


def test_token_logprobs_matches_log_softmax_and_temperature():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    for temp in (1.0, 0.7):
        ref = torch.log_softmax(logits / temp, -1).gather(-1, labels[..., None]).squeeze(-1)
        assert torch.allclose(L.token_logprobs(logits, labels, temp), ref, atol=1e-6)
    # ignore-index labels do not crash
    labels[0, 0] = -100
    assert torch.isfinite(L.token_logprobs(logits, labels)).all()


def test_sft_loss_hand_value():
    # uniform logits over V=4 -> CE = log 4 at every counted token
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[False, True, True]])
    assert L.sft_loss(logits, labels, mask).item() == pytest.approx(math.log(4))
    # mean over counted tokens of the batch, not per-sequence means
    logits = torch.randn(2, 4, 5)
    labels = torch.randint(0, 5, (2, 4))
    mask = _ragged_mask([4, 1], 4)
    nll = F.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), reduction="none").view(2, 4)
    assert L.sft_loss(logits, labels, mask).item() == pytest.approx(nll[mask].mean().item(), rel=1e-6)


def test_sft_loss_ignores_masked_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 6))
    mask = _ragged_mask([3, 2], 6, left=[2, 1])
    loss = L.sft_loss(logits, labels, mask)
    loss.backward()
    assert (logits.grad[~mask] == 0).all()
    assert (logits.grad[mask].abs().sum(-1) > 0).all()
    # changing logits (and labels) at masked positions does not change the loss
    changed = logits.detach().clone()
    changed[~mask] = torch.randn_like(changed[~mask]) * 50
    labels2 = labels.clone()
    labels2[~mask] = -100
    assert L.sft_loss(changed, labels2, mask).item() == pytest.approx(loss.item(), rel=1e-6)
    # ptx_loss is the same per-token mean NLL
    assert L.ptx_loss(logits.detach(), labels, mask).item() == pytest.approx(loss.item())


def test_sft_loss_no_tokens_is_zero():
    logits = torch.randn(1, 3, 4, requires_grad=True)
    loss = L.sft_loss(logits, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()


def test_ptx_default_is_defined_once():
    from instructrl import config as C

    assert not hasattr(L, "DEFAULT_PTX_COEF")  # one default, in config, documented in docs/algorithms.md
    assert C.PipelineConfig().ppo_ptx.ptx_coef == C.PTX_COEF > 0
    assert C.PPOConfig().ptx_coef == 0.0  # a plain `instructrl ppo` run is PPO, not PPO-ptx


# ------------------------------------------------------------------ K-wise ranking loss


def _kwise_reference(scores, group, rank):
    """Explicit loop over groups and pairs, [IG] Eq. 1, ties excluded, mean over groups."""
    per_group = []
    n_pairs, n_correct, margins = 0, 0, []
    for g in sorted(set(group.tolist())):
        idx = [i for i in range(len(scores)) if group[i] == g]
        terms = []
        for i, j in itertools.permutations(idx, 2):
            if rank[i] < rank[j]:  # i is the winner
                d = scores[i] - scores[j]
                terms.append(-F.logsigmoid(d))
                n_pairs += 1
                n_correct += int(d.item() > 0)
                margins.append(d.item())
        if terms:
            per_group.append(torch.stack(terms).sum() / len(terms))
    return torch.stack(per_group).mean(), n_correct / n_pairs, sum(margins) / len(margins), n_pairs


def test_kwise_hand_k2_and_k3():
    # K = 2: -log σ(s_w - s_l)
    loss, stats = L.kwise_ranking_loss(torch.tensor([2.0, 1.0]), torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))))
    assert stats["accuracy"].item() == 1.0 and stats["num_pairs"].item() == 1
    # K = 3, all equal scores: every pair gives log 2, mean over C(3,2)=3 pairs is log 2
    loss, stats = L.kwise_ranking_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long), torch.tensor([2, 0, 1]))
    assert loss.item() == pytest.approx(math.log(2))
    assert stats["num_pairs"].item() == 3 and stats["accuracy"].item() == 0.0


def test_kwise_each_prompt_weighs_equally():
    # group 0: K=2 with loss a; group 1: K=4, all equal -> log 2. Batch loss = (a + log2) / 2
    scores = torch.tensor([3.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    group = torch.tensor([7, 7, 9, 9, 9, 9])
    rank = torch.tensor([0, 1, 0, 1, 2, 3])
    a = -math.log(torch.sigmoid(torch.tensor(3.0)).item())
    loss, stats = L.kwise_ranking_loss(scores, group, rank)
    assert loss.item() == pytest.approx((a + math.log(2)) / 2, rel=1e-6)
    assert stats["num_pairs"].item() == 1 + 6
    assert stats["num_groups"].item() == 2


@pytest.mark.parametrize("seed", range(5))
def test_kwise_matches_pair_loop_with_ties_and_mixed_k(seed):
    g = torch.Generator().manual_seed(seed)
    ks = torch.randint(2, 10, (6,), generator=g).tolist()  # K from 2 to 9
    group, rank = [], []
    for gi, k in enumerate(ks):
        r = torch.randint(0, k, (k,), generator=g)  # random ranks -> some ties
        group += [gi * 3 + 1] * k  # non-contiguous ids
        rank += r.tolist()
    # one group that is entirely tied (no pair) must be skipped, not counted as zero
    group += [100, 100, 100]
    rank += [1, 1, 1]
    perm = torch.randperm(len(group), generator=g)  # responses need not be sorted by group
    group = torch.tensor(group)[perm]
    rank = torch.tensor(rank)[perm]
    scores = torch.randn(len(group), generator=g, dtype=torch.float64, requires_grad=True)

    loss, stats = L.kwise_ranking_loss(scores, group, rank)
    ref, acc, margin, n_pairs = _kwise_reference(scores, group, rank)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    assert stats["accuracy"].item() == pytest.approx(acc)
    assert stats["margin"].item() == pytest.approx(margin)
    assert stats["num_pairs"].item() == n_pairs
    (g1,) = torch.autograd.grad(loss, scores)
    (g2,) = torch.autograd.grad(ref, scores)
    assert torch.allclose(g1, g2)
    # gradient of tied-only group is zero
    assert (g1[group == 100] == 0).all()


def test_kwise_no_pairs_is_zero_with_graph():
    scores = torch.randn(3, requires_grad=True)
    loss, stats = L.kwise_ranking_loss(scores, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]))
    assert loss.item() == 0.0 and stats["num_pairs"].item() == 0
    loss.backward()


def test_kwise_shape_check():
    with pytest.raises(ValueError):
        L.kwise_ranking_loss(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------ KL estimators, rewards


def test_kl_estimators_zero_at_identity_and_k3_nonneg():
    torch.manual_seed(0)
    lp = torch.randn(3, 8) - 2
    for name, fn in L.KL_ESTIMATORS.items():
        assert torch.equal(fn(lp, lp), torch.zeros_like(lp)), name
    # PPO ratio is exactly 1 when logprobs == old logprobs
    _, stats = L.ppo_policy_loss(lp, lp.clone(), torch.randn(3, 8), torch.ones(3, 8, dtype=torch.bool))
    assert stats["ratio_mean"].item() == 1.0 and stats["clipfrac"].item() == 0.0
    assert stats["approx_kl"].item() == 0.0
    ref = torch.randn(3, 8) - 2
    assert (L.kl_k3(lp, ref) >= 0).all()
    assert (L.kl_k2(lp, ref) >= 0).all()
    d = lp - ref
    assert torch.allclose(L.kl_k1(lp, ref), d)
    assert torch.allclose(L.kl_k2(lp, ref), 0.5 * d**2)
    r = torch.exp(-d)
    assert torch.allclose(L.kl_k3(lp, ref), (r - 1) - torch.log(r), atol=1e-5)


def test_per_token_rewards_score_on_last_real_token():
    lp = torch.tensor([[-1.0, -2.0, -1.0, -3.0], [-1.0, -1.0, -5.0, -5.0]])
    ref = torch.tensor([[-1.5, -1.0, -1.0, -9.0], [-2.0, -1.0, -5.0, -5.0]])
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)  # row 1: left prompt + padding
    scores = torch.tensor([10.0, -4.0])
    rewards, kl = L.per_token_rewards(scores, lp, ref, mask, kl_coef=0.1)
    expected_kl = torch.tensor([[0.5, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(kl, expected_kl)
    expected = torch.tensor([[-0.05, 0.1, 10.0, 0.0], [0.0, -4.0, 0.0, 0.0]])
    assert torch.allclose(rewards, expected)
    # nothing on padding, and the sum is score - β·Σ kl
    assert (rewards[~mask] == 0).all()
    assert torch.allclose(rewards.sum(-1), scores - 0.1 * kl.sum(-1))


def test_per_token_rewards_tensor_kl_coef_and_empty_row():
    torch.manual_seed(0)
    lp, ref = torch.randn(3, 5), torch.randn(3, 5)
    mask = _ragged_mask([5, 2, 0], 5)
    beta = torch.tensor([0.0, 1.0, 0.5])
    rewards, kl = L.per_token_rewards(torch.tensor([1.0, 2.0, 3.0]), lp, ref, mask, beta, kl_estimator="k3")
    assert torch.allclose(kl[mask], L.kl_k3(lp, ref)[mask])
    assert torch.allclose(rewards[0], torch.tensor([0.0, 0, 0, 0, 1.0]))
    assert torch.allclose(rewards[1, :2], torch.tensor([-kl[1, 0], 2.0 - kl[1, 1]]))
    assert (rewards[2] == 0).all()  # no response token -> no score
    with pytest.raises(ValueError):
        L.per_token_rewards(torch.zeros(3), lp, ref, mask, 0.1, kl_estimator="k4")


# ------------------------------------------------------------------ GAE


def _gae_reference(rewards, values, mask, gamma, lam):
    """Per-row reverse loop over that row's real tokens only; V after the last one is 0."""
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=torch.float64)
    ret = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        idx = [t for t in range(T) if mask[b, t]]
        last_gae, next_v = 0.0, 0.0
        for t in reversed(idx):
            delta = rewards[b, t].item() + gamma * next_v - values[b, t].item()
            last_gae = delta + gamma * lam * last_gae
            adv[b, t] = last_gae
            ret[b, t] = last_gae + values[b, t].item()
            next_v = values[b, t].item()
    return adv, ret


def test_gae_hand_bandit():
    # one row, 3 tokens, reward only at the end, γ = λ = 1: A_t = score - V_t, R_t = score
    rewards = torch.tensor([[0.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    adv, ret = L.gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1.5, 1.0, 0.5]]))
    assert torch.allclose(ret, torch.tensor([[2.0, 2.0, 2.0]]))
    # λ = 0: one-step TD
    adv, _ = L.gae(rewards, values, torch.ones(1, 3, dtype=torch.bool), gamma=1.0, lam=0.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.5]]))


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0)])
def test_gae_matches_reverse_loop_ragged(gamma, lam):
    torch.manual_seed(1)
    B, T = 6, 11
    rewards = torch.randn(B, T, dtype=torch.float64)
    values = torch.randn(B, T, dtype=torch.float64)
    mask = _ragged_mask([11, 4, 1, 0, 7, 5], T, left=[0, 0, 3, 0, 2, 6])
    adv, ret = L.gae(rewards, values, mask, gamma=gamma, lam=lam)
    ref_adv, ref_ret = _gae_reference(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, ref_adv)
    assert torch.allclose(ret, ref_ret)
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()
    # garbage at masked positions has no effect
    r2, v2 = rewards.clone(), values.clone()
    r2[~mask] = 1e6
    v2[~mask] = -1e6
    adv2, ret2 = L.gae(r2, v2, mask, gamma=gamma, lam=lam)
    assert torch.allclose(adv2, adv) and torch.allclose(ret2, ret)


def test_gae_has_no_grad():
    values = torch.randn(2, 4, requires_grad=True)
    adv, ret = L.gae(torch.randn(2, 4), values, torch.ones(2, 4, dtype=torch.bool))
    assert not adv.requires_grad and not ret.requires_grad


# ------------------------------------------------------------------ PPO losses


def test_ppo_policy_loss_hand_both_clip_sides():
    eps = 0.2
    ratios = torch.tensor([[1.5, 0.5, 1.5, 0.5, 1.1, 9.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    old = torch.zeros_like(ratios)
    logprobs = torch.log(ratios).requires_grad_(True)
    loss, stats = L.ppo_policy_loss(logprobs, old, adv, mask, clip_eps=eps)
    # per token: max(-A ρ, -A clip(ρ))
    #  A>0, ρ=1.5 -> clipped to 1.2: max(-1.5, -1.2) = -1.2   (clipped, no grad)
    #  A>0, ρ=0.5 -> max(-0.5, -0.8) = -0.5                   (unclipped, grad)
    #  A<0, ρ=1.5 -> max(1.5, 1.2) = 1.5                      (unclipped, grad)
    #  A<0, ρ=0.5 -> max(0.5, 0.8) = 0.8                      (clipped, no grad)
    #  ρ=1.1 inside the range -> -2.2
    expected = (-1.2 - 0.5 + 1.5 + 0.8 - 2.2) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(2 / 5)
    logratio = torch.log(ratios[0, :5])
    assert stats["approx_kl"].item() == pytest.approx((0.5 * logratio**2).mean().item(), rel=1e-5)
    assert stats["approx_kl_k3"].item() == pytest.approx(((ratios[0, :5] - 1) - logratio).mean().item(), rel=1e-5)
    assert stats["ratio_mean"].item() == pytest.approx(ratios[0, :5].mean().item(), rel=1e-5)
    loss.backward()
    g = logprobs.grad[0]
    assert g[0] == 0 and g[3] == 0 and g[5] == 0  # clipped on both sides; masked
    # d/dlogp of -A ρ / 5 = -A ρ / 5
    assert g[1].item() == pytest.approx(-0.5 / 5) and g[2].item() == pytest.approx(1.5 / 5)


def test_ppo_value_loss_hand():
    values = torch.tensor([[1.0, 1.0, 0.0, 5.0]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[2.0, -1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    loss, stats = L.ppo_value_loss(values, old, returns, mask, clip_eps=0.2)
    # token 0: v=1 clipped to .2; (1-2)^2=1, (.2-2)^2=3.24 -> 3.24 (clipped larger)
    # token 1: (1+1)^2=4, (.2+1)^2=1.44 -> 4
    # token 2: v=old=0 -> 1
    assert loss.item() == pytest.approx(0.5 * (3.24 + 4 + 1) / 3, rel=1e-6)
    assert stats["vf_clipfrac"].item() == pytest.approx(1 / 3)
    loss.backward()
    assert values.grad[0, 0] == 0 and values.grad[0, 3] == 0
    assert values.grad[0, 1].item() == pytest.approx(0.5 * 2 * 2 / 3)
    # no clipping
    loss_nc, _ = L.ppo_value_loss(values.detach(), old, returns, mask, clip_eps=None)
    assert loss_nc.item() == pytest.approx(0.5 * (1 + 4 + 1) / 3)


# ------------------------------------------------------------------ diagnostics


def test_entropy_from_logits():
    logits = torch.zeros(2, 3, 8)
    assert torch.allclose(L.entropy_from_logits(logits), torch.full((2, 3), math.log(8)))
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8)
    p = torch.softmax(logits, -1)
    assert torch.allclose(L.entropy_from_logits(logits), -(p * p.log()).sum(-1), atol=1e-6)


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    assert L.explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert L.explained_variance(torch.full_like(returns, 2.0), returns, mask).item() == pytest.approx(0.0)
    assert math.isnan(L.explained_variance(returns, torch.ones_like(returns), mask).item())


# ------------------------------------------------------------------ KL controllers, best-of-n


def test_adaptive_kl_controller():
    c = L.AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    c.update(6.0, n_steps=1024)
    assert c.value == pytest.approx(0.1)  # KL = target leaves β unchanged
    c.update(torch.tensor(600.0), n_steps=1024)  # far above target: error clipped to +0.2
    assert c.value == pytest.approx(0.1 * (1 + 0.2 * 1024 / 10000))
    v = c.value
    c.update(0.0, n_steps=1024)  # far below: clipped to -0.2
    assert c.value == pytest.approx(v * (1 - 0.2 * 1024 / 10000))
    v = c.value
    c.update(6.6, n_steps=500)  # inside the clip: e = 0.1
    assert c.value == pytest.approx(v * (1 + 0.1 * 500 / 10000))
    # multiplier always within 1 ± 0.2 n/h
    for kl in [0.0, 1.0, 5.9, 6.1, 100.0, 1e9]:
        before = c.value
        c.update(kl, n_steps=64)
        assert 1 - 0.2 * 64 / 10000 - 1e-12 <= c.value / before <= 1 + 0.2 * 64 / 10000 + 1e-12
    # state round trip
    c2 = L.AdaptiveKLController(1.0, 1.0, 1.0)
    c2.load_state_dict(c.state_dict())
    assert c2.value == c.value and c2.target == 6.0 and c2.horizon == 10000


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), torch.tensor(float("nan"))])
def test_adaptive_kl_controller_ignores_a_nonfinite_kl(bad):
    c = L.AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=100)
    assert c.update(bad, n_steps=64) == 0.1 and c.value == 0.1  # not NaN, not moved
    c.update(0.0, n_steps=64)
    assert c.value == pytest.approx(0.1 * (1 - 0.2 * 64 / 100))  # and it still works afterwards


def test_fixed_kl_controller():
    c = L.FixedKLController(0.02)
    c.update(100.0, 512)
    assert c.value == 0.02
    c2 = L.FixedKLController()
    assert c2.value == L.PAPER_KL_COEF
    c2.load_state_dict({"value": 0.5})
    assert c2.value == 0.5 and c2.state_dict() == {"value": 0.5}


def test_best_of_n_kl():
    assert L.best_of_n_kl(1) == 0.0
    assert L.best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)
    assert L.best_of_n_kl(16) == pytest.approx(1.8351, abs=1e-4)
    assert L.best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
