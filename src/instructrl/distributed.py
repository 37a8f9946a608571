"""Scale-out through Hugging Face Accelerate: `accelerate launch` (or `torchrun`) runs SFT, RM and
PPO data-parallel (DDP; FSDP and DeepSpeed ZeRO through the configs in `configs/accelerate/`).

Nothing here is a distributed layer of our own: `Accelerator.prepare` wraps the model and the
optimizer, `Accelerator.backward` does the backward, torch.distributed all-reduces the few logged
numbers. When the process is not launched distributed (and no mixed precision is asked for),
`setup()` returns a `Dist` that does nothing at all, so a plain run computes exactly what it did
before.

The contract the stages follow:

* `cfg.batch_size` is **per process**. A global batch is `batch_size × world_size` rows, and every
  process reads the whole (seeded) plan and takes its own contiguous share (`Dist.shard`), so a
  2-process run with batch B/2 sees the same global batches as a 1-process run with batch B — and
  the loss is weighted so that DDP's gradient *mean* equals the 1-process gradient.
* Logged metrics are reduced across processes (`Dist.sum` / `Dist.mean`); only rank 0 writes
  files (the others write into a private temporary folder that is removed at the end).
* PPO: each process samples its own episodes with seed `seed + rank × 100003`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import torch
from torch import nn

RANK_SEED_STRIDE = 100003


def launched() -> bool:
    """True under `accelerate launch` / `torchrun` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class TokenScores(nn.Module):
    """`models.token_scores(model, ...)` as one module, so that DDP/FSDP wrap a single forward
    (the RM and the value model read the backbone and the score head separately)."""

    is_token_scores_wrapper = True

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids=None):
        from instructrl.models import token_scores

        return token_scores(self.model, input_ids, attention_mask, position_ids)


class Dist:
    """Rank, world size and the handful of collective operations the stages use."""

    def __init__(self, accelerator=None):
        self.acc = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.world_size = accelerator.num_processes if accelerator is not None else 1
        self.is_main = self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, default):
        return self.acc.device if self.acc is not None else default

    # --- models ---------------------------------------------------------------------------

    def prepare(self, model, optimizer):
        """(training view of the model, optimizer): DDP/FSDP/DeepSpeed-wrapped when launched.
        Keep using the unwrapped `model` for sampling, evaluation and saving."""
        if self.acc is None:
            return model, optimizer
        return self.acc.prepare(model, optimizer)

    def prepare_scorer(self, model, optimizer):
        """Like `prepare`, for a scalar-head model trained through `models.token_scores`."""
        if self.acc is None:
            return model, optimizer
        return self.acc.prepare(TokenScores(model), optimizer)

    def backward(self, loss) -> None:
        if self.acc is None:
            loss.backward()
        else:
            self.acc.backward(loss)

    def clip_grad_norm_(self, params, max_norm):
        if self.acc is None:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        return self.acc.clip_grad_norm_(params, max_norm)

    # --- data -----------------------------------------------------------------------------

    def shard(self, items: list) -> tuple[list, float]:
        """This process's contiguous share of a global batch, and a weight (1.0, or 0.0 when the
        batch is too small to give this process anything: it then repeats the first item so that
        every process still runs the forward/backward DDP waits for, and weights it 0)."""
        if not self.distributed:
            return list(items), 1.0
        k = math.ceil(len(items) / self.world_size)
        mine = list(items[self.rank * k:(self.rank + 1) * k])
        return (mine, 1.0) if mine else (list(items[:1]), 0.0)

    # --- metrics --------------------------------------------------------------------------

    def sum(self, x: float) -> float:
        if not self.distributed:
            return x
        t = torch.tensor([float(x)], dtype=torch.float64, device=self.acc.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def mean(self, x: float) -> float:
        return self.sum(x) / self.world_size if self.distributed else x

    def mean_dict(self, row: dict) -> dict:
        """Every finite numeric value of `row` averaged over processes (the same keys on every rank)."""
        if not self.distributed:
            return row
        keys = sorted(k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        vals = torch.tensor([float(row[k]) if row[k] is not None else float("nan") for k in keys],
                            dtype=torch.float64, device=self.acc.device)
        torch.distributed.all_reduce(vals)
        out = dict(row)
        for k, v in zip(keys, (vals / self.world_size).tolist()):
            out[k] = type(row[k])(v) if isinstance(row[k], int) and float(v).is_integer() else v
        return out

    def barrier(self) -> None:
        if self.acc is not None:
            self.acc.wait_for_everyone()

    # --- files ----------------------------------------------------------------------------

    def private_out(self, out):
        """Where this process writes its output: `out` on rank 0; elsewhere a private temporary
        folder, removed when the process exits (only rank 0 writes the real output)."""
        if self.is_main:
            return out
        import atexit

        tmp = tempfile.mkdtemp(prefix=f"instructrl-rank{self.rank}-")
        atexit.register(shutil.rmtree, tmp, True)
        return type(out)(os.path.join(tmp, "out")) if not isinstance(out, str) else os.path.join(tmp, "out")


def setup(mixed_precision: str = "") -> Dist:
    """A `Dist` for this process: Accelerate when launched distributed or when mixed precision is
    asked for, else the no-op single-process one."""
    if not launched() and mixed_precision in ("", "no"):
        return Dist(None)
    from accelerate import Accelerator

    # On a machine without CUDA, Accelerate needs cpu=True to run several processes (gloo).
    return Dist(Accelerator(mixed_precision=mixed_precision or None, cpu=not torch.cuda.is_available()))
