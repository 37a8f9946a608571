"""Plain helpers the training stages share: seeding, AdamW + cosine schedule, a metrics log,
trackers, a progress bar. (Run folders, fingerprints, checkpoints and the final save are the run
lifecycle's, in `run.py`.)

Nothing here owns a loop: `pretrain.py`, `sft.py`, `rm.py` and `ppo.py` each keep their one visible
loop and call these small functions, so a reader never has to chase a callback to see what a step does.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import torch

from instructrl import feedback
from instructrl.config import to_dict
from instructrl.models import context_length
from instructrl.tracking import make_trackers

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (if present) and torch (CPU and CUDA)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:  # numpy is a dependency, but seeding must never be the thing that fails
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# ---------------------------------------------------------------------------------------------
# Optimizer and schedule
# ---------------------------------------------------------------------------------------------


def make_optimizer(model, lr: float, beta1: float, beta2: float, weight_decay: float = 0.0, eps: float = 1e-8,
                   fused: bool = False):
    """AdamW over the trainable parameters; weight decay only on matrices (not biases, norms).

    The paper uses Adam with beta = (0.9, 0.95) for every stage ([IG] App. C). The fused kernel is
    used on CUDA always and on the CPU when `fused` (`TrainerOptions.fused_adamw`).
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    use_fused = (fused or all(p.is_cuda for p in decay + no_decay)) and bool(decay + no_decay)
    # On the CPU, the multi-tensor ("foreach") step makes temporaries as large as all the parameters
    # (0.5 GB for a 135M model, per optimizer); the per-tensor loop needs one parameter's worth and
    # is as fast there. Small models keep the default, so their runs are unchanged bit for bit.
    big_cpu = not use_fused and sum(p.numel() for p in decay + no_decay) > FOREACH_MAX_PARAMS
    return torch.optim.AdamW(groups, lr=lr, betas=(beta1, beta2), eps=eps, fused=use_fused or None,
                             foreach=False if big_cpu else None)


#: Above this many trainable parameters, AdamW on the CPU steps tensor by tensor (make_optimizer).
FOREACH_MAX_PARAMS = 20_000_000


def cosine_lr(step: int, total_steps: int, peak: float, min_ratio: float = 0.1, warmup_steps: int = 0) -> float:
    """LR at optimizer step `step` (0-based): optional linear warmup, then cosine from `peak` to
    `min_ratio * peak` at the last step. The paper's SFT and RM: no warmup, cosine to 10% ([IG] App. C)."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


# ---------------------------------------------------------------------------------------------
# Metrics log
# ---------------------------------------------------------------------------------------------


class MetricsLogger:
    """Append one row of metrics per call to a CSV (or JSONL, by extension) file, flushed at once.

    CSV columns are fixed by `fields` (a value for an unknown key is an error, a missing one is an
    empty cell), so the file can be tailed or loaded with pandas while a run goes on.
    `tracker` (tracking.make_trackers: TensorBoard, wandb, MLflow) gets every row's numbers too,
    at the row's `step_field` value; `close()` closes it.
    """

    def __init__(self, path, fields: list[str], tracker=None, step_field: str = "step"):
        self.path = Path(path)
        self.tracker = tracker
        self.step_field = step_field
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields = list(fields)
        self.jsonl = self.path.suffix == ".jsonl"
        self.rows: list[dict] = []  # every row logged, as written (a checkpoint stores them for resume)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")
        if not self.jsonl:
            self._writer = csv.DictWriter(self._fh, fieldnames=self.fields)
            self._writer.writeheader()
            self._fh.flush()

    def log(self, **row) -> None:
        unknown = set(row) - set(self.fields)
        if unknown:
            raise KeyError(f"metrics {sorted(unknown)} are not columns of {self.path.name}: {self.fields}")
        row = {k: _plain(v) for k, v in row.items()}
        self.rows.append(row)
        if self.jsonl:
            self._fh.write(json.dumps(row) + "\n")
        else:
            self._writer.writerow(row)
        self._fh.flush()
        if self.tracker:
            step = row.get(self.step_field)
            try:
                step = int(step)
            except (TypeError, ValueError):
                step = len(self.rows)
            # Rows restored from a CSV on resume (PPO) hold numbers as text: the trackers get numbers.
            self.tracker.log({k: _number(v) for k, v in row.items() if k != self.step_field}, step)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if self.tracker is not None:
            self.tracker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _number(v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _plain(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6)
    return v


# ---------------------------------------------------------------------------------------------
# Progress bar
# ---------------------------------------------------------------------------------------------


def progress(total: int, desc: str, unit: str = "step", disable: bool | None = None):
    """A tqdm bar on a terminal, periodic one-line logs when stderr is not one (feedback.progress)."""
    return feedback.progress(total, desc, unit, disable)


class Timer:
    """Wall-clock seconds since creation (`.elapsed`)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


# ---------------------------------------------------------------------------------------------
# Trackers, context, devices
# ---------------------------------------------------------------------------------------------


def stage_trackers(cfg, run_dir, stage: str, is_main: bool = True, name: str = ""):
    """The trackers `cfg.report_to` asks for (tracking.make_trackers), writing under `run_dir`, with
    tags `<stage>/<column>`; none on processes other than rank 0 (only rank 0 logs)."""
    kinds = getattr(cfg, "report_to", ["none"]) if is_main else ["none"]
    return make_trackers(kinds, run_dir, to_dict(cfg), run_name=f"{stage}-{Path(str(name)).name}" if name else stage, prefix=f"{stage}/")


def fit_max_len(cfg, model):
    """`cfg` with `max_len` no longer than the model's context (logged when it is cut): a record
    longer than that is then a DataError naming its file and line (or is truncated, per
    `cfg.truncation`) instead of an indexing failure inside the model."""
    n_ctx = context_length(model)
    if n_ctx is not None and cfg.max_len > n_ctx:
        log.warning("max_len %d exceeds the model's context of %d tokens: using max_len=%d (longer records are "
                    "refused or truncated as `truncation` says)", cfg.max_len, n_ctx, n_ctx)
        return dataclasses.replace(cfg, max_len=n_ctx)
    return cfg


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def warn_unknown_tokens(tok, items, what: str) -> int:
    """Log a warning when token sequences hold the tokenizer's unknown token — text the model
    cannot see (the world's character tokenizer knows printable ASCII and newline only). `items`:
    `(where, token ids)` pairs, e.g. ("demos.jsonl:7", ids). Returns how many items have one."""
    unk = getattr(tok, "unk_token_id", None)
    if unk is None or unk == getattr(tok, "pad_token_id", None):
        return 0
    bad = [where for where, ids in items if unk in ids]
    if bad:
        log.warning("%d %s contain characters this tokenizer does not know, read as %s (first: %s); the model "
                    "cannot see them", len(bad), what, tok.unk_token, bad[0])
    return len(bad)
