"""PPO / PPO-ptx loop (instructrl.ppo) on tiny GPT-2 models built in code."""

from __future__ import annotations

import csv
import json
import logging
import math

import pytest
import torch
import yaml

from instructrl import losses as L
from instructrl import ppo
from instructrl.config import PPOConfig
from instructrl.data.stream import token_stream
from instructrl.errors import InstructRLError
from instructrl.models import (
    build_gpt2,
    load_policy,
    load_reward_model,
    reward_model_from_causal_lm,
    save_model_folder,
)
from instructrl.rollout import forward_logprobs
from instructrl.tokenizer import build_char_tokenizer

from tiny_hf import char_gpt2_folder, reward_folder, write_jsonl

PROMPTS = ["Q: say a.\nA:", "Q: hi\nA:", "Q: reverse 'ab'.\nA:", "Q: 1+1?\nA:", "Q: count\nA:", "Q: ok?\nA:"]


def _write_prompts(path, prompts):
    return write_jsonl(path, [{"prompt": p} for p in prompts])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny SFT folder, an RM folder made from it, a prompts file and pretraining text."""
    root = tmp_path_factory.mktemp("ppo")
    sft = char_gpt2_folder(root / "sft")
    rm_dir = reward_folder(sft, root / "rm", seed=1)
    prompts = _write_prompts(root / "prompts.jsonl", PROMPTS)
    ptx = root / "pretrain.txt"
    ptx.write_text("the cat sat on the mat.\n\nQ: what is 2+2?\nA: 4\n\nhello world, hello again.\n")
    return {"root": root, "sft": str(sft), "rm": str(rm_dir), "prompts": str(prompts), "ptx": str(ptx)}


def _models(folders):
    policy, tok = load_policy(folders["sft"])
    ref, _ = load_policy(folders["sft"])
    value, _ = load_reward_model(folders["rm"])
    rm, _ = load_reward_model(folders["rm"])
    return policy, ref, value, rm, tok


def _cfg(**kw):
    base = dict(total_episodes=32, batch_size=16, minibatch_size=8, max_new_tokens=8, lr=1e-3, value_lr=1e-3,
                warmup_updates=2, seed=0)
    base.update(kw)
    return PPOConfig(**base)


def _count_a(prompts, responses):
    """A known 'reward model': the number of 'a' characters in the response."""
    return torch.tensor([float(r.count("a")) for r in responses])


# ------------------------------------------------------------------------------ step-0 invariants


def test_step0_ratio_one_kl_zero_and_sampler_logprobs(folders):
    policy, ref, value, rm, tok = _models(folders)
    # The old log-probs recomputed by a forward (the default reuses the sampler's: test_ppo_speedups.py).
    cfg = _cfg(batch_size=8, minibatch_size=8, reuse_sample_logprobs=False)
    g = torch.Generator().manual_seed(0)
    ro = ppo.collect_rollout(policy, ref, value, rm, tok, PROMPTS[:4] * 2, cfg, g)
    mask = ro.response_mask
    assert mask.any(1).all()
    # Policy and reference are the same weights: identical log-probs, KL exactly 0.
    assert torch.equal(ro.logprobs, ro.ref_logprobs)
    ro = ppo.compute_advantages(ro, cfg, kl_coef=0.02)
    assert torch.equal(ro.kl, torch.zeros_like(ro.kl))
    # The KV-cache sampler's log-probs equal the full-forward log-probs on response tokens.
    assert torch.allclose(ro.sample_logprobs[mask], ro.logprobs[mask], atol=1e-5)
    # Recomputed at T = 1 through the same code path as training: the PPO ratio is exactly 1.
    again = forward_logprobs(policy, ro.input_ids, ro.attention_mask, ro.n_prompt, cfg.temperature)
    assert torch.equal(again[mask], ro.logprobs[mask])
    mb = ppo.slice_minibatch(ro, torch.arange(8))
    loss, stats = ppo.minibatch_loss(policy, value, mb, cfg)
    assert stats["ratio_mean"].item() == 1.0 and stats["ratio_max"].item() == 1.0
    assert stats["approx_kl"].item() == 0.0 and stats["clipfrac"].item() == 0.0
    # Values are read at the state before each response token (positions P-1 .. T-2).
    assert ro.values.shape == ro.logprobs.shape
    # Rewards: -β·KL (= 0 here) plus the RM score on the last real token.
    assert torch.allclose(ro.rewards.sum(1), ro.scores)


def test_sampling_temperature_consistency(folders):
    policy, ref, value, rm, tok = _models(folders)
    cfg = _cfg(temperature=0.7, reuse_sample_logprobs=False)
    ro = ppo.collect_rollout(policy, ref, value, rm, tok, PROMPTS[:4], cfg, torch.Generator().manual_seed(1))
    m = ro.response_mask
    assert torch.allclose(ro.sample_logprobs[m], ro.logprobs[m], atol=1e-5)
    assert torch.equal(ro.logprobs, ro.ref_logprobs)


# ------------------------------------------------------------------------------ PPO-ptx gradient


def test_ptx_gradient_is_ppo_plus_gamma_nll(folders):
    policy, ref, value, rm, tok = _models(folders)
    gamma = 3.5
    cfg = _cfg(batch_size=8, minibatch_size=8, ptx_coef=gamma)
    ro = ppo.collect_rollout(policy, ref, value, rm, tok, PROMPTS[:4] * 2, cfg, torch.Generator().manual_seed(0))
    ro = ppo.compute_advantages(ro, cfg, 0.02)
    # Move the policy a little so that the ratio is not 1 and the clip is exercised.
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mb = ppo.slice_minibatch(ro, torch.arange(8))
    stream = token_stream(tok, ["the cat sat on the mat.", "hello world"])
    ptx_ids = ppo.ptx_windows(stream, 3, 12, torch.Generator().manual_seed(0))
    assert ptx_ids.shape == (3, 13)
    params = list(policy.parameters())

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    total, stats = ppo.minibatch_loss(policy, value, mb, cfg, ptx_ids)
    g_total = grads(total)
    plain, _ = ppo.minibatch_loss(policy, value, mb, _cfg(batch_size=8, minibatch_size=8), None)
    g_ppo = grads(plain)
    logits = policy(input_ids=ptx_ids[:, :-1]).logits
    nll = L.ptx_loss(logits, ptx_ids[:, 1:], torch.ones_like(ptx_ids[:, 1:], dtype=torch.bool))
    g_nll = grads(nll)
    assert stats["ptx_loss"].item() == pytest.approx(nll.item(), rel=1e-6)
    for gt, gp, gn in zip(g_total, g_ppo, g_nll):
        gp = torch.zeros_like(gt) if gp is None else gp
        gn = torch.zeros_like(gt) if gn is None else gn
        assert torch.allclose(gt, gp + gamma * gn, atol=1e-6, rtol=1e-4)
    # The ptx term really contributes (the test is not vacuous).
    assert max((gn.abs().max().item() for gn in g_nll if gn is not None)) > 0


# ------------------------------------------------------------------------------ small runs


def _read_log(out):
    with open(out / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_learns_known_reward_and_kl_grows(folders, tmp_path):
    out = tmp_path / "ppo"
    n = 20
    cfg = _cfg(total_episodes=32 * n, batch_size=32, minibatch_size=16, lr=1e-2, value_lr=1e-2,
               kl_coef=0.01, warmup_updates=3)
    metrics = ppo.train_ppo(cfg, folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a,
                      gold_fn=lambda p, r: float(r.startswith("a")))
    rows = _read_log(out)
    assert len(rows) == n
    assert list(rows[0].keys()) == ppo.LOG_COLUMNS
    first = sum(float(r["score"]) for r in rows[:5]) / 5
    last = sum(float(r["score"]) for r in rows[-5:]) / 5
    # A random policy writes 'a' about once in 100 characters; after training, most of the time.
    assert last > first + 1.0 and last > 4 * first, (first, last)
    assert float(rows[0]["kl"]) == 0.0
    assert float(rows[-1]["kl"]) > 0.5
    assert rows[0]["gold"] != ""
    assert metrics["updates"] == n and metrics["episodes"] == 32 * n
    assert metrics["stopped"] is None
    # Plain transformers loads the outputs.
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    AutoModelForCausalLM.from_pretrained(out)
    vm = AutoModelForSequenceClassification.from_pretrained(out / "value_model")
    assert vm.config.num_labels == 1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["updates"] == n and "time_s" in saved
    assert (out / "config.yaml").exists()


def test_ptx_adaptive_kl_ema_run(folders, tmp_path):
    out = tmp_path / "ptx"
    cfg = _cfg(total_episodes=48, ptx_coef=1.0, ptx_batch_size=2, ptx_seq_len=32, adaptive_kl=True,
               kl_target=0.01, kl_horizon=100, ema_decay=0.5)
    m = ppo.train_ppo(cfg, folders["sft"], folders["rm"], folders["prompts"], str(out), ptx_data=folders["ptx"])
    rows = _read_log(out)
    assert all(r["ptx_loss"] != "" and math.isfinite(float(r["ptx_loss"])) for r in rows)
    coefs = [float(r["kl_coef"]) for r in rows]
    assert coefs[0] == pytest.approx(0.02) and coefs[-1] != coefs[0]
    assert m["updates"] == 3
    # The saved policy is the EMA of the weights, not the last iterate; no checkpoint is left behind.
    assert not (tmp_path / "ptx.checkpoint").exists() and not (out / "checkpoint").exists()
    saved, _ = load_policy(out)
    sft, _ = load_policy(folders["sft"])
    assert any(not torch.equal(a, b) for a, b in zip(saved.parameters(), sft.parameters()))


def test_immediate_eos_responses(folders, tmp_path):
    """A policy whose every response is just EOS (empty text) runs without trouble."""
    tok = build_char_tokenizer()
    model = build_gpt2(tok, n_layer=1, n_embd=16, n_head=2, n_positions=128, seed=0)
    with torch.no_grad():
        u = torch.zeros(16)
        u[0] = 1.0
        model.transformer.wte.weight[tok.eos_token_id] = 10 * u
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(10 * u)
    sft = save_model_folder(model, tok, tmp_path / "eos_sft")
    rm, _ = reward_model_from_causal_lm(sft)
    rm_dir = save_model_folder(rm, tok, tmp_path / "eos_rm")
    seen = []

    def score(prompts, responses):
        seen.extend(responses)
        return torch.zeros(len(responses))

    out = tmp_path / "eos_out"
    m = ppo.train_ppo(_cfg(eos_penalty=-1.0), str(sft), str(rm_dir), folders["prompts"], str(out), score_fn=score)
    assert seen and all(r == "" for r in seen)
    rows = _read_log(out)
    assert float(rows[0]["response_length"]) == 1.0 and float(rows[0]["eos_fraction"]) == 1.0
    assert m["updates"] == 2


def test_eos_penalty_applied(folders):
    policy, ref, value, rm, tok = _models(folders)
    cfg = _cfg(eos_penalty=-1.0, max_new_tokens=3)
    ro = ppo.collect_rollout(policy, ref, value, rm, tok, PROMPTS, cfg, torch.Generator().manual_seed(0),
                             score_fn=lambda p, r: torch.full((len(r),), 0.5))
    assert torch.equal(ro.scores, torch.where(ro.ended, torch.tensor(0.5), torch.tensor(-1.0)))


def test_too_long_prompt_skipped_with_message(folders, tmp_path, caplog):
    prompts = _write_prompts(tmp_path / "p.jsonl", ["x" * 125 + "\nA:", *PROMPTS[:2]])
    with caplog.at_level(logging.WARNING, logger="instructrl.ppo"):
        m = ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], str(prompts), str(tmp_path / "o"),
                    score_fn=_count_a)
    assert "longer than 120 tokens" in caplog.text and "line 1" in caplog.text
    assert m["updates"] == 2
    only_long = _write_prompts(tmp_path / "q.jsonl", ["y" * 200])
    with pytest.raises(InstructRLError, match="no usable prompt"):
        ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], str(only_long), str(tmp_path / "o2"), score_fn=_count_a)


def test_nan_scores_dropped_and_all_nan_stops(folders, tmp_path, caplog):
    def half_nan(prompts, responses):
        s = torch.zeros(len(responses))
        s[::2] = float("nan")
        return s

    with caplog.at_level(logging.WARNING, logger="instructrl.ppo"):
        m = ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], str(tmp_path / "half"),
                    score_fn=half_nan)
    assert "8 of 16 reward scores are NaN/inf" in caplog.text
    assert m["updates"] == 2 and m["bad_scores"] == 8 and m["stopped"] is None
    assert math.isfinite(m["policy_loss"])

    caplog.clear()
    out = tmp_path / "allnan"
    with caplog.at_level(logging.WARNING):
        m = ppo.train_ppo(_cfg(total_episodes=16 * 10), folders["sft"], folders["rm"], folders["prompts"], str(out),
                    score_fn=lambda p, r: torch.full((len(r),), float("nan")))
    assert "the update is skipped" in caplog.text
    assert m["updates"] == 5 and "consecutive" in m["stopped"]  # max_bad_steps (default 5) all-NaN batches
    # Nothing was learned from NaN: the saved policy is the SFT policy, and it loads.
    saved, _ = load_policy(out)
    sft, _ = load_policy(folders["sft"])
    assert all(torch.equal(a, b) for a, b in zip(saved.parameters(), sft.parameters()))


def test_max_kl_stop(folders, tmp_path):
    m = ppo.train_ppo(_cfg(total_episodes=16 * 6, lr=3e-2, max_kl=0.0), folders["sft"], folders["rm"],
                folders["prompts"], str(tmp_path / "o"), score_fn=_count_a)
    assert m["stopped"] and "max_kl" in m["stopped"] and m["updates"] == 2


def test_resume_matches_uninterrupted(folders, tmp_path, monkeypatch):
    cfg4 = _cfg(total_episodes=16 * 4, checkpoint_every=2)
    full = tmp_path / "full"
    ppo.train_ppo(cfg4, folders["sft"], folders["rm"], folders["prompts"], str(full), score_fn=_count_a)
    part = tmp_path / "part"
    real = ppo.collect_rollout
    monkeypatch.setattr(ppo, "collect_rollout", _interrupt_after(real, 2))  # during update 3, after the checkpoint at 2
    with pytest.raises(KeyboardInterrupt):
        ppo.train_ppo(cfg4, folders["sft"], folders["rm"], folders["prompts"], str(part), score_fn=_count_a)
    monkeypatch.setattr(ppo, "collect_rollout", real)
    assert not part.exists() and (tmp_path / "part.checkpoint" / "state.json").exists()
    ppo.train_ppo(cfg4, folders["sft"], folders["rm"], folders["prompts"], str(part), score_fn=_count_a, resume=True)
    assert [r["update"] for r in _read_log(part)] == ["1", "2", "3", "4"]
    a, _ = load_policy(full)
    b, _ = load_policy(part)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert _read_log(full)[-1]["score"] == _read_log(part)[-1]["score"]
    assert not (tmp_path / "part.checkpoint").exists()


def test_changed_input_refuses_resume_and_says_what_changed(folders, tmp_path, monkeypatch):
    prompts = _write_prompts(tmp_path / "p.jsonl", PROMPTS)
    cfg = _cfg(total_episodes=16 * 4, checkpoint_every=1)
    monkeypatch.setattr(ppo, "compute_advantages", _interrupt_after(ppo.compute_advantages, 2))
    with pytest.raises(KeyboardInterrupt):
        ppo.train_ppo(cfg, folders["sft"], folders["rm"], str(prompts), str(tmp_path / "o"), score_fn=_count_a)
    _write_prompts(prompts, PROMPTS[::-1])  # the same file name, other contents
    with pytest.raises(InstructRLError, match=r"different ppo run \(input prompts \(contents changed\)\)"):
        ppo.train_ppo(cfg, folders["sft"], folders["rm"], str(prompts), str(tmp_path / "o"), score_fn=_count_a,
                      resume=True)
    with pytest.raises(InstructRLError, match=r"lr 0.001 -> 0.002"):
        ppo.train_ppo(_cfg(total_episodes=16 * 4, checkpoint_every=1, lr=2e-3), folders["sft"], folders["rm"],
                      str(prompts), str(tmp_path / "o"), score_fn=_count_a, resume=True)


def _interrupt_after(real, n):
    calls = {"n": 0}

    def f(*a, **k):
        calls["n"] += 1
        if calls["n"] > n:
            raise KeyboardInterrupt
        return real(*a, **k)

    return f


def test_output_folder_guards(folders, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "something.txt").write_text("x")
    with pytest.raises(InstructRLError, match="overwrite"):
        ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a)
    ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a, overwrite=True)
    assert not (out / "something.txt").exists() and (out / "config.json").exists()
    # A finished output is replaced only with overwrite, even by the same run.
    with pytest.raises(InstructRLError, match="already holds a finished ppo run with these same settings"):
        ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a)
    with pytest.raises(InstructRLError, match="overwrite"):
        ppo.train_ppo(_cfg(seed=1), folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a)
    with pytest.raises(InstructRLError, match="overwrite the input"):
        ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], folders["sft"], overwrite=True)
    with pytest.raises(InstructRLError, match="nothing to resume"):
        ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], str(tmp_path / "new"), resume=True)


def test_a_failing_rerun_keeps_the_finished_output(folders, tmp_path, monkeypatch):
    """[issue 17] PPO used to delete a finished output right after loading its inputs: a crash (or a
    kill) then left only config.yaml, log.csv and run.json. The old output is replaced only at the end."""
    out = tmp_path / "done"
    ppo.train_ppo(_cfg(), folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(ppo, "compute_advantages", _interrupt_after(ppo.compute_advantages, 1))
    with pytest.raises(KeyboardInterrupt):
        ppo.train_ppo(_cfg(seed=3), folders["sft"], folders["rm"], folders["prompts"], str(out), score_fn=_count_a,
                      overwrite=True)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]  # no staging folder left either


def test_nonfinite_loss_steps_skipped_and_stop_keeps_last_good(folders, tmp_path, monkeypatch, caplog):
    real = ppo.policy_minibatch_loss  # the loop's first loss of a step (then the value model's)
    calls = {"n": 0}

    def flaky(*a, **k):  # the first update's two steps are fine, every later loss is NaN
        loss, stats = real(*a, **k)
        calls["n"] += 1
        return (loss if calls["n"] <= 2 else loss * float("nan")), stats

    monkeypatch.setattr(ppo, "policy_minibatch_loss", flaky)
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING):
        m = ppo.train_ppo(_cfg(total_episodes=16 * 10, checkpoint_every=1), folders["sft"], folders["rm"],
                          folders["prompts"], str(out), score_fn=_count_a)
    assert "non-finite loss" in caplog.text
    assert "consecutive" in m["stopped"] and m["updates"] == 4  # update 1 good; then 2 + 2 + 1 bad steps
    rows = _read_log(out)
    assert [r["skipped_steps"] for r in rows] == ["0", "2", "2", "1"]
    # The last good weights (those after update 1) are saved: a 1-update run gives the same ones.
    monkeypatch.setattr(ppo, "policy_minibatch_loss", real)
    ppo.train_ppo(_cfg(total_episodes=16), folders["sft"], folders["rm"], folders["prompts"], str(tmp_path / "one"),
                  score_fn=_count_a)
    saved, _ = load_policy(out)
    one, _ = load_policy(tmp_path / "one")
    for (n, p), q in zip(saved.named_parameters(), one.parameters()):
        assert torch.equal(p, q), n


def test_two_backward_passes_give_the_gradients_of_one(folders):
    """The loop's policy-then-value backward passes equal one backward of minibatch_loss (bitwise)."""
    cfg = _cfg(batch_size=4, minibatch_size=4, ptx_coef=0.5)
    policy, tok = load_policy(folders["sft"])
    ref, _ = load_policy(folders["sft"])
    value, _ = load_reward_model(folders["rm"])
    rm_model, _ = load_reward_model(folders["rm"])
    ro = ppo.compute_advantages(ppo.collect_rollout(policy, ref, value, rm_model, tok, PROMPTS[:4], cfg,
                                                    torch.Generator().manual_seed(0)), cfg, cfg.kl_coef)
    mb = ppo.slice_minibatch(ro, torch.arange(4))
    ptx = torch.randint(3, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    loss, _ = ppo.minibatch_loss(policy, value, mb, cfg, ptx)
    loss.backward()
    one = [p.grad.clone() for p in list(policy.parameters()) + list(value.parameters())]
    policy.zero_grad(set_to_none=True)
    value.zero_grad(set_to_none=True)
    ppo.policy_minibatch_loss(policy, mb, cfg, ptx)[0].backward()
    ppo.value_minibatch_loss(value, mb, cfg)[0].backward()
    two = [p.grad for p in list(policy.parameters()) + list(value.parameters())]
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_bf16_mixed_precision_holds_the_frozen_models_in_bf16(folders, tmp_path, monkeypatch):
    pytest.importorskip("accelerate")
    dtypes = []
    real_policy, real_rm = ppo.load_policy, ppo.load_reward_model

    def spy_policy(path, *a, **k):
        dtypes.append(("policy", k.get("dtype")))
        return real_policy(path, *a, **k)

    def spy_rm(path, *a, **k):
        dtypes.append(("rm", k.get("dtype")))
        return real_rm(path, *a, **k)

    monkeypatch.setattr(ppo, "load_policy", spy_policy)
    monkeypatch.setattr(ppo, "load_reward_model", spy_rm)
    m = ppo.train_ppo(_cfg(total_episodes=16, mixed_precision="bf16"), folders["sft"], folders["rm"],
                      folders["prompts"], str(tmp_path / "o"), progress=False)
    assert m["updates"] == 1 and math.isfinite(m["kl"])
    # the trained policy and value model stay fp32 (autocast computes in bf16); the reference and RM are bf16
    assert dtypes == [("policy", None), ("policy", torch.bfloat16), ("rm", None), ("rm", torch.bfloat16)]
    # the sampler's bf16 log-probs are not reused as the old ones: the resolved config says so
    saved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert PPOConfig().reuse_sample_logprobs and saved["reuse_sample_logprobs"] is False


# ------------------------------------------------------------------------------ issue 19 (math audit)


def test_truncated_response_scores_the_same_in_ppo_and_evaluation(folders):
    """One rule: the RM reads its score at an EOS appended to prompt + response, whether the
    response emitted EOS or was cut off at max_new_tokens — in PPO's rollout and in evaluation."""
    from instructrl import evaluate
    from instructrl.models import sequence_scores

    policy, ref, value, rm, tok = _models(folders)
    cfg = _cfg(max_new_tokens=4)  # short: most rows are cut off
    prompts = PROMPTS * 2
    ro = ppo.collect_rollout(policy, ref, value, rm, tok, prompts, cfg, torch.Generator().manual_seed(3))
    assert (~ro.ended).any()
    evaluated = evaluate.rm_scores(rm, tok, prompts, ro.responses)
    checked = 0
    for i, r in enumerate(ro.responses):
        resp = ro.input_ids[i, ro.n_prompt:][ro.response_mask[i]].tolist()
        if ro.ended[i]:
            resp = resp[:-1]
        if tok(r, add_special_tokens=False)["input_ids"] != resp:
            continue  # a sampled special token does not survive decoding: not the same text
        assert ro.scores_raw[i].item() == pytest.approx(evaluated[i].item(), abs=1e-5), (i, r)
        checked += not bool(ro.ended[i])
    assert checked > 0  # truncated rows were compared
    # The old PPO rule (score at the last sampled token) differs for a truncated row.
    i = int((~ro.ended).nonzero()[0])
    at_last = sequence_scores(rm, ro.input_ids[i:i + 1], ro.attention_mask[i:i + 1])
    assert at_last.item() != pytest.approx(ro.scores_raw[i].item(), abs=1e-6)


def test_first_update_runs_at_a_tenth_of_the_lr(folders, tmp_path):
    assert [ppo.warmup_scale(u, 10) for u in (0, 1, 9, 10, 50)] == pytest.approx([0.1, 0.19, 0.91, 1.0, 1.0])
    assert ppo.warmup_scale(0, 0) == 1.0
    out = tmp_path / "warm"
    ppo.train_ppo(_cfg(total_episodes=16 * 4, lr=1e-3, value_lr=2e-3, warmup_updates=2), folders["sft"], folders["rm"],
            folders["prompts"], str(out), score_fn=_count_a)
    rows = _read_log(out)
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 5.5e-4, 1e-3, 1e-3])
    assert float(rows[0]["value_lr"]) == pytest.approx(2e-4)


