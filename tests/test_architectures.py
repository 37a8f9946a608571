"""SFT, RM and PPO on tiny random-init GPT-2, Llama, Qwen2 and GPT-NeoX folders loaded by path.

The folders (tests/tiny_hf.py) carry their own tokenizers: byte-level BPE or Metaspace, some
without a pad token (the loader adds one and grows the embedding), one with a chat template.
"""

from __future__ import annotations

import json

import pytest
import torch

from instructrl import ppo, rm, sft
from instructrl.config import PPOConfig, RMConfig, SFTConfig
from instructrl.data import render
from instructrl.data.collate import encode_prompt_response
from instructrl.models import load_policy, load_reward_model, load_tokenizer, sequence_scores
from instructrl.rollout import encode_prompts, forward_logprobs, sample

from tiny_hf import ARCHS, CHAT_DEMOS, DEMOS, PROMPTS, RANKINGS, make_model_folder, write_jsonl


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch_data")
    return {
        "demos": str(write_jsonl(root / "demos.jsonl", DEMOS)),
        "chat": str(write_jsonl(root / "chat.jsonl", CHAT_DEMOS)),
        "rankings": str(write_jsonl(root / "rankings.jsonl", RANKINGS)),
        "prompts": str(write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])),
    }


@pytest.fixture(scope="module", params=sorted(ARCHS))
def arch(request, tmp_path_factory):
    return request.param, make_model_folder(request.param, tmp_path_factory.mktemp(request.param))


def test_tokenizer_pad_eos_and_chat_template(arch):
    name, folder = arch
    tok = load_tokenizer(folder)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    if not ARCHS[name][2]:  # no pad token in the folder: one is added (ours, or the tokenizer class's default)
        assert tok.pad_token in ("<|pad|>", "<|endoftext|>")
    model, tok = load_policy(folder)
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    assert model.config.pad_token_id == tok.pad_token_id
    enc = encode_prompt_response(tok, "Q: hi\nA:", " hello", max_len=64,
                                 messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert enc["input_ids"][-1] == tok.eos_token_id and enc["loss_mask"][-1]
    if ARCHS[name][3]:  # the chat template renders the prompt
        assert tok.decode(enc["input_ids"]).startswith("<|user|>hi")


def test_left_padded_sampling_matches_unpadded(arch):
    """Position ids from the mask + the KV cache: a left-padded row samples what it would alone."""
    _, folder = arch
    model, tok = load_policy(folder)
    prompts = ["Q: hi\nA:", "Q: question 1?\nA:"]
    ids, mask = encode_prompts(tok, prompts)
    assert not mask[0].all()  # the first row is padded
    batched = sample(model, ids, mask, 6, tok.eos_token_id, tok.pad_token_id, temperature=0)
    ids0, mask0 = encode_prompts(tok, prompts[:1])
    alone = sample(model, ids0, mask0, 6, tok.eos_token_id, tok.pad_token_id, temperature=0)
    n = alone.response_ids.shape[1]
    assert torch.equal(batched.response_ids[0, :n], alone.response_ids[0])
    # The sampler's log-probs equal one full forward pass over prompt + response.
    lp = forward_logprobs(model, batched.input_ids, batched.attention_mask, ids.shape[1])
    m = batched.response_mask
    assert torch.allclose(lp[m], batched.logprobs[m], atol=1e-4)


def _sft_cfg(**kw):
    base = dict(epochs=1, batch_size=2, lr=1e-3, max_len=64, seed=0)
    base.update(kw)
    return SFTConfig(**base)


def test_sft_rm_ppo_run(arch, data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    name, folder = arch
    chat = ARCHS[name][3]
    m = sft.train_sft(_sft_cfg(), str(folder), data["chat" if chat else "demos"], str(tmp_path / "sft"),
                val_data=data["demos"])
    assert m["steps"] == 2 and m["val_loss"] is not None
    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")  # plain transformers
    tok = AutoTokenizer.from_pretrained(tmp_path / "sft")
    assert policy.get_input_embeddings().weight.shape[0] >= len(tok) and tok.pad_token_id != tok.eos_token_id

    r = rm.train_reward_model(RMConfig(batch_size=2, max_len=64, val_fraction=0.25, seed=0), str(tmp_path / "sft"),
               data["rankings"], str(tmp_path / "rm"), demonstrations=data["demos"], verbose=False)
    assert r["steps"] >= 1 and abs(r["demo_score_mean"]) < 1e-3
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert plain.config.num_labels == 1
    ours, _ = load_reward_model(tmp_path / "rm")
    # The bias shift survives a reload (folded into a LayerNorm bias, or config.instructrl_score_bias
    # for RMSNorm models): demonstrations still score mean 0.
    fmt = render.resolve(tok, folder=tmp_path / "rm")  # the prompts rendered as the RM was trained (its record)
    demo_seqs = [encode_prompt_response(tok, d["prompt"], d["response"], 64, fmt=fmt)["input_ids"] for d in DEMOS]
    assert abs(float(rm.score_sequences(ours, demo_seqs, tok.pad_token_id).mean())) < 1e-3
    ids = torch.tensor([demo_seqs[0]])
    assert torch.isfinite(sequence_scores(ours, ids, torch.ones_like(ids))).all()

    p = ppo.train_ppo(PPOConfig(total_episodes=8, batch_size=4, minibatch_size=2, max_new_tokens=6, warmup_updates=1, seed=0),
                str(tmp_path / "sft"), str(tmp_path / "rm"), data["prompts"], str(tmp_path / "ppo"), progress=False)
    assert p["updates"] == 2 and p["stopped"] is None
    assert p["kl"] is not None and abs(p["kl"]) < 50
    out = AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")
    assert type(out).__name__ == type(policy).__name__
    assert json.loads((tmp_path / "ppo" / "metrics.json").read_text())["updates"] == 2
