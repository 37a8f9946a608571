"""Plain helpers the training stages share: seeding, AdamW + cosine schedule, a metrics log,
a progress bar, and the run-folder guard.

Nothing here owns a loop: `sft.py`, `rm.py` and `ppo.py` each keep their one visible loop and call
these small functions, so a reader never has to chase a callback to see what a step does.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch

from instructrl.config import config_hash, save_config
from instructrl.errors import InstructRLError, TrainingStopped

log = logging.getLogger(__name__)

RUN_FILE = "run.json"  # marks a folder as a run of ours, with the fingerprint of what made it


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


def make_optimizer(model, lr: float, beta1: float, beta2: float, weight_decay: float = 0.0, eps: float = 1e-8):
    """AdamW over the trainable parameters; weight decay only on matrices (not biases, norms).

    The paper uses Adam with beta = (0.9, 0.95) for every stage ([IG] App. C).
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    use_fused = all(p.is_cuda for p in decay + no_decay) and bool(decay + no_decay)
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


def write_json(path, obj) -> None:
    """Write JSON through a temp file + rename, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=_plain))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Progress bar
# ---------------------------------------------------------------------------------------------


def progress(total: int, desc: str, unit: str = "step", disable: bool | None = None):
    """A tqdm bar on a terminal, periodic one-line logs when stderr is not one (feedback.progress)."""
    from instructrl.feedback import progress as _progress

    return _progress(total, desc, unit, disable)


class Timer:
    """Wall-clock seconds since creation (`.elapsed`)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


# ---------------------------------------------------------------------------------------------
# Run folders
# ---------------------------------------------------------------------------------------------


def run_fingerprint(stage: str, cfg, inputs: dict) -> str:
    """A short hash of the stage, its config and its inputs (paths resolved): what makes a run 'the same'."""
    def res(v):
        if isinstance(v, (list, tuple)):
            return [res(x) for x in v]
        return str(Path(v).resolve()) if isinstance(v, (str, Path)) and v else v

    resolved = {k: res(v) for k, v in inputs.items()}
    return config_hash(cfg, {"stage": stage, "inputs": resolved})


def guard_run_dir(out, stage: str, fingerprint: str, overwrite: bool = False) -> None:
    """Refuse to write into `out` when it holds something other than this very run.

    An absent or empty folder is fine; so is a folder holding an earlier run with the same
    fingerprint (same stage, config and inputs: re-running replaces it). Anything else — another
    run, a model folder, a user's files — is an InstructRLError unless `overwrite` is set. Called
    before any training so that a long run cannot end in a refusal.
    """
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise InstructRLError(f"output {out} exists and is not a folder; choose another --out")
    if not any(out.iterdir()) or overwrite:
        return
    marker = out / RUN_FILE
    if marker.exists():
        try:
            prev = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            prev = {}
        if prev.get("stage") == stage and prev.get("fingerprint") == fingerprint:
            return
        what = f"a different {prev.get('stage', 'unknown')} run"
    else:
        what = "files that are not from this run"
    raise InstructRLError(
        f"output folder {out} already holds {what}; choose another --out or pass --overwrite to replace it"
    )


def refuse_input_folders(out, *inputs) -> None:
    """Never replace a folder the run reads from (or one that contains it), even with --overwrite."""
    out_r = Path(out).resolve()
    for p in inputs:
        if not p:
            continue
        p = Path(p).resolve()
        if out_r == p or out_r in p.parents:
            raise InstructRLError(f"output folder {out} would overwrite the input {p}; choose another --out")


