"""Generation: instructrl's rollout sampler vs transformers' `model.generate`, same model and work.

    python benchmarks/bench_generation.py

Batch 64 of the synthetic prompts, 24 and 128 new tokens, plain sampling at T = 1 (generate:
do_sample, top_k 0, top_p 1), fp32, 2 threads, in one process, alternating, median of
BENCH_REPS (3). Figure: generated tokens/s (rows x steps actually run).

Also measured, for the README's "why": our sampler with the two-matmul decode attention
(`fast_decode.DECODE_ATTENTION = "matmul"`, not the default: it changes rounding) and with one
thread instead of two (is the decode step compute-bound or overhead-bound?), and with the
inverse-CDF draw (`rollout.SAMPLING = "inverse_cdf"`, not the default: same distribution, other
tokens at a given seed), with two half batches sampled side by side in two threads of one
intra-op thread each (`ppo.sample_batch`, PPOConfig.side_by_side_sampling; alone and with the
inverse-CDF draw), and with the decode step compiled by `torch.compile` (inductor; issue 18's
candidate). Inductor wants the same shapes at every step, so the compiled step attends over the
whole preallocated K/V buffer under a mask that grows by one position per step (`FixedShapeDecoder`
below, an experiment kept here, not library code); the same step run eagerly is timed too, so
the compiler's gain and the fixed shape's cost show apart. The first call's compilation time is
reported separately and left out of the medians.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402
from _common import reps, save  # noqa: E402


def fixed_shape_decoder(compile_step: bool):
    """A `fast_decode.StaticGPT2Decoder` whose step has one shape for the whole call (attention over
    the full K/V buffer, future positions masked), optionally compiled with inductor."""
    import torch
    import torch.nn.functional as F

    from instructrl import fast_decode

    def step_fn(tok, pos, t, ks, vs, mask, wte, wpe, lm_head, blocks, ln_f, H: int, eps: float, scale: float):
        B, d = tok.shape[0], wte.shape[1]
        x = F.embedding(tok, wte) + F.embedding(pos, wpe)
        for i, (l1w, l1b, aw, ab, pw, pb, l2w, l2b, fw, fb, mw, mb) in enumerate(blocks):
            h = F.layer_norm(x, (d,), l1w, l1b, eps)
            q, k, v = torch.addmm(ab, h, aw).view(B, 3, H, d // H).unbind(1)
            ks[i].index_copy_(2, t, k.unsqueeze(2))
            vs[i].index_copy_(2, t, v.unsqueeze(2))
            a = F.scaled_dot_product_attention(q.unsqueeze(2), ks[i], vs[i], attn_mask=mask, scale=scale)
            x = torch.addmm(pb, a.reshape(B, d), pw) + x
            h = F.layer_norm(x, (d,), l2w, l2b, eps)
            x = x + torch.addmm(mb, F.gelu(torch.addmm(fb, h, fw), approximate="tanh"), mw)
        return F.linear(F.layer_norm(x, (d,), ln_f[0], ln_f[1], eps), lm_head)

    fn = torch.compile(step_fn, dynamic=False) if compile_step else step_fn

    class FixedShapeDecoder(fast_decode.StaticGPT2Decoder):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.mask[..., self.t:] = False
            # The buffers are new_empty: a masked position still enters softmax-weight x V, and
            # 0 x NaN garbage is NaN (seen once in run_all.sh), so zero what is not written yet.
            for buf in (*self.k, *self.v):
                buf[:, :, self.t:].zero_()
            self.t_index = torch.tensor([self.t])
            self.params = [(b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight, b.attn.c_attn.bias,
                            b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias,
                            b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
                           for b in self.blocks]

        def step(self, tok, pos):
            self.mask[..., self.t] = True
            out = fn(tok, pos, self.t_index, self.k, self.v, self.mask, self.wte, self.wpe, self.lm_head,
                     self.params, (self.ln_f.weight, self.ln_f.bias), self.H, self.eps, self.scaling[0])
            self.t += 1
            self.t_index += 1
            return out

    return FixedShapeDecoder


def main():
    import torch

    torch.set_num_threads(2)
    from instructrl import rollout
    from instructrl.models import load_policy

    cache = fixtures.build()
    model, tok = load_policy(cache / "policy")
    prompts = [r["prompt"] for r in fixtures.read_jsonl(cache / "prompts.jsonl")][:64]
    ids, mask = rollout.encode_prompts(tok, prompts)

    def ours(n):
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        s = rollout.sample(model, ids, mask, n, tok.eos_token_id, tok.pad_token_id, 1.0, g)
        return s.response_ids.numel() / (time.perf_counter() - t)

    def peer(n):
        torch.manual_seed(0)
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask.long(), max_new_tokens=n, do_sample=True,
                                 temperature=1.0, top_k=0, top_p=1.0, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)
        return (out.shape[0] * (out.shape[1] - ids.shape[1])) / (time.perf_counter() - t)

    from instructrl import fast_decode

    def ours_variant(n, attention="sdpa", threads=2, sampling="multinomial"):
        fast_decode.DECODE_ATTENTION = attention
        rollout.SAMPLING = sampling
        torch.set_num_threads(threads)
        try:
            return ours(n)
        finally:
            fast_decode.DECODE_ATTENTION = "sdpa"
            rollout.SAMPLING = "multinomial"
            torch.set_num_threads(2)

    from types import SimpleNamespace

    from instructrl.ppo import sample_batch

    def ours_side_by_side(n, sampling="multinomial"):  # PPOConfig.side_by_side_sampling's path
        rollout.SAMPLING = sampling
        cfg = SimpleNamespace(max_new_tokens=n, temperature=1.0)
        try:
            t = time.perf_counter()
            with torch.no_grad():
                s = sample_batch(model, ids, mask, cfg, tok, torch.Generator().manual_seed(0), side_by_side=True)
            return s.response_ids.numel() / (time.perf_counter() - t)
        finally:
            rollout.SAMPLING = "multinomial"

    plain_decoder = fast_decode.StaticGPT2Decoder
    decoders = {"fixed": fixed_shape_decoder(False), "compiled": fixed_shape_decoder(True)}

    def ours_decoder(n, which):
        fast_decode.StaticGPT2Decoder = decoders[which]
        try:
            return ours(n)
        finally:
            fast_decode.StaticGPT2Decoder = plain_decoder

    ours(8), peer(8), ours_variant(8, "matmul"), ours_variant(8, threads=1), ours_variant(8, sampling="inverse_cdf")
    ours_side_by_side(8)
    compile_s = {}
    for n in (24, 128):  # one compilation per shape (prompt + n positions), outside the medians
        t = time.perf_counter()
        try:
            ours_decoder(n, "compiled")
            compile_s[n] = time.perf_counter() - t
        except Exception as e:  # no C++ compiler, or an inductor failure: report, do not stop the benchmarks
            print(f"compiled decode step unavailable: {type(e).__name__}: {e}"[:300], flush=True)
            decoders.pop("compiled")
            break
    lines, res = [], {}
    for n in (24, 128):
        o, p, mm, one, icdf, fixed, comp, sbs, sbs_icdf = [], [], [], [], [], [], [], [], []
        for i in range(reps()):
            fixed.append(ours_decoder(n, "fixed"))
            if "compiled" in decoders:
                comp.append(ours_decoder(n, "compiled"))
            o.append(ours(n))
            p.append(peer(n))
            mm.append(ours_variant(n, "matmul"))
            one.append(ours_variant(n, threads=1))
            icdf.append(ours_variant(n, sampling="inverse_cdf"))
            sbs.append(ours_side_by_side(n))
            sbs_icdf.append(ours_side_by_side(n, "inverse_cdf"))
            print(f"{n} tokens run {i}: ours {o[-1]:.0f}, generate {p[-1]:.0f}, ours with matmul attention "
                  f"{mm[-1]:.0f}, ours on 1 thread {one[-1]:.0f}, ours with inverse-CDF draws {icdf[-1]:.0f} tokens/s",
                  flush=True)
            print(f"{n} tokens run {i}: ours, two half batches side by side {sbs[-1]:.0f}, with inverse-CDF "
                  f"draws {sbs_icdf[-1]:.0f} tokens/s", flush=True)
            print(f"{n} tokens run {i}: ours with the fixed-shape step {fixed[-1]:.0f}, compiled "
                  f"{comp[-1] if comp else float('nan'):.0f} tokens/s", flush=True)
        mo, mp = statistics.median(o), statistics.median(p)
        mi = statistics.median(icdf)
        res[n] = {"ours": o, "peer": p, "ours_matmul_attention": mm, "ours_1_thread": one, "ours_inverse_cdf": icdf,
                  "ours_fixed_shape_step": fixed, "ours_compiled_step": comp, "compile_s": compile_s.get(n),
                  "ours_side_by_side": sbs, "ours_side_by_side_inverse_cdf": sbs_icdf}
        if comp:
            print(f"generation-{n} compiled decode step: {statistics.median(comp):.0f} tokens/s (its eager "
                  f"fixed-shape form {statistics.median(fixed):.0f}; compiling took {compile_s[n]:.1f} s)", flush=True)
        print(f"generation-{n} variants: ours with matmul attention {statistics.median(mm):.0f}, ours on 1 thread "
              f"{statistics.median(one):.0f}, ours with inverse-CDF draws {mi:.0f}, ours {mo:.0f}, generate {mp:.0f} "
              f"tokens/s", flush=True)
        lines.append(f"generation-{n}: ours={mo:.0f} peer={mp:.0f} ratio={mo / mp:.2f} tokens/s")
        lines.append(f"generation-{n}-inverse-cdf: ours={mi:.0f} peer={mp:.0f} ratio={mi / mp:.2f} tokens/s")
        ms, msi = statistics.median(sbs), statistics.median(sbs_icdf)
        lines.append(f"generation-{n}-side-by-side: ours={ms:.0f} peer={mp:.0f} ratio={ms / mp:.2f} tokens/s")
        lines.append(f"generation-{n}-side-by-side-inverse-cdf: ours={msi:.0f} peer={mp:.0f} ratio={msi / mp:.2f} tokens/s")
        if comp:
            mc = statistics.median(comp)
            lines.append(f"generation-{n}-compiled-step: ours={mc:.0f} peer={mp:.0f} ratio={mc / mp:.2f} tokens/s")
    save("generation", res)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
