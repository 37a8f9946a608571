"""LoRA through peft: every stage, reference = adapter disabled, merged / unmerged outputs."""

from __future__ import annotations

import sys

import pytest
import torch

from instructrl import lora, ppo, rm, sft
from instructrl.config import PPOConfig, RMConfig, SFTConfig
from instructrl.data import render
from instructrl.data.collate import encode_prompt_response
from instructrl.errors import ConfigError
from instructrl.models import load_policy, load_reward_model
from instructrl.rollout import encode_prompts, forward_logprobs, sample

from tiny_hf import DEMOS, PROMPTS, RANKINGS, make_model_folder, write_jsonl

peft = pytest.importorskip("peft")

LORA = dict(lora_r=4, lora_alpha=8.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return {
        "llama": make_model_folder("llama", root),
        "gpt2": make_model_folder("gpt2", root),
        "demos": str(write_jsonl(root / "demos.jsonl", DEMOS)),
        "rankings": str(write_jsonl(root / "rankings.jsonl", RANKINGS)),
        "prompts": str(write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])),
    }


def _demo_seqs(tok):
    fmt = render.resolve(tok)  # as the stages render them (auto: these tokenizers have no chat template)
    return [encode_prompt_response(tok, d["prompt"], d["response"], 64, fmt=fmt)["input_ids"] for d in DEMOS]


def test_missing_peft_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match="pip install 'instructrl\\[lora\\]'"):
        lora.require_peft()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("merge", [True, False])
def test_sft_and_rm_with_lora_save_merged_or_adapter(files, tmp_path, arch, merge):
    from transformers import AutoModelForCausalLM

    base = files[arch]
    cfg = SFTConfig(epochs=2, batch_size=2, lr=1e-2, max_len=64, lora_merge=merge, **LORA)
    sft.train_sft(cfg, str(base), files["demos"], str(tmp_path / "sft"))
    out = tmp_path / "sft"
    if merge:  # a plain transformers folder whose weights moved
        assert not (out / "adapter_config.json").exists()
        model = AutoModelForCausalLM.from_pretrained(out)
        before = AutoModelForCausalLM.from_pretrained(base)
        b = dict(before.named_parameters())
        changed = [n for n, p in model.named_parameters() if p.shape == b[n].shape and not torch.equal(p, b[n])]
        assert changed
    else:  # an adapter folder: peft loads it on its base, our loader merges it
        assert (out / "adapter_config.json").exists() and not (out / "config.json").exists()
        pm = peft.AutoPeftModelForCausalLM.from_pretrained(out)
        ours, tok = load_policy(out)
        ids = torch.tensor([_demo_seqs(tok)[0]])
        with torch.no_grad():
            a = pm(input_ids=ids).logits
            c = ours(input_ids=ids).logits
        assert torch.allclose(a, c, atol=1e-4)
        # An RM trained from the adapter folder is saved merged (an adapter on an adapter would not load).
        rm.train_reward_model(RMConfig(batch_size=2, max_len=64, val_fraction=0.25, lora_merge=False, **LORA), str(out),
               files["rankings"], str(tmp_path / "rm_on_adapter"), verbose=False)
        assert (tmp_path / "rm_on_adapter" / "config.json").exists()

    # An RM adapter needs a full base folder: from the merged SFT output, or from the base model.
    r = rm.train_reward_model(RMConfig(batch_size=2, max_len=64, val_fraction=0.25, lr=1e-2, lora_merge=merge, **LORA),
               str(out if merge else base), files["rankings"], str(tmp_path / "rm"), demonstrations=files["demos"], verbose=False)
    assert abs(r["demo_score_mean"]) < 1e-3
    assert (tmp_path / "rm" / "adapter_config.json").exists() == (not merge)
    rm_model, tok = load_reward_model(tmp_path / "rm")  # merged folder or adapter folder
    assert abs(float(rm.score_sequences(rm_model, _demo_seqs(tok), tok.pad_token_id).mean())) < 1e-3