def test_ema_saves_the_average_of_the_weights(folders, tmp_path):
    """ema_decay d: the saved policy is d^n·θ_0 + Σ (1-d)·d^(n-k)·θ_k over the n updates' weights."""
    seen = []
    real_update = ppo.WeightEMA.update

    def spy(self, model):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        real_update(self, model)

    sft, _ = load_policy(folders["sft"])
    expected = {n: p.detach().clone() for n, p in sft.named_parameters()}
    d = 0.5
    import unittest.mock as mock

    with mock.patch.object(ppo.WeightEMA, "update", spy):
        ppo.train_ppo(_cfg(total_episodes=16 * 3, ema_decay=d), folders["sft"], folders["rm"], folders["prompts"],
                str(tmp_path / "ema"), score_fn=_count_a)
    assert len(seen) == 3
    for w in seen:
        for n in expected:
            expected[n] = d * expected[n] + (1 - d) * w[n]
    saved, _ = load_policy(tmp_path / "ema")
    for n, p in saved.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6), n


# ------------------------------------------------------------------------------ issue 18 (inter-op)


def test_run_side_by_side_returns_in_order_raises_and_restores_threads():
    n = torch.get_num_threads()
    seen = []

    def threads():
        seen.append(torch.get_num_threads())
        return len(seen)

    assert sorted(ppo.run_side_by_side(threads, threads)) == [1, 2] and seen == [1, 1]
    assert ppo.run_side_by_side(lambda: "a", lambda: "b") == ["a", "b"]
    with pytest.raises(ZeroDivisionError):
        ppo.run_side_by_side(lambda: 1, lambda: 1 / 0)
    assert torch.get_num_threads() == n


