"""The rollout optimizations (rollout.FAST: static KV cache + fused GPT-2 decode step) change no
numbers: same tokens and bit-identical log-probs as the generic transformers path, and the same
per-update PPO losses at a fixed seed."""

import pytest
import torch

from instructrl import fast_decode, rollout
from instructrl.config import PPOConfig
from instructrl.models import build_gpt2
from instructrl.tokenizer import build_char_tokenizer

PROMPTS = ["Q: Reverse the word 'cat'.\nA:", "Q: Add 2 and 3.\nA:", "Q: hi\nA:", "Q: Sort 3 1 2.\nA:"]


@pytest.fixture
def setup():
    tok = build_char_tokenizer()
    model = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
    return model, tok


@pytest.fixture(autouse=True)
def restore_flag():
    yield
    rollout.FAST = True


def _sample(model, tok, fast, n=20, temperature=1.0):
    rollout.FAST = fast
    ids, mask = rollout.encode_prompts(tok, PROMPTS)
    g = torch.Generator().manual_seed(3)
    return rollout.sample(model, ids, mask, n, tok.eos_token_id, tok.pad_token_id, temperature, g)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_fast_sampler_is_bit_identical(setup, temperature):
    model, tok = setup
    assert fast_decode.supports(model)
    a, b = _sample(model, tok, False, temperature=temperature), _sample(model, tok, True, temperature=temperature)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(a.response_mask, b.response_mask)
    assert torch.equal(a.logprobs, b.logprobs)


def test_unsupported_model_takes_generic_path(setup):
    model, tok = setup
    model.train()
    assert not fast_decode.supports(model)
    model.eval()


def test_ppo_losses_match_with_optimizations_off(setup):
    from instructrl.models import reward_model_from_causal_lm  # noqa: F401
    from instructrl.ppo import collect_rollout, compute_advantages, minibatch_loss, slice_minibatch
    from transformers import GPT2ForSequenceClassification

    model, tok = setup
    cfg = PPOConfig(batch_size=4, minibatch_size=2, max_new_tokens=12, warmup_updates=0)

    def run(fast):
        rollout.FAST = fast
        torch.manual_seed(0)
        policy = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
        ref = build_gpt2(tok, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0).eval()
        torch.manual_seed(1)
        vcfg = policy.config.__class__(**{**policy.config.to_dict(), "num_labels": 1})
        value = GPT2ForSequenceClassification(vcfg).eval()
        rm = GPT2ForSequenceClassification(vcfg).eval()
        opt = torch.optim.AdamW(list(policy.parameters()) + list(value.parameters()), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        out = []
        for _ in range(3):
            ro = compute_advantages(collect_rollout(policy, ref, value, rm, tok, PROMPTS, cfg, g), cfg, cfg.kl_coef)
            for j in range(2):
                loss, stats = minibatch_loss(policy, value, slice_minibatch(ro, torch.arange(2 * j, 2 * j + 2)), cfg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                out.append((float(stats["policy_loss"]), float(stats["value_loss"])))
        return out

    assert run(True) == run(False)
