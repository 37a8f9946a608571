"""Issue 18's switchable PPO speed-ups change nothing beyond float rounding:

- models.FUSED_GELU: GPT-2's 'gelu_new' runs as torch's fused tanh-GELU in every loaded model; the
  saved folder still says gelu_new.
- PPOConfig.reuse_sample_logprobs: the sampler's log-probs and entropy stand in for a full forward
  of the policy after sampling.
- PPOConfig.score_chunk: the rollout scored in length-sorted row chunks without their all-padding
  columns.
"""

import pytest
import torch
from transformers import GPT2ForSequenceClassification
from transformers.activations import GELUTanh, NewGELUActivation

from instructrl import models, rollout
from instructrl.config import PPOConfig
from instructrl.losses import entropy_from_logits
from instructrl.models import build_gpt2, load_policy, load_reward_model, save_model_folder
from instructrl.ppo import slice_minibatch, collect_rollout, compute_advantages, minibatch_loss
from instructrl.tokenizer import build_char_tokenizer

PROMPTS = ["Q: Reverse the word 'cat'.\nA:", "Q: Add 2 and 3.\nA:", "Q: hi\nA:", "Q: Sort 3 1 2.\nA:"]


@pytest.fixture(autouse=True)
def restore_flags():
    yield
    models.FUSED_GELU = True
    rollout.FAST = True


@pytest.fixture
def folder(tmp_path):
    tok = build_char_tokenizer()
    model = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0, activation="gelu_new")
    return save_model_folder(model, tok, tmp_path / "policy"), tok


def _acts(model):
    return [type(m) for m in model.modules() if type(m) in (GELUTanh, NewGELUActivation)]


def test_fused_gelu_same_logits_and_folder_unchanged(folder, tmp_path):
    path, tok = folder
    ids, mask = rollout.encode_prompts(tok, PROMPTS)
    models.FUSED_GELU = False
    plain, _ = load_policy(path)
    assert _acts(plain) == [NewGELUActivation] * 2
    models.FUSED_GELU = True
    fused, _ = load_policy(path)
    assert _acts(fused) == [GELUTanh] * 2
    with torch.no_grad():
        a = plain(input_ids=ids, attention_mask=mask.long()).logits
        b = fused(input_ids=ids, attention_mask=mask.long()).logits
    assert not torch.equal(a, b)  # a different kernel really ran
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    out = save_model_folder(fused, tok, tmp_path / "saved")
    models.FUSED_GELU = False
    again, _ = load_policy(out)
    assert again.config.activation_function == "gelu_new" and _acts(again) == [NewGELUActivation] * 2


def test_fused_gelu_in_reward_models(folder, tmp_path):
    path, tok = folder
    rm, _ = models.reward_model_from_causal_lm(path)
    assert _acts(rm) == [GELUTanh] * 2
    out = save_model_folder(rm, tok, tmp_path / "rm")
    assert _acts(load_reward_model(out)[0]) == [GELUTanh] * 2


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_entropy_and_logprobs_match_a_full_forward(folder, temperature):
    path, tok = folder
    model, _ = load_policy(path)
    ids, mask = rollout.encode_prompts(tok, PROMPTS)
    s = rollout.sample(model, ids, mask, 16, tok.eos_token_id, tok.pad_token_id, temperature,
                       torch.Generator().manual_seed(3))
    with torch.no_grad():
        lp, logits = rollout.forward_logprobs(model, s.input_ids, s.attention_mask, ids.shape[1], temperature,
                                              return_logits=True)
    m = s.response_mask
    torch.testing.assert_close(s.logprobs[m], lp[m], rtol=0, atol=1e-5)
    torch.testing.assert_close(s.entropy[m], entropy_from_logits(logits)[m], rtol=0, atol=1e-5)
    assert bool((s.entropy[~m] == 0).all()) and bool((s.entropy[m] > 0).all())