@pytest.mark.parametrize("switch,ptx,n_calls", [("side_by_side_backward", False, 4),
                                               ("side_by_side_backward", True, 4),
                                               ("side_by_side_scoring", False, 2)])
def test_side_by_side_trains_the_same_to_rounding(folders, tmp_path, monkeypatch, switch, ptx, n_calls):
    """PPOConfig.side_by_side_backward (each half of a minibatch's rows and pretraining windows
    through both models at once in two threads) and side_by_side_scoring (a rollout's row chunks scored half in each of two threads)
    give the same per-update losses and weights as one after the other, to float rounding."""
    from safetensors.torch import load_file

    calls, real = [], ppo.run_side_by_side
    monkeypatch.setattr(ppo, "run_side_by_side", lambda *fns: calls.append(len(fns)) or real(*fns))
    n = torch.get_num_threads()
    torch.set_num_threads(2)  # the switch needs >= 2 intra-op threads to act
    try:
        rows, weights = {}, {}
        extra = {"ptx_coef": 2.0, "ptx_batch_size": 3} if ptx else {}  # an odd number of windows to halve
        for sbs in (False, True):
            out = tmp_path / f"sbs_{sbs}"
            ppo.train_ppo(_cfg(**{switch: sbs}, **extra), folders["sft"], folders["rm"],
                          folders["prompts"], str(out), ptx_data=folders["ptx"] if ptx else None, progress=False)
            with open(out / "log.csv") as fh:
                rows[sbs] = list(csv.DictReader(fh))
            weights[sbs] = (load_file(str(out / "model.safetensors")),
                            load_file(str(out / "value_model" / "model.safetensors")))
    finally:
        torch.set_num_threads(n)
    assert len(rows[False]) == len(rows[True]) == 2
    for a, b in zip(rows[False], rows[True]):
        for k in ("policy_loss", "value_loss", "kl", "score", "clipfrac", "approx_kl") + (("ptx_loss",) if ptx else ()):
            assert abs(float(a[k]) - float(b[k])) < 1e-4, k
    for wa, wb in zip(weights[False], weights[True]):
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-4, msg=k)
    # The switch's path ran: per minibatch (32 episodes / 16 per batch x 2 minibatches) or per rollout.
    assert calls == [2] * n_calls


