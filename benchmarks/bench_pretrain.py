"""Pretraining: tokens/s and achieved FLOP/s of one step at the default's shapes, per switch (a benchmark, not a test).

    python benchmarks/bench_pretrain.py                 # both bases, every variant, BENCH_REPS (3) fresh processes each
    python benchmarks/bench_pretrain.py --profile       # also the top ops of one step per variant (torch.profiler)
    python benchmarks/bench_pretrain.py --compile --reps 1   # also under torch.compile
    python benchmarks/bench_pretrain.py --variants before gelu   # only these (bf16 is emulated without AVX512-BF16 / AMX)

The step is `instructrl.pretrain`'s own (forward under `precision.autocast`, fp32 cross-entropy,
backward, clip, AdamW) on the model `models.build_gpt2` builds, at the default preset's shapes
(configs/default.yaml: base_small 2 x 96, base_large 3 x 256; BPE vocabulary 1024, 16 x 128 tokens).
Variants, each alone, then together (the new default where bf16 is native):

- ``before``: fp32, GPT-2's `gelu_new` (six elementwise ops), sdpa attention — pretraining until issue 18;
- ``gelu``: torch's fused tanh-GELU (`activation=gelu_pytorch_tanh`), fp32;
- ``bf16``: bf16 autocast, `gelu_new`, eager attention;
- ``bf16_sdpa``: bf16 autocast with the sdpa (CPU flash) attention, to show why bf16 uses eager;
- ``after``: bf16 autocast + fused GELU + eager attention (`precision=auto` on an AMX / AVX512-BF16 CPU);
- with ``--compile`` also ``before_compile`` / ``after_compile``: the model under `torch.compile`
  (the warm-up column includes the compilation).

Achieved FLOP/s counts the model's matmul FLOPs analytically (6 x parameters in the blocks and the
tied LM head per token, plus attention's 2 x 2 x T x d per layer and token, x3 for forward and
backward); the peak is a matmul of the step's own largest shape, [batch x seq, d] @ [d, 4d], in
fp32 and bf16, measured in the same process. Prints one row per (base, variant) and
``pretrain_<base>: ours=<after tok/s> peer=<before tok/s> ratio=<x>``; writes .cache/pretrain.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHAPES = {"small": (2, 96, 4), "large": (3, 256, 4)}  # (n_layer, n_embd, n_head): configs/default.yaml
VOCAB, BATCH, SEQ = 1024, 16, 128
VARIANTS = {  # name: (precision, activation, attention)
    "before": ("fp32", "gelu_new", "sdpa"),
    "gelu": ("fp32", "gelu_pytorch_tanh", "sdpa"),
    "bf16": ("bf16", "gelu_new", "eager"),
    "bf16_sdpa": ("bf16", "gelu_pytorch_tanh", "sdpa"),
    "after": ("bf16", "gelu_pytorch_tanh", "eager"),
}
COMPILED = {  # --compile: the same steps with the model under torch.compile (inductor)
    "before_compile": VARIANTS["before"],
    "after_compile": VARIANTS["after"],
}


def flops_per_step(n_layer: int, d: int) -> float:
    per_token = 2 * (12 * n_layer * d * d + d * VOCAB) + n_layer * 2 * 2 * SEQ * d
    return 3 * per_token * BATCH * SEQ


def matmul_peak(m: int, k: int, n: int, dtype) -> float:
    import torch

    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    best = 0.0
    for _ in range(20):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * m * k * n / (time.perf_counter() - t))
    return best


def worker(base: str, variant: str, steps: int, profile: bool) -> dict:
    """One fresh process: build the model, time `steps` pretraining steps after 5 warm-up steps."""
    import torch
    import torch.nn.functional as F

    from instructrl.models import build_gpt2
    from instructrl.precision import autocast

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    precision, activation, attention = {**VARIANTS, **COMPILED}[variant]
    n_layer, d, n_head = SHAPES[base]

    class Tok:  # build_gpt2 reads the vocabulary size and two special ids
        eos_token_id, pad_token_id = 0, 1

        def __len__(self):
            return VOCAB

    model = build_gpt2(Tok(), n_layer, d, n_head, SEQ, 0.0, 0, activation=activation)
    model.config._attn_implementation = attention
    model.train()
    fwd = torch.compile(model) if variant in COMPILED else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=gen) for _ in range(steps + 5)]

    def step(x):  # pretrain.pretrain_base's step 3
        with autocast(precision):
            logits = fwd(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    t = time.perf_counter()
    for x in xs[:5]:
        step(x)
    warmup = time.perf_counter() - t
    t = time.perf_counter()
    losses = [step(x) for x in xs[5:]]
    dt = (time.perf_counter() - t) / steps
    peak32 = matmul_peak(BATCH * SEQ, d, 4 * d, torch.float32)
    peak16 = matmul_peak(BATCH * SEQ, d, 4 * d, torch.bfloat16)
    res = {"base": base, "variant": variant, "ms_per_step": 1000 * dt, "tokens_per_s": BATCH * SEQ / dt,
           "flop_per_s": flops_per_step(n_layer, d) / dt, "peak_fp32": peak32, "peak_bf16": peak16,
           "final_loss": losses[-1], "warmup_s": warmup}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        with prof(activities=[ProfilerActivity.CPU]) as p:
            for x in xs[:3]:
                step(x)
        rows = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in rows)
        res["top_ops"] = [(e.key, round(100 * e.self_cpu_time_total / total, 1)) for e in rows[:6]]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=int(os.environ.get("BENCH_STEPS", "30")))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "3")))
    ap.add_argument("--bases", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also the before/after steps under torch.compile")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="which variants (default all; e.g. `before gelu` where bf16 is emulated, ~9x slower)")
    ap.add_argument("--worker", nargs=2, metavar=("BASE", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.profile)))
        return
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
               PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    results: dict = {}
    for rep in range(args.reps):  # alternate variants, fresh processes: the machine's drift hits all alike
        for base in args.bases:
            for variant in [*args.variants, *(COMPILED if args.compile else [])]:
                cmd = [sys.executable, __file__, "--worker", base, variant, "--steps", str(args.steps)]
                if args.profile and rep == 0:
                    cmd.append("--profile")
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                results.setdefault((base, variant), []).append(json.loads(out.strip().splitlines()[-1]))
    table = []
    print(f"{'base':6} {'variant':10} {'ms/step':>8} {'tok/s':>7} {'GFLOP/s':>8} {'peak32':>7} {'peak16':>7} {'of peak':>8} {'loss':>7} {'warm-up':>8}")
    for (base, variant), rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("ms_per_step", "tokens_per_s", "flop_per_s",
                                                                 "peak_fp32", "peak_bf16", "final_loss", "warmup_s")}
        peak = med["peak_bf16"] if {**VARIANTS, **COMPILED}[variant][0] == "bf16" else med["peak_fp32"]
        row = {"base": base, "variant": variant, **med, "of_peak": med["flop_per_s"] / peak,
               "top_ops": next((r["top_ops"] for r in rs if "top_ops" in r), None)}
        table.append(row)
        print(f"{base:6} {variant:10} {med['ms_per_step']:8.1f} {med['tokens_per_s']:7.0f} {med['flop_per_s'] / 1e9:8.1f} "
              f"{med['peak_fp32'] / 1e9:7.0f} {med['peak_bf16'] / 1e9:7.0f} {row['of_peak']:8.2f} {med['final_loss']:7.4f} {med['warmup_s']:7.1f}s")
        if row["top_ops"]:
            print("       top ops (self CPU %): " + ", ".join(f"{k} {v}" for k, v in row["top_ops"]))
    from instructrl.precision import native_bf16

    ours = "after" if native_bf16() else "gelu"  # what pretraining's precision "auto" runs on this CPU
    for base in args.bases:
        a = next((r for r in table if r["base"] == base and r["variant"] == ours), None)
        b = next((r for r in table if r["base"] == base and r["variant"] == "before"), None)
        if a and b:
            print(f"pretrain_{base}: ours={a['tokens_per_s']:.0f} peer={b['tokens_per_s']:.0f} "
                  f"ratio={a['tokens_per_s'] / b['tokens_per_s']:.2f} tokens/s (ours = `{ours}`, what precision "
                  f"auto runs here; peer = the same step before issue 18)")
    (HERE / ".cache").mkdir(exist_ok=True)
    (HERE / ".cache" / "pretrain.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