def _ppo_run(tok, reuse: bool, updates: int = 3):
    cfg = PPOConfig(batch_size=4, minibatch_size=2, max_new_tokens=12, warmup_updates=0, reuse_sample_logprobs=reuse)
    policy = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
    ref = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
    torch.manual_seed(1)
    vcfg = policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1})
    value, rm = GPT2ForSequenceClassification(vcfg).eval(), GPT2ForSequenceClassification(vcfg).eval()
    opt = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses, first = [], None
    for _ in range(updates):
        ro = compute_advantages(collect_rollout(policy, ref, value, rm, tok, PROMPTS, cfg, g), cfg, cfg.kl_coef)
        first = first or ro
        for j in range(2):
            loss, stats = minibatch_loss(policy, value, slice_minibatch(ro, torch.arange(2 * j, 2 * j + 2)), cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append((float(stats["policy_loss"]), float(stats["value_loss"])))
    return first, losses


def test_reuse_sample_logprobs_matches_the_recomputed_run():
    tok = build_char_tokenizer()
    a, la = _ppo_run(tok, reuse=False)
    b, lb = _ppo_run(tok, reuse=True)
    m = a.response_mask
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(m, b.response_mask)
    assert torch.equal(b.logprobs, b.sample_logprobs)  # really the sampler's
    torch.testing.assert_close(a.logprobs[m], b.logprobs[m], rtol=0, atol=1e-5)
    assert abs(a.entropy - b.entropy) < 1e-5
    # Step 0: the ratio of the policy's fresh log-probs to the reused old ones is 1.
    with torch.no_grad():
        fresh = rollout.forward_logprobs(build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval(),
                                         b.input_ids, b.attention_mask, b.n_prompt)
    ratio = torch.exp(fresh - b.logprobs)[m]
    assert float((ratio - 1).abs().max()) < 1e-4
    assert len(la) == len(lb) == 6
    for (pa, va), (pb, vb) in zip(la, lb):
        assert abs(pa - pb) < 1e-4 and abs(va - vb) < 1e-4


def test_fused_adamw_same_update_to_rounding():
    from instructrl.train_utils import make_optimizer

    tok = build_char_tokenizer()
    results = []
    for fused in (False, True):
        model = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0)
        opt = make_optimizer(model, 1e-3, 0.9, 0.95, weight_decay=0.1, fused=fused)
        assert bool(opt.defaults["fused"]) is fused
        ids = torch.randint(3, len(tok), (4, 20), generator=torch.Generator().manual_seed(0))
        for _ in range(5):
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(*results)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
def test_ppo_trainers_follow_fused_adamw(fused):
    from types import SimpleNamespace

    from instructrl import distributed, ppo

    tok = build_char_tokenizer()
    policy = build_gpt2(tok, n_layer=1, n_embd=16, n_head=2, n_positions=64, seed=0)
    value = GPT2ForSequenceClassification(policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1}))
    t = ppo.make_trainers(PPOConfig(fused_adamw=fused), SimpleNamespace(policy=policy, value=value),
                          SimpleNamespace(prompts=PROMPTS), distributed.setup(""), torch.device("cpu"))
    assert bool(t.opt_policy.defaults["fused"]) is fused and bool(t.opt_value.defaults["fused"]) is fused