def test_side_by_side_sampling_trains_deterministically(folders, tmp_path, monkeypatch):
    """PPOConfig.side_by_side_sampling in a whole run: the threaded sampler acts once per rollout
    and two runs at the same seed write the same log and weights (other draws than the default)."""
    from safetensors.torch import load_file

    calls, real = [], ppo.run_side_by_side
    monkeypatch.setattr(ppo, "run_side_by_side", lambda *fns: calls.append(len(fns)) or real(*fns))
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        logs, weights = [], []
        for i in range(2):
            out = tmp_path / f"run{i}"
            ppo.train_ppo(_cfg(side_by_side_sampling=True), folders["sft"], folders["rm"], folders["prompts"],
                          str(out), progress=False)
            logs.append([{k: v for k, v in r.items() if not k.startswith("time")}
                         for r in csv.DictReader(open(out / "log.csv"))])
            weights.append(load_file(str(out / "model.safetensors")))
    finally:
        torch.set_num_threads(n)
    assert calls == [2] * 4  # 2 updates per run
    assert logs[0] == logs[1] and len(logs[0]) == 2
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_side_by_side_switch_that_cannot_act_is_logged(folders, tmp_path, caplog):
    """On one intra-op thread the side-by-side switches do nothing; the run says so instead of
    silently ignoring what the config asked for."""
    import logging

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with caplog.at_level(logging.INFO, logger="instructrl.ppo"):
            ppo.train_ppo(_cfg(total_episodes=16, side_by_side_backward=True, side_by_side_sampling=True),
                          folders["sft"], folders["rm"], folders["prompts"], str(tmp_path / "out"), progress=False)
    finally:
        torch.set_num_threads(n)
    said = [r.getMessage() for r in caplog.records if "is ignored here" in r.getMessage()]
    assert [m.split()[1] for m in said] == ["side_by_side_sampling", "side_by_side_backward"]