def test_reference_is_the_policy_with_its_adapter_off(files):
    """The KL reference under LoRA: the same weights, adapter disabled, equals the SFT model."""
    sft_model, tok = load_policy(files["llama"])
    policy, _ = load_policy(files["llama"])
    policy = lora.prepare(policy, PPOConfig(**LORA), files["llama"])
    with torch.no_grad():  # a trained adapter: the policy now differs from the SFT model
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    ref = lora.ReferenceView(policy)
    assert sum(1 for _ in ref.parameters()) == sum(1 for _ in policy.parameters())  # views, not copies
    ids, mask = encode_prompts(tok, PROMPTS)
    s = sample(sft_model, ids, mask, 6, tok.eos_token_id, tok.pad_token_id, temperature=1.0,
               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lp_sft = forward_logprobs(sft_model, s.input_ids, s.attention_mask, ids.shape[1])
        lp_ref = forward_logprobs(ref, s.input_ids, s.attention_mask, ids.shape[1])
        lp_pol = forward_logprobs(policy, s.input_ids, s.attention_mask, ids.shape[1])
    m = s.response_mask
    assert torch.allclose(lp_ref[m], lp_sft[m], atol=1e-5)
    assert not torch.allclose(lp_pol[m], lp_sft[m], atol=1e-3)


def test_ppo_with_lora_loads_the_policy_once(files, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base = files["llama"]
    r = tmp_path / "rm"
    rm.train_reward_model(RMConfig(batch_size=2, max_len=64, val_fraction=0.25), str(base), files["rankings"], str(r), verbose=False)
    calls = []
    real = ppo.load_policy
    monkeypatch.setattr(ppo, "load_policy", lambda *a, **k: calls.append(a) or real(*a, **k))
    m = ppo.train_ppo(PPOConfig(total_episodes=8, batch_size=4, minibatch_size=2, max_new_tokens=6, warmup_updates=1,
                          lr=1e-2, value_lr=1e-2, **LORA),
                str(base), str(r), files["prompts"], str(tmp_path / "ppo"), progress=False)
    assert len(calls) == 1  # no second copy of the policy for the reference
    assert m["updates"] == 2 and m["kl"] is not None
    AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")  # merged: plain transformers
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "ppo" / "value_model")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_lora_ema_averages_the_merged_weights(files, arch):
    """With LoRA, the EMA is over the merged deltas B·A·scale, so the saved weights are exactly the
    EMA of the merged weights (averaging A and B separately is not: EMA(B)·EMA(A) ≠ EMA(B·A))."""
    policy, _ = load_policy(files[arch])
    policy = lora.prepare(policy, PPOConfig(**LORA), files[arch])
    lora_params = [p for n, p in policy.named_parameters() if "lora_" in n]
    merged_states = []

    def merged_now():
        import copy

        return {n: p.detach().clone() for n, p in copy.deepcopy(policy).merge_and_unload().named_parameters()}

    merged_states.append(merged_now())
    d = 0.6
    ema = ppo.WeightEMA(policy, d)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # three "updates" that move A and B
        with torch.no_grad():
            for p in lora_params:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        ema.update(policy)
        merged_states.append(merged_now())
    expected = dict(merged_states[0])
    for st in merged_states[1:]:
        expected = {n: d * expected[n] + (1 - d) * st[n] for n in expected}
    saved = ema.apply_to(policy)
    for n, p in saved.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-5), n
    # Averaging A and B one by one gives something else (the reason for the merged-delta EMA).
    assert any(not torch.allclose(merged_states[-1][n], expected[n], atol=1e-3) for n in expected)


def test_lora_ema_with_an_unmerged_adapter_is_refused():
    from instructrl.config import apply_overrides

    with pytest.raises(ConfigError, match="lora_merge"):
        apply_overrides(PPOConfig(), ["lora_r=4", "ema_decay=0.9", "lora_merge=false"])