def staging_dir(out) -> Path:
    """A hidden scratch folder beside `out` for logs written during the run (moved in at the end).

    The final folder appears only when the run succeeds (models.save_model_folder is atomic), so a
    failed run never leaves something that looks like a finished one. `owner.pid` in it names the
    process that owns the run: a second run into the same `out` while that process lives is an
    error (it would delete the first one's logs); a leftover of a dead run is replaced.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    d = out.parent / f".{out.name}.running"
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ  # torchrun / accelerate / mp.spawn ranks
    # The process that owns the run: the launcher (the ranks' parent) of a distributed launch, else this one.
    owner = os.getppid() if launched else os.getpid()
    lock = d / "owner.pid"
    if lock.exists():
        try:
            other = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            other = 0
        if other and other != owner and _alive(other):
            raise InstructRLError(
                f"another run (process {other}) is writing {out} right now; wait for it to finish, stop it, "
                f"or choose another --out (if no such run is going on, delete {d})")
        if other == owner and launched:  # another rank of this same launch has set it up
            return d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(exist_ok=True)
    lock.write_text(str(owner))
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_files(stage_dir: Path, cfg, stage: str, fingerprint: str, inputs: dict, metrics: dict) -> dict:
    """The non-weight files of a finished run, as `extra` for models.save_model_folder:
    config.yaml (the resolved config), run.json (what made it), metrics.json, and every file the
    run wrote into its staging folder (log.csv ...; tracker folders such as tensorboard/, as bytes)."""
    save_config(cfg, stage_dir)
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(stage_dir.iterdir())
             if p.is_file() and p.name != "owner.pid"}
    files.update(folder_files(stage_dir))
    files[RUN_FILE] = {"stage": stage, "fingerprint": fingerprint,
                       "inputs": {k: (None if v is None else [str(x) for x in v] if isinstance(v, (list, tuple))
                                      else str(v)) for k, v in inputs.items()}}
    files["metrics.json"] = json.loads(json.dumps(metrics, default=_plain))
    return files


def tree_files(root, name: str) -> dict:
    """Every plain file under `root` as `{"name/relative/path": bytes}` (symlinks skipped), for the
    `extra` of models.save_model_folder: how a tracker's folder (tensorboard/ ...) joins a run folder."""
    root = Path(root)
    files = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in sorted(names):
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                files[f"{name}/{p.relative_to(root).as_posix()}"] = p.read_bytes()
    return files


def folder_files(stage_dir) -> dict:
    """tree_files of every sub-folder of `stage_dir` (the trackers' tensorboard/, wandb/, mlruns/)."""
    files = {}
    for p in sorted(Path(stage_dir).iterdir()):
        if p.is_dir() and not p.is_symlink():
            files.update(tree_files(p, p.name))
    return files


def stage_trackers(cfg, run_dir, stage: str, is_main: bool = True, name: str = ""):
    """The trackers `cfg.report_to` asks for (tracking.make_trackers), writing under `run_dir`, with
    tags `<stage>/<column>`; none on processes other than rank 0 (only rank 0 logs)."""
    from instructrl.config import to_dict
    from instructrl.tracking import make_trackers

    kinds = getattr(cfg, "report_to", ["none"]) if is_main else ["none"]
    return make_trackers(kinds, run_dir, to_dict(cfg), run_name=f"{stage}-{Path(str(name)).name}" if name else stage, prefix=f"{stage}/")


def fit_max_len(cfg, model):
    """`cfg` with `max_len` no longer than the model's context (logged when it is cut): a record
    longer than that is then a DataError naming its file and line (or is truncated, per
    `cfg.truncation`) instead of an indexing failure inside the model."""
    import dataclasses

    conf = getattr(model, "config", None)
    n_ctx = getattr(conf, "n_positions", None) or getattr(conf, "max_position_embeddings", None)
    if isinstance(n_ctx, int) and n_ctx > 0 and cfg.max_len > n_ctx:
        log.warning("max_len %d exceeds the model's context of %d tokens: using max_len=%d (longer records are "
                    "refused or truncated as `truncation` says)", cfg.max_len, n_ctx, n_ctx)
        return dataclasses.replace(cfg, max_len=n_ctx)
    return cfg


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------
# Checkpoints (resume) and non-finite steps
# ---------------------------------------------------------------------------------------------

CHECKPOINT_FILE = "state.pt"
#: Consecutive non-finite steps (loss or gradient NaN/inf) after which a stage stops.
MAX_BAD_STEPS = 5


