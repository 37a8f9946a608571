"""Generation: instructrl's rollout sampler vs transformers' `model.generate`, same model and work.

    python benchmarks/bench_generation.py

Batch 64 of the synthetic prompts, 24 and 128 new tokens, plain sampling at T = 1 (generate:
do_sample, top_k 0, top_p 1), fp32, 2 threads, in one process, alternating, median of
BENCH_REPS (3). Figure: generated tokens/s (rows x steps actually run).

Also measured, for the README's "why": our sampler with the two-matmul decode attention
(`fast_decode.DECODE_ATTENTION = "matmul"`, not the default: it changes rounding) and with one
thread instead of two (is the decode step compute-bound or overhead-bound?), and with the
inverse-CDF draw (`rollout.SAMPLING = "inverse_cdf"`, not the default: same distribution, other
tokens at a given seed).
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

    ours(8), peer(8), ours_variant(8, "matmul"), ours_variant(8, threads=1), ours_variant(8, sampling="inverse_cdf")
    lines, res = [], {}
    for n in (24, 128):
        o, p, mm, one, icdf = [], [], [], [], []
        for i in range(reps()):
            o.append(ours(n))
            p.append(peer(n))
            mm.append(ours_variant(n, "matmul"))
            one.append(ours_variant(n, threads=1))
            icdf.append(ours_variant(n, sampling="inverse_cdf"))
            print(f"{n} tokens run {i}: ours {o[-1]:.0f}, generate {p[-1]:.0f}, ours with matmul attention "
                  f"{mm[-1]:.0f}, ours on 1 thread {one[-1]:.0f}, ours with inverse-CDF draws {icdf[-1]:.0f} tokens/s",
                  flush=True)
        mo, mp = statistics.median(o), statistics.median(p)
        mi = statistics.median(icdf)
        res[n] = {"ours": o, "peer": p, "ours_matmul_attention": mm, "ours_1_thread": one, "ours_inverse_cdf": icdf}
        print(f"generation-{n} variants: ours with matmul attention {statistics.median(mm):.0f}, ours on 1 thread "
              f"{statistics.median(one):.0f}, ours with inverse-CDF draws {mi:.0f}, ours {mo:.0f}, generate {mp:.0f} "
              f"tokens/s", flush=True)
        lines.append(f"generation-{n}: ours={mo:.0f} peer={mp:.0f} ratio={mo / mp:.2f} tokens/s")
        lines.append(f"generation-{n}-inverse-cdf: ours={mi:.0f} peer={mp:.0f} ratio={mi / mp:.2f} tokens/s")
    save("generation", res)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
