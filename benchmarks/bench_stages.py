"""Where a pipeline run's time goes, stage by stage: one step of each stage on the run's own models
and data, its achieved FLOP/s against a matmul peak measured in the same process at that stage's
own shapes, and the top ops of a profiled step (issue 18, "know where the time goes").

    instructrl pipeline --out runs/default                 # first: the models and data measured
    python benchmarks/bench_stages.py runs/default [--steps 3] [--top 6] [--json OUT]
        [--set fused_adamw=false --set trim_padding=false ...] [--sampling inverse_cdf]

``--set k=v`` applies to every stage config that has the field (e.g. the speed switches
``fused_adamw`` (SFT, RM, PPO), ``reuse_sample_logprobs``, ``trim_padding`` and ``score_chunk`` (PPO),
on by default in PPO since runs made after that; a run folder's own config.yaml says which it used);
``--sampling`` sets `rollout.SAMPLING`.

Stages measured, each with the stage's own functions and the run's resolved config (`config.yaml`
of each stage folder):

- ``sft``: `sft.accumulate_step` (demonstrations + pretraining windows) + clip + AdamW step, on
  the small base (the SFT init).
- ``rm``: `rm.kwise_step` at the run's `chunk_rows` and `share_prefix` (K responses of each prompt,
  the K-wise loss) + backward + AdamW step, on the RM init (`reward_model_from_causal_lm` of the
  run's RM init base). Its FLOPs count the real positions the step needs (each prompt once where
  prefixes are shared, every response), not the chunks' padding: a lower bound of what it computes.
- ``ppo gen`` / ``ppo score`` / ``ppo update``: `ppo.collect_rollout` (sampling, then the no-grad
  forwards) and the minibatch steps of `ppo.minibatch_loss`, with the run's SFT policy and RM
  (the value model starts as the RM).
- ``eval gen``: greedy decoding (`rollout.sample`, what `rollout.generate` runs) of the SFT policy,
  batch 64, the evaluation's max_new_tokens (it stops when every row has ended).

Pretraining is measured by `bench_pretrain.py`. FLOPs are analytic (`ours_ppo.flops_per_token`:
projections, MLP, attention scores, LM head; x3 with the backward), counted over every position
the step computes, padding included (the padding share is printed). The peak is the best of 10
fp32 matmuls [tokens, d] @ [d, 4d] at the stage's token count and the width of its largest model
(decode: [batch, d] @ [d, 4d], the shape of one decode step).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ours_ppo import flops_per_token  # noqa: E402


def matmul_peak(rows: int, d: int, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(rows, d), torch.randn(d, 4 * d)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * rows * d * 4 * d / best


def shape(model):
    c = model.config
    return c.n_layer, c.n_embd, c.vocab_size


def fpt(model, ctx, backward=False, lm_head=True):
    n_layer, d, vocab = shape(model)
    return flops_per_token(n_layer, d, vocab, ctx, backward=backward, lm_head=lm_head)


def timed(fn, steps: int):
    """(median seconds of `steps` calls of fn() after one warm-up call, what the last call returned)."""
    fn()
    ts, out = [], None
    for _ in range(steps):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], out


def top_ops(fn, n: int) -> str:
    from torch.profiler import profile

    with profile() as p:
        fn()
    rows = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    return ", ".join(f"{e.key.replace('aten::', '')} {100 * e.self_cpu_time_total / total:.1f}" for e in rows[:n])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a finished `instructrl pipeline` output folder")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per stage (median); one warm-up before")
    ap.add_argument("--top", type=int, default=6, help="top ops (self CPU %%) to list per stage")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="K=V",
                    help="override a field of every stage config that has it (repeatable)")
    ap.add_argument("--sampling", default="multinomial", choices=["multinomial", "inverse_cdf"])
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from instructrl import distributed, ppo, rm, rollout, sft
    from instructrl.config import PPOConfig, RMConfig, SFTConfig, apply_overrides, from_dict, load_yaml
    from instructrl.data import render
    from instructrl.models import (common_prefix_length, load_policy, load_reward_model, reward_model_from_causal_lm,
                                   set_residual_dropout)
    from instructrl.rollout import encode_prompts, sample
    from instructrl.train_utils import make_optimizer

    rollout.SAMPLING = a.sampling
    run = Path(a.run)

    def stage_config(cls, folder):
        cfg = from_dict(cls, load_yaml(run / folder / "config.yaml"))
        names = {f.name for f in dataclasses.fields(cls)}
        return apply_overrides(cfg, [o for o in a.set if o.split("=", 1)[0] in names])

    world = run / "world"
    pipe = load_yaml(run / "config.yaml")
    dist = distributed.setup("")
    dev = torch.device("cpu")
    results = []

    def report(stage, secs, flops, rows, d, info, ops):
        peak = matmul_peak(rows, d)
        r = {"stage": stage, "ms": 1000 * secs, "gflops": flops / 1e9, "gflop_per_s": flops / secs / 1e9,
             "peak_gflop_per_s": peak / 1e9, "of_peak": flops / secs / peak, "peak_shape": f"[{rows}, {d}] @ [{d}, {4 * d}]",
             **info, "top_ops": ops}
        results.append(r)
        print(f"{stage:<11} {r['ms']:8.1f} ms  {r['gflop_per_s']:6.1f} GFLOP/s  peak {r['peak_gflop_per_s']:6.1f} "
              f"at {r['peak_shape']}  -> {r['of_peak']:.2f}  {info}\n            top ops: {ops}", flush=True)

    # 1. SFT: one optimizer step of the run's first planned micro-batches.
    cfg = stage_config(SFTConfig, "sft")
    policy, tok = load_policy(run / "base_small")
    set_residual_dropout(policy, cfg.dropout)
    policy.train()
    fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, run / "base_small", [world / "demonstrations.jsonl"])
    d = sft.read_data(cfg, tok, world / "demonstrations.jsonl", None, world / "pretrain.jsonl", fmt)
    plan = sft.plan_epochs(d.examples, cfg, 1)[0]
    opt = make_optimizer(policy, cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay, fused=cfg.fused_adamw)
    gen = torch.Generator().manual_seed(0)
    it = iter(range(10 ** 9))

    def sft_step():
        micro = plan[next(it) % len(plan)]
        sft.accumulate_step(policy, micro, d, cfg, dist, dev, tok.pad_token_id, gen)
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        batches = [sft.collate_rows(d.examples, rows, tok.pad_token_id) for rows in micro]
        pos = sum(b["input_ids"].numel() for b in batches)
        real = sum(int(b["input_ids"].ne(tok.pad_token_id).sum()) for b in batches)
        T = max(b["input_ids"].shape[1] for b in batches)
        n_ptx = d.n_ptx * len(batches) if d.windows is not None else 0
        ptx_pos = n_ptx * d.windows.shape[1] if n_ptx else 0
        return (pos + ptx_pos) * fpt(policy, T / 2, backward=True), {"tokens": pos + ptx_pos,
                                                                     "padding": round(1 - real / pos, 3)}

    secs, (flops, info) = timed(sft_step, a.steps)
    report("sft", secs, flops, info["tokens"], policy.config.n_embd, info, top_ops(sft_step, a.top))
    del policy, opt, d

    # 2. RM: one K-wise step over `batch_size` prompts.
    cfg = stage_config(RMConfig, "rm")
    init = run / pipe.get("rm_init", "sft")
    model, tok = reward_model_from_causal_lm(init)
    model.train()
    fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, init, [run / "comparisons.jsonl"])
    d = rm.read_data(cfg, tok, run / "comparisons.jsonl", None, None, fmt)
    opt = make_optimizer(model, cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay, fused=cfg.fused_adamw)
    it = iter(range(10 ** 9))

    def rm_step():
        i = next(it) * cfg.batch_size % max(1, len(d.encoded) - cfg.batch_size)
        batch = d.encoded[i:i + cfg.batch_size]
        loss, _ = rm.kwise_step(model, batch, 1.0, tok.pad_token_id, dev, dist, chunk_rows=cfg.chunk_rows,
                                share_prefix=cfg.share_prefix)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seqs = [e["seqs"] for e in batch]
        n_seq = sum(len(s) for s in seqs)
        mean_len = sum(len(x) for s in seqs for x in s) / n_seq
        # The real positions the step needs: with share_prefix each prompt's tokens once and every
        # response's own; without, every whole sequence. Chunk padding is not counted (a lower bound).
        prefix = [common_prefix_length(s) if cfg.share_prefix else 0 for s in seqs]
        real = sum(p + sum(len(x) - p for x in s) for p, s in zip(prefix, seqs))
        ids, attn, _, _ = rm.collate_prompts(batch, tok.pad_token_id)
        return real * fpt(model, mean_len / 2, backward=True, lm_head=False), {
            "tokens": real, "sequences": n_seq, "chunk_rows": cfg.chunk_rows, "share_prefix": cfg.share_prefix,
            "padding_if_one_forward": round(1 - float(attn.float().mean()), 3)}

    secs, (flops, info) = timed(rm_step, a.steps)
    report("rm", secs, flops, info["tokens"], model.config.n_embd, info, top_ops(rm_step, a.top))
    del model, opt, d

    # 3. PPO: rollouts (sampling, then scoring) and the minibatch updates of one batch.
    cfg = stage_config(PPOConfig, "ppo")
    policy, tok = load_policy(run / "sft")
    ref, _ = load_policy(run / "sft")
    value, _ = load_reward_model(run / "rm")
    reward, _ = load_reward_model(run / "rm")
    for m in (ref, reward):
        m.requires_grad_(False)
    fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, run / "sft", [world / "ppo_prompts.jsonl"])
    data = ppo.load_data(cfg, policy, tok, str(world / "ppo_prompts.jsonl"), None, fmt)
    opt_p = make_optimizer(policy, cfg.lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5, fused=cfg.fused_adamw)
    opt_v = make_optimizer(value, cfg.value_lr, 0.9, 0.95, weight_decay=0.0, eps=1e-5, fused=cfg.fused_adamw)
    g = torch.Generator().manual_seed(cfg.seed)
    it = iter(range(10 ** 9))
    B = cfg.batch_size
    last = {}

    def rollout():
        i = next(it) * B % max(1, len(data.prompts) - B)
        ro = ppo.collect_rollout(policy, ref, value, reward, tok, data.prompts[i:i + B], cfg, g,
                                 prompt_tokens=data.prompt_ids[i:i + B])
        last["ro"] = ppo.compute_advantages(ro, cfg, cfg.kl_coef)
        return ro

    def update():
        ro = last["ro"]
        perm = torch.randperm(B, generator=g)
        computed = 0
        for j in range(B // cfg.minibatch_size):
            mb = ppo.slice_minibatch(ro, perm[j * cfg.minibatch_size:(j + 1) * cfg.minibatch_size])
            if cfg.trim_padding:
                mb = ppo.trim_padding(mb)
            computed += mb["input_ids"].numel()
            loss, _ = ppo.minibatch_loss(policy, value, mb, cfg)
            opt_p.zero_grad(set_to_none=True)
            opt_v.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(value.parameters(), cfg.max_grad_norm)
            opt_p.step()
            opt_v.step()
        return computed

    gens, scores = [], []
    for k in range(a.steps + 1):
        ro = rollout()
        if k:
            gens.append(ro.time_gen)
            scores.append(ro.time_score)
    ro = last["ro"]
    T, P = ro.input_ids.shape[1], ro.n_prompt
    pos = ro.input_ids.numel()
    padding = round(1 - float(ro.attention_mask.float().mean()), 3)
    gen_flops = pos * fpt(policy, T / 2)
    gens.sort()
    scores.sort()
    report("ppo gen", gens[len(gens) // 2], gen_flops, B, policy.config.n_embd,
           {"batch": B, "prompt": P, "response": T - P, "padding": padding},
           top_ops(lambda: ppo.collect_rollout(policy, ref, value, reward, tok, data.prompts[:B], cfg, g,
                                               prompt_tokens=data.prompt_ids[:B]), a.top) + "  (whole rollout)")
    n_policy = 0 if cfg.reuse_sample_logprobs else 1
    # Positions the scoring forwards compute: the whole batch, or its length-sorted chunks (score_chunk).
    chunk_pos = [len(rows) * (P - first + r) for rows, first, r in ppo.score_chunks(ro.attention_mask, P, cfg.score_chunk)]
    scored = sum(chunk_pos)
    score_flops = scored * ((1 + n_policy) * fpt(policy, T / 2) + 2 * fpt(value, T / 2, lm_head=False))
    # The peak at one forward's shape (the largest chunk's positions x d).
    report("ppo score", scores[len(scores) // 2], score_flops, max(chunk_pos), value.config.n_embd,
           {"forwards": 3 + n_policy, "padding": round(1 - float(ro.attention_mask.sum()) / scored, 3)},
           "(in the rollout's profile above)")
    secs, computed = timed(update, a.steps)  # positions computed (fewer with trim_padding)
    upd_flops = computed * (fpt(policy, T / 2, backward=True) + fpt(value, T / 2, backward=True, lm_head=False))
    report("ppo update", secs, upd_flops, cfg.minibatch_size * T, value.config.n_embd,
           {"minibatches": B // cfg.minibatch_size, "positions": computed, "of_batch": round(computed / pos, 3)},
           top_ops(update, a.top))

    # 4. Evaluation: greedy generation at the evaluation's batch (rollout.sample, as generate calls it).
    n_new = int(pipe.get("eval", {}).get("max_new_tokens", 40))
    ids, mask = encode_prompts(tok, data.prompt_ids[:B])
    policy.eval()

    def eval_gen():
        s = sample(policy, ids, mask, n_new, tok.eos_token_id, tok.pad_token_id, 0.0)
        return s.response_ids.shape[1]

    secs, steps = timed(eval_gen, a.steps)
    T = ids.shape[1] + steps
    report("eval gen", secs, B * T * fpt(policy, T / 2), B, policy.config.n_embd,
           {"batch": B, "decode_steps": steps, "padding": round(1 - float(mask.float().mean()), 3)},
           top_ops(eval_gen, a.top))

    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    print("\n| stage | ms/step | GFLOP/s | same-shape fp32 peak | of peak | top ops (self CPU %) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['stage']} | {r['ms']:.0f} | {r['gflop_per_s']:.1f} | {r['peak_gflop_per_s']:.0f} "
              f"({r['peak_shape']}) | {r['of_peak']:.2f} | {r['top_ops']} |")


if __name__ == "__main__":
    main()
