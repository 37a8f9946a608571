"""Our side of the PPO benchmark: instructrl's PPO update loop on the shared synthetic setup.

Drives instructrl.ppo's own pieces in the order ``ppo.train_ppo`` does (collect_rollout ->
compute_advantages -> shuffled minibatches of minibatch_loss, AdamW, grad clipping) without the
run folder, logging and checkpoint I/O, so that the figures are the training work only.

    python benchmarks/ours_ppo.py [--episodes 512] [--batch 64] [--minibatch 16] [--response 24]
        [--slow] [--[no-]reuse-sample-logprobs] [--[no-]fused-adamw] [--[no-]trim-padding] [--score-chunk N]
        [--sampling inverse_cdf] [--side-by-side-backward] [--side-by-side-models] [--side-by-side-scoring] [--side-by-side-sampling]
        [--no-fused-gelu] [--bf16] [--attention eager] [--json OUT]

``--slow`` turns every optimization off (``instructrl.rollout.FAST = False``,
``instructrl.models.FUSED_GELU = False``): the PPO per-update losses must match those of the
default run to float rounding (checked by the benchmark and by tests/test_rollout_fast.py,
tests/test_ppo_speedups.py). ``--[no-]reuse-sample-logprobs`` sets
``PPOConfig.reuse_sample_logprobs``, ``--[no-]fused-adamw`` ``fused_adamw``, ``--[no-]trim-padding``
``trim_padding`` and ``--score-chunk N`` ``score_chunk``; left out, each is PPOConfig's default
(all four on since they were made the default; ``--slow`` turns them off too). ``--sampling
inverse_cdf`` sets ``instructrl.rollout.SAMPLING``; ``--side-by-side-backward``, ``--side-by-side-scoring`` and
``--side-by-side-sampling`` turn on PPOConfig's ``side_by_side_backward``, ``side_by_side_scoring``
and ``side_by_side_sampling`` (the opt-ins left, with inverse-CDF sampling); ``--side-by-side-models``
is a benchmark-only variant of the backward switch (one model per thread instead of half the rows
each; the library dropped it: as fast on this scenario, slower where the two models differ in size); ``--no-fused-gelu`` measures
the fused GELU's share alone. ``--bf16`` runs as ``train_ppo`` does under ``mixed_precision=bf16``:
Accelerate's CPU bf16 autocast on the trained policy and value model (their weights, gradients and
AdamW state stay fp32), the frozen reference and RM held in bf16; ``--attention eager`` swaps
torch's CPU flash-attention kernel (sdpa) for transformers' matmul + softmax attention in all four.
Both change the arithmetic, so their losses differ from the default run's by more than rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402


#: PPOConfig's speed switches, off: what the code computed before each existed (and what --slow runs).
SWITCHES_OFF = {"reuse_sample_logprobs": False, "fused_adamw": False, "trim_padding": False, "score_chunk": 0}


def flops_per_token(n_layer, d, vocab, ctx, backward=False, lm_head=True):
    """Forward matmul FLOPs of one GPT-2 token at context `ctx` (2 per multiply-add), x3 with backward."""
    per_layer = 2 * (4 * d * d + 8 * d * d) + 2 * 2 * ctx * d  # qkv+proj, mlp, QK^T and AV
    f = n_layer * per_layer + (2 * d * vocab if lm_head else 2 * d)
    return f * (3 if backward else 1)


def _one_backward(loss_fn, model, mb, cfg, dist, params, *extra):
    """One model's minibatch loss, backward and gradient clipping (the --side-by-side-models variant)."""
    loss, stats = loss_fn(model, mb, cfg, *extra)
    dist.backward(loss)
    return loss, stats, dist.clip_grad_norm_(params, cfg.max_grad_norm)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--minibatch", type=int, default=16)
    ap.add_argument("--response", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow", action="store_true", help="every optimization off (reference run)")
    on_off = argparse.BooleanOptionalAction  # neither flag: PPOConfig's default
    ap.add_argument("--reuse-sample-logprobs", action=on_off, help="old log-probs from the sampler")
    ap.add_argument("--fused-adamw", action=on_off, help="AdamW's fused CPU kernel (fused_adamw)")
    ap.add_argument("--trim-padding", action=on_off, help="minibatches without all-padding columns (trim_padding)")
    ap.add_argument("--score-chunk", type=int, default=None,
                    help="score rollouts in length-sorted chunks of N rows without all-padding columns (score_chunk)")
    ap.add_argument("--sampling", default="multinomial", choices=("multinomial", "inverse_cdf"),
                    help="how the sampler draws a token (instructrl.rollout.SAMPLING)")
    ap.add_argument("--side-by-side-backward", action="store_true",
                    help="each half of a minibatch's rows through both models in its own thread "
                         "(PPOConfig.side_by_side_backward)")
    ap.add_argument("--side-by-side-models", action="store_true",
                    help="benchmark-only variant: the policy's backward in one thread and the value model's in the other")
    ap.add_argument("--side-by-side-sampling", action="store_true",
                    help="each half of a rollout's rows sampled in its own thread (PPOConfig.side_by_side_sampling)")
    ap.add_argument("--side-by-side-scoring", action="store_true",
                    help="a rollout's row chunks scored half in each of two threads (PPOConfig.side_by_side_scoring)")
    ap.add_argument("--no-fused-gelu", action="store_true", help="keep transformers' 6-op gelu_new module")
    ap.add_argument("--bf16", action="store_true", help="mixed_precision=bf16 as train_ppo runs it")
    ap.add_argument("--attention", default="sdpa", choices=("sdpa", "eager"), help="attention implementation")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from instructrl import distributed, models, rollout
    from instructrl.config import PPOConfig
    from instructrl.models import load_policy, load_reward_model, load_tokenizer  # noqa: F401
    from instructrl.ppo import (_half_backward, collect_rollout, compute_advantages,
                                merge_half_stats, minibatch_loss, policy_minibatch_loss, run_side_by_side,
                                slice_minibatch, split_minibatch, trim_padding, value_minibatch_loss)
    from instructrl.train_utils import make_optimizer

    rollout.FAST = not a.slow
    models.FUSED_GELU = not (a.slow or a.no_fused_gelu)
    rollout.SAMPLING = "multinomial" if a.slow else a.sampling
    default = PPOConfig()
    switches = {k: getattr(default, k) if getattr(a, k) is None else getattr(a, k) for k in SWITCHES_OFF}
    cache = fixtures.build()
    tok = load_tokenizer(cache / "policy")
    prompts = [r["prompt"] for r in fixtures.read_jsonl(cache / "prompts.jsonl")]
    cfg = PPOConfig(total_episodes=a.episodes, batch_size=a.batch, minibatch_size=a.minibatch, ppo_epochs=1,
                    max_new_tokens=a.response, temperature=1.0, warmup_updates=0, seed=a.seed,
                    **(SWITCHES_OFF if a.slow else switches))
    torch.manual_seed(a.seed)
    dist = distributed.setup("bf16" if a.bf16 else "")  # the no-op Dist in fp32, as in train_ppo
    frozen = torch.bfloat16 if a.bf16 else torch.float32  # train_ppo's frozen_dtype
    (policy, _), (ref, _) = load_policy(cache / "policy"), load_policy(cache / "policy", dtype=frozen)
    (value, _), (rm, _) = load_reward_model(cache / "rm"), load_reward_model(cache / "rm", dtype=frozen)
    for m in (policy, ref, value, rm):
        m.eval()
        m.config._attn_implementation = a.attention
    for m in (ref, rm):
        m.requires_grad_(False)
    opt_p = make_optimizer(policy, cfg.lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5, fused=cfg.fused_adamw)
    opt_v = make_optimizer(value, cfg.value_lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5, fused=cfg.fused_adamw)
    g_sample = torch.Generator().manual_seed(cfg.seed)
    g_mb = torch.Generator().manual_seed(cfg.seed + 1)
    pp, vp = list(policy.parameters()), list(value.parameters())
    train_policy, opt_p = dist.prepare(policy, opt_p)  # autocast under bf16; the same objects in fp32
    train_value, opt_v = dist.prepare_scorer(value, opt_v)

    t_gen = t_score = t_update = 0.0
    gen_tokens = 0
    flops = 0.0
    losses = []
    c = policy.config
    t_start = time.perf_counter()
    for u in range(a.episodes // a.batch):
        batch = [prompts[(u * a.batch + i) % len(prompts)] for i in range(a.batch)]
        ro = collect_rollout(policy, ref, value, rm, tok, batch, cfg, g_sample, score_side_by_side=a.side_by_side_scoring,
                             sample_side_by_side=a.side_by_side_sampling)
        t0 = time.perf_counter()
        ro = compute_advantages(ro, cfg, cfg.kl_coef)
        B, T = ro.input_ids.shape
        R = T - ro.n_prompt
        gen_tokens += int(ro.response_mask.sum())
        # FLOPs: generation (prompt + R steps at growing context), 4 (3) scoring forwards, training
        # forward+backward of policy and value over the minibatches.
        ctx = T / 2
        flops += B * T * flops_per_token(c.n_layer, c.n_embd, c.vocab_size, ctx)  # sampling
        n_lm = 1 if cfg.reuse_sample_logprobs else 2  # policy (unless reused) and reference
        flops += B * T * (n_lm * flops_per_token(c.n_layer, c.n_embd, c.vocab_size, ctx)
                          + 2 * flops_per_token(c.n_layer, c.n_embd, c.vocab_size, ctx, lm_head=False))
        flops += B * T * (flops_per_token(c.n_layer, c.n_embd, c.vocab_size, ctx, backward=True)
                          + flops_per_token(c.n_layer, c.n_embd, c.vocab_size, ctx, backward=True, lm_head=False))
        perm = torch.randperm(a.batch, generator=g_mb)
        for j in range(a.batch // a.minibatch):
            mb = slice_minibatch(ro, perm[j * a.minibatch:(j + 1) * a.minibatch])
            halves = split_minibatch(mb, None) if a.side_by_side_backward else None
            if cfg.trim_padding:
                mb = trim_padding(mb)
                halves = halves and [(trim_padding(h), *rest) for h, *rest in halves]
            opt_p.zero_grad(set_to_none=True)
            opt_v.zero_grad(set_to_none=True)
            if halves:  # ppo.ppo_epochs' side_by_side_backward path
                parts = run_side_by_side(*(lambda h=h: _half_backward(train_policy, train_value, cfg, dist, *h)
                                           for h in halves))
                stats = merge_half_stats(parts, halves)
                dist.clip_grad_norm_(pp, cfg.max_grad_norm)
                dist.clip_grad_norm_(vp, cfg.max_grad_norm)
            elif a.side_by_side_models:  # one model per thread (not in the library: slower where sizes differ)
                (_, stats, _), (_, vstats, _) = run_side_by_side(
                    lambda: _one_backward(policy_minibatch_loss, train_policy, mb, cfg, dist, pp),
                    lambda: _one_backward(value_minibatch_loss, train_value, mb, cfg, dist, vp))
                stats.update(vstats)
            else:
                loss, stats = minibatch_loss(train_policy, train_value, mb, cfg)
                dist.backward(loss)
                dist.clip_grad_norm_(pp, cfg.max_grad_norm)
                dist.clip_grad_norm_(vp, cfg.max_grad_norm)
            opt_p.step()
            opt_v.step()
            losses.append([float(stats["policy_loss"]), float(stats["value_loss"])])
        t_gen += ro.time_gen
        t_score += ro.time_score
        t_update += time.perf_counter() - t0
    total = time.perf_counter() - t_start
    res = {"side": "ours", "fast": not a.slow, "fused_gelu": models.FUSED_GELU,
           "reuse_sample_logprobs": cfg.reuse_sample_logprobs, "fused_adamw": cfg.fused_adamw,
           "trim_padding": cfg.trim_padding, "score_chunk": cfg.score_chunk, "sampling": rollout.SAMPLING, "side_by_side_backward": a.side_by_side_backward, "side_by_side_models": a.side_by_side_models,
           "side_by_side_scoring": a.side_by_side_scoring, "side_by_side_sampling": a.side_by_side_sampling,
           "bf16": a.bf16, "attention": a.attention, "episodes": a.episodes, "time_s": total,
           "episodes_per_s": a.episodes / total, "gen_tokens": gen_tokens, "gen_tokens_per_s": gen_tokens / total,
           "time_gen": t_gen, "time_score": t_score, "time_update": t_update, "flops": flops,
           "flop_per_s": flops / total, "peak_rss_mb": fixtures.peak_rss_mb(), "losses": losses}
    out = json.dumps(res)
    if a.json:
        Path(a.json).write_text(out)
    print(json.dumps({k: v for k, v in res.items() if k != "losses"}))
    return res


if __name__ == "__main__":
    main()