def checkpoint_dir(out) -> Path:
    """Where a stage that writes the folder `out` keeps its resume state: the sibling `<out>.checkpoint/`."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def rng_state() -> dict:
    """Every global RNG a stage may draw from: torch (CPU and CUDA), Python's `random`, NumPy."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])


def fsync_dir(path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(ckpt_dir, state: dict) -> Path:
    """Write `state` to `ckpt_dir/state.pt` atomically: a temp file, fsync, rename, fsync of the folder.

    A crash (even kill -9) at any moment leaves either the previous state.pt or the new one, whole.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / CHECKPOINT_FILE
    tmp = ckpt_dir / f".{CHECKPOINT_FILE}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(ckpt_dir)
    return final


def load_checkpoint(ckpt_dir, stage: str, fingerprint: str, resume) -> dict | None:
    """The state to resume from, or None to start from the beginning.

    `resume`: False -> None. True (`--resume`) -> the checkpoint must exist and come from the
    same run (same stage, config and inputs), else an InstructRLError says why. "auto" (the
    pipeline) -> the checkpoint if it exists and matches; a stale one is removed and None returned.
    """
    if not resume:
        return None
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / CHECKPOINT_FILE
    strict = resume is True
    if not path.exists():
        if strict:
            raise InstructRLError(f"nothing to resume: {path} does not exist (no checkpoint was written; "
                                  f"run without --resume, and set checkpoint_every to checkpoint)")
        return None
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as e:  # unreadable: not ours, or a disk fault (our writes are atomic)
        if strict:
            raise InstructRLError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
        log.warning("ignoring unreadable checkpoint %s (%s); starting from the beginning", path, e)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return None
    if state.get("stage") != stage or state.get("fingerprint") != fingerprint:
        if strict:
            raise InstructRLError(
                f"checkpoint {path} is from a different {state.get('stage', 'unknown')} run (its config or inputs "
                f"differ); resume with the original settings, or run without --resume to start over")
        log.warning("ignoring checkpoint %s of a different run; starting from the beginning", path)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        return None
    log.info("resuming %s from %s at step %s", stage, path, state.get("step"))
    return state


def remove_checkpoint(ckpt_dir) -> None:
    """Drop the resume state once the final folder is safely written."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)


class BadStepGuard:
    """Skip optimizer steps whose loss or gradient norm is NaN/inf, and stop after too many in a row.

    `ok(step, loss, grad_norm)` returns True when the step may be taken. A bad step is logged
    (the caller must then not call `optimizer.step()`); the `max_bad`-th consecutive bad step
    raises TrainingStopped, naming the last good checkpoint. A skipped step never touches the
    weights, so the state before it is still good.
    """

    def __init__(self, stage: str, ckpt_dir, max_bad: int = MAX_BAD_STEPS, streak: int = 0):
        self.stage, self.ckpt_dir, self.max_bad, self.streak = stage, Path(ckpt_dir), max(1, max_bad), streak
        self.skipped = 0

    def ok(self, step: int, loss, grad_norm=None) -> bool:
        values = [float(loss)] + ([float(grad_norm)] if grad_norm is not None else [])
        if all(math.isfinite(v) for v in values):
            self.streak = 0
            return True
        self.streak += 1
        self.skipped += 1
        what = "loss" if not math.isfinite(values[0]) else "gradient norm"
        log.warning("%s step %d: non-finite %s (%s); optimizer step skipped (%d in a row)", self.stage, step, what,
                    ", ".join(f"{v:g}" for v in values), self.streak)
        if self.streak >= self.max_bad:
            ckpt = self.ckpt_dir / CHECKPOINT_FILE
            where = (f"the last good checkpoint is kept in {ckpt} (--resume continues from it)" if ckpt.exists()
                     else "no checkpoint had been written yet (set checkpoint_every)")
            raise TrainingStopped(
                f"{self.stage} stopped at step {step}: {self.streak} consecutive steps with a non-finite loss or "
                f"gradient (NaN/inf); {where}. Lower {self.stage}.lr or check the data")
        return False