def test_inverse_cdf_draws_the_same_distribution():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.5, 0.0]])
    n = 40000
    counts = torch.zeros_like(probs)
    for _ in range(n // 1000):
        x = rollout.draw(probs.repeat_interleave(1000, 0), g, "inverse_cdf").view(3, 1000)
        for r in range(3):
            counts[r] += torch.bincount(x[r], minlength=4)
    freq = counts / n
    assert bool((freq[probs == 0] == 0).all())  # a zero-probability token is never drawn
    torch.testing.assert_close(freq, probs, rtol=0, atol=0.01)  # 4 sigma at n = 40000 is ~0.01
    with pytest.raises(ValueError, match="unknown sampling"):
        rollout.draw(probs, g, "topk")


def test_sampling_switch_changes_tokens_not_log_probs(folder):
    path, tok = folder
    model, _ = load_policy(path)
    ids, mask = rollout.encode_prompts(tok, PROMPTS * 8)
    out = {}
    for method in ("multinomial", "inverse_cdf"):
        rollout.SAMPLING = method
        try:
            out[method] = rollout.sample(model, ids, mask, 12, tok.eos_token_id, tok.pad_token_id, 1.0,
                                         torch.Generator().manual_seed(3))
        finally:
            rollout.SAMPLING = "multinomial"
    s = out["inverse_cdf"]
    assert not torch.equal(s.response_ids, out["multinomial"].response_ids)
    with torch.no_grad():  # whatever was drawn, its log-prob is the model's
        lp = rollout.forward_logprobs(model, s.input_ids, s.attention_mask, ids.shape[1])
    torch.testing.assert_close(s.logprobs[s.response_mask], lp[s.response_mask], rtol=0, atol=1e-5)


def test_trim_padding_same_losses_gradients_to_rounding():
    from instructrl.ppo import trim_padding

    tok = build_char_tokenizer()
    prompts = ["Q: Reverse the word 'cat' and then sort its letters, please.\nA:"] + PROMPTS[1:]
    cfg = PPOConfig(batch_size=4, minibatch_size=2, max_new_tokens=16, warmup_updates=0)
    policy = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
    ref = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
    torch.manual_seed(1)
    vcfg = policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1})
    value, rm = GPT2ForSequenceClassification(vcfg).eval(), GPT2ForSequenceClassification(vcfg).eval()
    ro = compute_advantages(collect_rollout(policy, ref, value, rm, tok, prompts, cfg, torch.Generator().manual_seed(0)),
                            cfg, cfg.kl_coef)
    mb = slice_minibatch(ro, torch.tensor([1, 2]))  # without the long first prompt
    t = trim_padding(mb)
    assert t["input_ids"].shape[1] < mb["input_ids"].shape[1] and t["n_prompt"] < mb["n_prompt"]
    assert int(t["response_mask"].sum()) == int(mb["response_mask"].sum())
    params = list(policy.parameters()) + list(value.parameters())
    grads, losses = [], []
    for batch in (mb, t):
        for p in params:
            p.grad = None
        loss, stats = minibatch_loss(policy, value, batch, cfg)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([p.grad.flatten() for p in params]))
    assert abs(losses[0] - losses[1]) < 1e-6
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)
    whole = trim_padding(slice_minibatch(ro, torch.arange(4)))  # the longest prompt and response are kept
    assert whole["n_prompt"] == ro.n_prompt


def test_score_chunks_by_hand():
    from instructrl.ppo import score_chunks

    # Prompts left padded to P = 3, responses right padded to R = 3; real lengths 6, 2, 4, 3.
    attn = torch.tensor([[1, 1, 1, 1, 1, 1],
                         [0, 0, 1, 1, 0, 0],
                         [0, 1, 1, 1, 1, 0],
                         [0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    whole = score_chunks(attn, 3, 0)
    assert len(whole) == 1 and whole[0][0].tolist() == [0, 1, 2, 3] and whole[0][1:] == (0, 3)
    got = [(rows.tolist(), first, r) for rows, first, r in score_chunks(attn, 3, 2)]
    # Sorted by real length: rows 1 (2), 3 (3) | 2 (4), 0 (6); row 1 and 3 need columns 2..4.
    assert got == [([1, 3], 2, 2), ([2, 0], 0, 3)]
    assert [(r.tolist(), f, n) for r, f, n in score_chunks(attn, 3, 10)] == [([1, 3, 2, 0], 0, 3)]


def _models(tok):
    policy = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
    ref = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=1).eval()
    torch.manual_seed(1)
    vcfg = policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1})
    return policy, ref, GPT2ForSequenceClassification(vcfg).eval(), GPT2ForSequenceClassification(vcfg).eval()


