"""Pretraining precision: bf16 autocast where the hardware multiplies bf16 natively (issue 18).

The world's base models are pretrained from scratch on the CPU, and pretraining is about half of
the default pipeline's time. On a CPU with AMX or AVX512-BF16 (Intel Sapphire Rapids and later, AMD
Zen 4 and later) oneDNN multiplies bf16 matrices several times faster than fp32 ones (measured at
the large base's shapes, `benchmarks/bench_pretrain.py`), so `precision="auto"` trains under
`torch.autocast(dtype=bfloat16)` there: weights, gradients and AdamW's state stay fp32 (the
"master weights" of mixed precision), only matmul inputs are rounded to bf16; the loss and the
softmax are computed in fp32. On a CPU without native bf16 the same autocast would be emulated and
slower, so "auto" stays fp32 there. `fp32` / `bf16` force either.

Under bf16 the model trains with the "eager" (matmul + softmax) attention: torch's CPU
flash-attention kernel (sdpa) has a slow bf16 backward at these shapes (a third of the step in a
profile). The attention is switched back to sdpa before the model is saved (the attention
implementation is not part of an HF folder's config), so later stages are unchanged.

SFT, the RM and PPO have their own `mixed_precision` field, through Accelerate (config.py).
"""

from __future__ import annotations

import contextlib
import functools

import torch

from instructrl.config import PRECISIONS

__all__ = ["PRECISIONS", "native_bf16", "resolve", "autocast"]


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AMX or AVX512-BF16, as torch's CPU capability
    checks report them). Pretraining runs on the CPU only."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except Exception:  # an unknown CPU: stay in fp32
        return False


def resolve(precision: str) -> str:
    """'fp32' or 'bf16': what `precision` ('auto', 'fp32', 'bf16') means on this CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def autocast(precision: str):
    """A context that runs its forward under CPU bf16 autocast when `precision` (resolved) is
    'bf16', else does nothing."""
    if precision == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