@pytest.mark.parametrize("chunk", [1, 2, 3, 8])
def test_score_chunk_same_rollout_to_rounding(chunk):
    tok = build_char_tokenizer()
    prompts = ["Q: Reverse the word 'cat' and then sort its letters, please.\nA:"] + PROMPTS[1:] + ["Q: ok\nA:"]
    models_ = _models(tok)
    ros = []
    for c in (0, chunk):
        cfg = PPOConfig(batch_size=5, minibatch_size=5, max_new_tokens=16, warmup_updates=0, score_chunk=c)
        ros.append(collect_rollout(*models_, tok, prompts, cfg, torch.Generator().manual_seed(0)))
    a, b = ros
    m = a.response_mask
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(m, b.response_mask)
    assert int(m.sum()) > 10 and not bool(m.all())  # some response padding to trim
    for name in ("logprobs", "ref_logprobs", "values"):
        x, y = getattr(a, name), getattr(b, name)
        assert bool((x[m] != 0).all())  # every position that counts was really computed
        torch.testing.assert_close(x[m], y[m], rtol=0, atol=1e-5, msg=name)
        assert bool((y[~m] == 0).all())
    torch.testing.assert_close(a.scores_raw, b.scores_raw, rtol=0, atol=1e-5)
    assert abs(a.entropy - b.entropy) < 1e-5


def test_score_chunk_zero_is_the_whole_batch_bit_for_bit():
    tok = build_char_tokenizer()
    models_ = _models(tok)
    cfg = PPOConfig(batch_size=4, minibatch_size=4, max_new_tokens=12, warmup_updates=0, score_chunk=0,
                    reuse_sample_logprobs=False)
    ro = collect_rollout(*models_, tok, PROMPTS, cfg, torch.Generator().manual_seed(0))
    policy, ref, value, rm = models_
    P = ro.n_prompt
    with torch.no_grad():
        lp = rollout.forward_logprobs(policy, ro.input_ids, ro.attention_mask, P)
        v = models.token_scores(value, ro.input_ids, ro.attention_mask)[:, P - 1:-1]
    m = ro.response_mask
    assert torch.equal(ro.logprobs[m], lp[m]) and torch.equal(ro.values[m], v[m])


def test_kept_columns_by_hand():
    from instructrl.ppo import kept_columns
    T, F = True, False
    # prompt columns 0..3, real from column 2; response columns real up to index 2 -> keep [2, 4 + 3)
    assert kept_columns(torch.tensor([F, F, T, T]), torch.tensor([T, F, T, F, F])) == (2, 3)
    # no real prompt column: still keep the last one (its logits predict the first response token)
    assert kept_columns(torch.tensor([F, F, F]), torch.tensor([T, T])) == (2, 2)
    # no real response column: one column is kept so shapes stay non-empty
    assert kept_columns(torch.tensor([T, T]), torch.tensor([F, F, F])) == (0, 1)


@pytest.mark.parametrize("chunk,reuse", [(0, True), (2, False), (16, True)])
def test_side_by_side_scoring_same_rollout_to_rounding(chunk, reuse, monkeypatch):
    """PPOConfig.side_by_side_scoring: half of the row chunks scored in each of two threads (a
    whole-batch chunk split into two halves of its rows) give the same rollout as one chunk after
    another, to float rounding, with every row's values put back in its own place."""
    from instructrl import ppo

    calls, real = [], ppo.run_side_by_side
    monkeypatch.setattr(ppo, "run_side_by_side", lambda *fns: calls.append(len(fns)) or real(*fns))
    tok = build_char_tokenizer()
    prompts = ["Q: Reverse the word 'cat' and then sort its letters, please.\nA:"] + PROMPTS[1:] + ["Q: ok\nA:"]
    models_ = _models(tok)
    cfg = PPOConfig(batch_size=5, minibatch_size=5, max_new_tokens=16, warmup_updates=0, score_chunk=chunk,
                    reuse_sample_logprobs=reuse)
    a, b = (collect_rollout(*models_, tok, prompts, cfg, torch.Generator().manual_seed(0), score_side_by_side=sbs)
            for sbs in (False, True))
    assert calls == [2]  # the threaded path ran, once per rollout
    m = a.response_mask
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(m, b.response_mask)
    for name in ("logprobs", "ref_logprobs", "values"):
        x, y = getattr(a, name), getattr(b, name)
        assert bool((y[m] != 0).all()) and bool((y[~m] == 0).all()), name
        torch.testing.assert_close(x[m], y[m], rtol=0, atol=1e-5, msg=name)
    assert len(set(a.scores_raw.tolist())) == 5  # distinct scores, so a row put in another's place shows
    torch.testing.assert_close(a.scores_raw, b.scores_raw, rtol=0, atol=1e-5)
    assert abs(a.entropy - b.entropy) < 1e-5
    # Grad mode is per thread (a new one starts with it on): the threads' forwards build no graph either.
    seen = []
    ids = torch.ones(4, 6, dtype=torch.long)
    out = ppo._per_chunk([(torch.arange(4), 0, 3)], ids, ids, 3,
                         lambda rows, i, a, p: seen.append(torch.is_grad_enabled()) or {"x": rows.float()}, True)
    assert seen == [False, False] and out["x"].tolist() == [0, 1, 2, 3]


def test_side_by_side_allowed_only_where_threads_cannot_interfere():
    from types import SimpleNamespace

    from instructrl import lora, ppo

    tok = build_char_tokenizer()
    policy = build_gpt2(tok, n_layer=1, n_embd=16, n_head=2, n_positions=64, seed=0)
    local, distributed = SimpleNamespace(acc=None), SimpleNamespace(acc=object())
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ppo.side_by_side_allowed(local, "cpu", policy, None)
        assert not ppo.side_by_side_allowed(distributed, "cpu", policy)  # collectives in two threads
        assert not ppo.side_by_side_allowed(local, "cuda", policy)
        # A LoRA reference is the shared model with its adapter switched off for the forward.
        view = object.__new__(lora.ReferenceView)
        object.__setattr__(view, "adapter_view_of", policy)
        assert not ppo.side_by_side_allowed(local, "cpu", view)
        torch.set_num_threads(1)
        assert not ppo.side_by_side_allowed(local, "cpu", policy)  # one core: nothing to share
    finally:
        torch.set_num_threads(n)


def test_side_by_side_sampling_is_each_half_sampled_from_its_own_generator():
    """PPOConfig.side_by_side_sampling: each half of the rows sampled in its own thread from a
    generator drawn from the run's (rollout.split_generators) is exactly those two samplers run one
    after the other, put together by rollout.concat_samples; deterministic at a fixed seed."""
    from instructrl import ppo
    from instructrl.rollout import encode_prompts, sample, split_generators

    tok = build_char_tokenizer()
    policy = _models(tok)[0]
    prompts = ["Q: Reverse the word 'cat' and then sort its letters, please.\nA:"] + PROMPTS[1:] + ["Q: ok\nA:"]
    ids, mask = encode_prompts(tok, prompts)
    cfg = PPOConfig(batch_size=5, minibatch_size=5, max_new_tokens=12, warmup_updates=0)
    with torch.no_grad():
        got = ppo.sample_batch(policy, ids, mask, cfg, tok, torch.Generator().manual_seed(3), side_by_side=True)
        again = ppo.sample_batch(policy, ids, mask, cfg, tok, torch.Generator().manual_seed(3), side_by_side=True)
        ga, gb = split_generators(torch.Generator().manual_seed(3), 2)
        n = torch.get_num_threads()
        torch.set_num_threads(1)  # as each thread runs
        try:
            args = (cfg.max_new_tokens, tok.eos_token_id, tok.pad_token_id, cfg.temperature)
            a, b = sample(policy, ids[:3], mask[:3], *args, ga), sample(policy, ids[3:], mask[3:], *args, gb)
        finally:
            torch.set_num_threads(n)
    R = max(a.response_ids.shape[1], b.response_ids.shape[1])
    assert got.response_ids.shape == (5, R) and torch.equal(got.prompt_ids, ids)
    for part, rows in ((a, slice(0, 3)), (b, slice(3, 5))):
        r = part.response_ids.shape[1]
        assert torch.equal(got.response_ids[rows, :r], part.response_ids)
        assert torch.equal(got.response_mask[rows, :r], part.response_mask)
        assert torch.equal(got.logprobs[rows, :r], part.logprobs) and torch.equal(got.entropy[rows, :r], part.entropy)
        assert not got.response_mask[rows, r:].any() and bool((got.response_ids[rows, r:] == tok.pad_token_id).all())
        assert bool((got.logprobs[rows, r:] == 0).all()) and torch.equal(got.ended[rows], part.ended)
    for name in ("response_ids", "logprobs", "entropy", "ended"):
        assert torch.equal(getattr(got, name), getattr(again, name)), name
    # Other draws than one sampler over the whole batch at the same seed (the documented cost).
    with torch.no_grad():
        whole = ppo.sample_batch(policy, ids, mask, cfg, tok, torch.Generator().manual_seed(3))
    assert not torch.equal(whole.response_ids[:, :4], got.response_ids[:, :4])


def test_split_minibatch_halves_sum_to_the_whole_loss_and_gradient():
    """side_by_side_backward's halves: token-share (and window-share) weighted per-token means of
    the two halves of a minibatch sum to the whole minibatch's loss, and their gradients to its."""
    from instructrl import distributed, ppo

    tok = build_char_tokenizer()
    policy, ref, value, rm = _models(tok)
    prompts = ["Q: Reverse the word 'cat' and then sort its letters, please.\nA:"] + PROMPTS[1:] + ["Q: ok\nA:"]
    cfg = PPOConfig(batch_size=5, minibatch_size=5, max_new_tokens=16, warmup_updates=0, ptx_coef=3.0)
    ro = compute_advantages(collect_rollout(policy, ref, value, rm, tok, prompts, cfg,
                                            torch.Generator().manual_seed(0)), cfg, 0.02)
    with torch.no_grad():  # off the step-0 point, so that the ratio is not 1 and the clip acts
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mb = slice_minibatch(ro, torch.arange(5))
    ptx = torch.randint(0, 40, (3, 9), generator=torch.Generator().manual_seed(1))
    halves = ppo.split_minibatch(mb, ptx)
    assert [h[0]["input_ids"].shape[0] for h in halves] == [3, 2] and [len(h[1]) for h in halves] == [2, 1]
    assert sum(h[2] for h in halves) == pytest.approx(1.0) and sum(h[3] for h in halves) == pytest.approx(1.0)
    assert ppo.split_minibatch(slice_minibatch(ro, torch.arange(1)), None) is None

    def grads(fn):
        for m in (policy, value):
            m.zero_grad(set_to_none=True)
        total = fn()
        return total, [p.grad.clone() for p in list(policy.parameters()) + list(value.parameters())]

    dist = distributed.setup("")
    whole, g_whole = grads(lambda: _backward_sum(policy, value, mb, cfg, ptx))
    parts = []
    halved, g_halved = grads(lambda: sum(parts.append(ppo._half_backward(policy, value, cfg, dist, *h)) or parts[-1][0]
                                         for h in halves))
    torch.testing.assert_close(halved, whole, rtol=0, atol=1e-6)
    for a, b in zip(g_halved, g_whole):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    stats = ppo.merge_half_stats(parts, halves)
    _, full_stats = minibatch_loss(policy, value, mb, cfg, ptx)
    for k in ("policy_loss", "value_loss", "clipfrac", "approx_kl", "ratio_mean", "ratio_max", "ptx_loss"):
        torch.testing.assert_close(stats[k].float(), full_stats[k].float(), rtol=0, atol=1e-6, msg=k)


def _backward_sum(policy, value, mb, cfg, ptx):
    loss, _ = minibatch_loss(policy, value, mb, cfg, ptx)
    loss.backward()
    return loss.detach()
