"""One run lifecycle for every trainer — pretraining, SFT, the reward model and PPO.

A stage calls, top to bottom::

    run = Run.start("sft", cfg, out, inputs={"model": ..., "data": ...}, overwrite=..., resume=...)
    with run:                               # a failure removes the staging folder, nothing else
        ...load models, read data...
        logger = run.logger(LOG_FIELDS)     # log.csv (+ TensorBoard...) in the staging folder
        state = run.resume_state()          # None, or the last checkpoint of this very run
        for step ...:
            good = run.guard.ok(step, loss, grad_norm)     # NaN/inf: skip the step, stop after N
            run.checkpoint(step, total_steps, good, lambda: {...})
        run.finish(metrics, [("", policy, tok)], merge=cfg.lora_merge)

What it guarantees, for every stage alike:

* **Inputs.** Every input file and model folder is read once, streamed, into a SHA-256 before any
  model loads: a file that cannot be read (missing, a symlink loop, a folder) is one clear error,
  and the same file given twice in one list (e.g. `rm --data a.jsonl a.jsonl`) is an error rather
  than data counted twice. No output may be, contain or sit inside an input.
* **Fingerprint** = the stage, the resolved config (`config.NOT_HASHED` fields aside) and the
  inputs' *contents* (a model folder: its weight, config and tokenizer files). It decides whether
  a checkpoint belongs to this run; a changed input refuses `--resume` and names what changed.
* **Output folder.** A non-empty `out` is replaced only with `--overwrite`, and only once the new
  run is complete: everything is written into a hidden staging folder beside `out`
  (`.NAME.running/`, locked by `owner.pid`), fsynced and swapped into place in one atomic rename
  (`models.replace_dir`). A failure or a kill leaves the old output as it was.
* **Checkpoints** live beside the output, in `NAME.checkpoint/`: tensors in `tensors.safetensors`,
  everything else (step, every RNG state, data position, KL controller, log rows, optimizer
  settings...) as plain JSON in `state.json`, whose fingerprint is checked before any tensor is
  read. No pickle: nothing here can run code from a checkpoint. A checkpoint is written into a
  temporary folder and swapped in atomically, and removed once the output is in place.
* **Bad steps.** `BadStepGuard`: a NaN/inf loss or gradient skips the step (logged); too many in a
  row stop the run, naming the last good checkpoint.
* **Full disk.** A write that fails for lack of space is one error, "no space left on device:
  PATH", and leaves nothing behind but the old output (and the last good checkpoint).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from instructrl import lora
from instructrl.config import NOT_HASHED, save_config, to_dict
from instructrl.errors import InstructRLError, TrainingStopped
from instructrl.models import replace_dir
from instructrl.train_utils import MetricsLogger, stage_trackers

log = logging.getLogger(__name__)

RUN_FILE = "run.json"  # marks a folder as a run of ours, with the fingerprint of what made it
CHECKPOINT_TENSORS = "tensors.safetensors"
CHECKPOINT_STATE = "state.json"
#: Consecutive non-finite steps (loss or gradient NaN/inf) after which a stage stops.
MAX_BAD_STEPS = 5
#: Files of a model folder that make the model (hashed into a run's fingerprint); the logs and
#: metrics a stage writes beside them do not.
NOT_MODEL_FILES = {"config.yaml", "log.csv", "metrics.json", RUN_FILE, "stage.json", "README.md", "eval.json",
                   "samples.json", "samples.jsonl"}


class DiskFullError(InstructRLError):
    """A write failed because the device is full."""

    def __init__(self, path, note: str = ""):
        self.path = path
        super().__init__(f"no space left on device: {path}{'; ' + note if note else ''}")


def is_disk_full(e: BaseException) -> bool:
    """An OSError ENOSPC, safetensors' own error for it, or our DiskFullError."""
    if isinstance(e, DiskFullError):
        return True
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return type(e).__name__ == "SafetensorError" and ("code: 28" in text or "No space left" in text)


# ---------------------------------------------------------------------------------------------
# Inputs and the fingerprint
# ---------------------------------------------------------------------------------------------


def file_digest(path) -> str:
    """SHA-256 of a file's bytes, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_digest(name: str, path) -> str:
    """The content hash of one input: a file's bytes, or a model folder's model files (names and
    bytes; the logs a stage wrote beside them excluded). Unreadable input: one clear error."""
    p = Path(path)
    try:
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(p.iterdir()):
                if f.is_file() and f.name not in NOT_MODEL_FILES and not f.name.startswith("."):
                    h.update(f.name.encode() + b"\0" + file_digest(f).encode())
            return "dir:" + h.hexdigest()
        return file_digest(p)
    except FileNotFoundError:
        raise InstructRLError(f"{name}: {path}: file not found") from None
    except OSError as e:
        raise InstructRLError(f"{name}: cannot read {path}: {e.strerror or e}") from None


def _paths(value) -> list:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)


def digest_inputs(inputs: dict) -> dict:
    """`{name: digest}` (a list of digests for a list of files) of every input path; the same file
    (the same contents) twice in one list is an error."""
    out = {}
    for name, value in inputs.items():
        paths = _paths(value)
        digests = [input_digest(name, p) for p in paths]
        seen: dict[str, Any] = {}
        for p, d in zip(paths, digests):
            if d in seen:
                raise InstructRLError(f"{name}: {seen[d]} and {p} are the same file (identical contents); "
                                      f"its records would count twice — give each file once")
            seen[d] = p
        out[name] = None if value is None or value == "" else (digests if not isinstance(value, (str, Path)) else digests[0])
    return out


def hashed_config(cfg) -> dict:
    """The resolved config as a plain dict, without the fields that never change what is computed."""
    def drop(d):
        return {k: drop(v) for k, v in d.items() if k not in NOT_HASHED} if isinstance(d, dict) else d
    return drop(to_dict(cfg))


def fingerprint(stage: str, cfg, digests: dict, values: dict | None = None) -> str:
    """What makes a run 'the same': its stage, resolved config and inputs' contents (not their paths)."""
    blob = json.dumps({"stage": stage, "config": hashed_config(cfg), "inputs": digests, "values": values or {}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The output folder
# ---------------------------------------------------------------------------------------------


def _resolve(path, name: str) -> Path:
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop
        raise InstructRLError(f"{name}: cannot read {path}: {'too many levels of symbolic links' if isinstance(e, RuntimeError) else e}") from None


def refuse_input_folders(out, inputs: dict) -> None:
    """Never write an output that is, contains or sits inside an input (even with --overwrite)."""
    out_r = _resolve(out, "output")
    for name, value in inputs.items():
        for p in _paths(value):
            p = _resolve(p, name)
            if out_r == p or out_r in p.parents:
                raise InstructRLError(f"output folder {out} would overwrite the input {p}; choose another --out")
            if p.is_dir() and p in out_r.parents:
                raise InstructRLError(f"output folder {out} is inside the input folder {p} ({name}); "
                                      f"choose another --out")


def describe_existing(out: Path, stage: str, fp: str) -> str:
    """What a non-empty output folder holds, in words."""
    try:
        prev = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return "files that are not from an instructrl run"
    if not isinstance(prev, dict):
        return "files that are not from an instructrl run"
    if prev.get("stage") == stage and prev.get("fingerprint") == fp:
        return f"a finished {stage} run with these same settings and inputs"
    return f"a different {prev.get('stage', 'unknown')} run"


def guard_output(out, stage: str, fp: str, overwrite: bool) -> None:
    """A missing or empty `out` is fine; anything else needs --overwrite (and is replaced only once
    the new run is complete). Checked before any model loads."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise InstructRLError(f"output {out} is a broken symbolic link; choose another --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise InstructRLError(f"output {out} exists and is not a folder; choose another --out")
    if overwrite or not any(out.iterdir()):
        return
    raise InstructRLError(f"output folder {out} already holds {describe_existing(out, stage, fp)}; choose another "
                          f"--out or pass --overwrite to replace it (it is replaced only once the new run is complete)")


def staging_dir(out) -> Path:
    """The hidden folder beside `out` a run writes into (moved into place at the end).

    `owner.pid` in it names the process that owns the run: a second run into the same `out` while
    that process lives is an error (it would delete the first one's files); a leftover of a dead run
    is replaced.
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
    d.mkdir()
    try:
        lock.write_text(str(owner))
    except BaseException as e:
        shutil.rmtree(d, ignore_errors=True)
        if is_disk_full(e):
            raise DiskFullError(d) from None
        raise
    return d


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def fsync_tree(path) -> None:
    for p in Path(path).rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def write_json(path, obj) -> None:
    """Write JSON through a temp file + rename, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=_plain_number))
    os.replace(tmp, path)


def _plain_number(v):
    if isinstance(v, torch.Tensor):
        return v.item()
    return str(v)


# ---------------------------------------------------------------------------------------------
# Checkpoint state: tensors to safetensors, everything else to JSON (no pickle)
# ---------------------------------------------------------------------------------------------


def flatten_state(obj) -> tuple[dict, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, tensors, numbers, strings, None, NumPy arrays)
    into a JSON skeleton and a flat `{key: tensor}` dict for safetensors.

    Tensors become `{"__tensor__": key}`, tuples `{"__tuple__": [...]}`, dicts with non-string keys
    (an optimizer's parameter indices) `{"__items__": [[key, value], ...]}`, NumPy arrays
    `{"__ndarray__": [...], "dtype": ...}`. Tensors sharing memory (tied weights) are stored once.
    """
    tensors: dict[str, torch.Tensor] = {}
    by_storage: dict[int, list[tuple[torch.Tensor, str]]] = {}

    def tensor_key(t: torch.Tensor, path: str) -> str:
        t = t.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else 0
        for other, key in by_storage.get(ptr, []) if ptr else []:
            if (other.shape, other.stride(), other.storage_offset(), other.dtype) == \
                    (t.shape, t.stride(), t.storage_offset(), t.dtype):
                return key  # the very same tensor (tied weights)
        shared = ptr and ptr in by_storage
        stored = t.to("cpu", copy=bool(shared) or not t.is_contiguous()).contiguous()
        if ptr:
            by_storage.setdefault(ptr, []).append((t, path))
        tensors[path] = stored
        return path

    def walk(o, path: str):
        if isinstance(o, torch.Tensor):
            return {"__tensor__": tensor_key(o, path)}
        if isinstance(o, dict):
            if all(isinstance(k, str) for k in o):
                return {k: walk(v, f"{path}/{k}") for k, v in o.items()}
            return {"__items__": [[walk(k, f"{path}/#k{i}"), walk(v, f"{path}/{i}")]
                                  for i, (k, v) in enumerate(o.items())]}
        if isinstance(o, tuple):
            return {"__tuple__": [walk(v, f"{path}/{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(o)]
        if isinstance(o, (bool, int, float, str)) or o is None:
            return o
        if isinstance(o, np.ndarray):
            return {"__ndarray__": o.tolist(), "dtype": str(o.dtype)}
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"checkpoint state at {path}: cannot store a {type(o).__name__}")

    return walk(obj, "s"), tensors


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    """The inverse of `flatten_state`."""
    def walk(o):
        if isinstance(o, dict):
            if set(o) == {"__tensor__"}:
                return tensors[o["__tensor__"]]
            if set(o) == {"__tuple__"}:
                return tuple(walk(v) for v in o["__tuple__"])
            if set(o) == {"__items__"}:
                return {_hashable(walk(k)): walk(v) for k, v in o["__items__"]}
            if set(o) == {"__ndarray__", "dtype"}:
                return np.array(o["__ndarray__"], dtype=o["dtype"])
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(skeleton)


def _hashable(k):
    return tuple(k) if isinstance(k, list) else k


def rng_state() -> dict:
    """Every global RNG a stage may draw from: torch (CPU and CUDA), Python's `random`, NumPy."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(out) -> Path:
    """Where the run that writes the folder `out` keeps its resume state: the sibling `NAME.checkpoint/`."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def save_checkpoint(ckpt_dir, manifest: dict, state: dict) -> Path:
    """Write a checkpoint folder atomically: `state.json` (the `manifest` — stage, fingerprint,
    step — plus the JSON skeleton of `state`) and `tensors.safetensors`, in a temporary folder that
    is fsynced and swapped into place. A kill at any moment leaves the previous checkpoint or the
    new one, whole; a full disk leaves the previous one."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    skeleton, tensors = flatten_state(state)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.tmp-", dir=ckpt_dir.parent))
    try:
        save_file(tensors, str(tmp / CHECKPOINT_TENSORS))
        with open(tmp / CHECKPOINT_STATE, "w", encoding="utf-8") as fh:
            json.dump({**manifest, "state": skeleton}, fh)
        fsync_tree(tmp)
        replace_dir(tmp, ckpt_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise DiskFullError(ckpt_dir) from None
        raise
    fsync_dir(ckpt_dir.parent)
    return ckpt_dir


def read_checkpoint_manifest(ckpt_dir) -> dict | None:
    """The checkpoint's `state.json` (plain JSON: safe to read before any check), or None when there
    is none. A folder without one (e.g. a legacy pickle `state.pt`) holds no usable checkpoint."""
    p = Path(ckpt_dir) / CHECKPOINT_STATE
    if not p.is_file():
        return None
    with open(p, encoding="utf-8") as fh:
        m = json.load(fh)
    if not isinstance(m, dict):
        raise ValueError("state.json is not a JSON object")
    return m


def load_checkpoint_state(ckpt_dir, manifest: dict):
    """The state saved with `manifest` (tensors read by safetensors, never by pickle)."""
    return unflatten_state(manifest["state"], load_file(str(Path(ckpt_dir) / CHECKPOINT_TENSORS)))


def what_changed(manifest: dict, digests: dict, cfg) -> str:
    """In words: which inputs and config fields differ between a checkpoint and this run."""
    parts = []
    old = manifest.get("inputs") or {}
    for name in sorted(set(old) | set(digests)):
        if old.get(name) != digests.get(name):
            parts.append(f"input {name} ({'contents changed' if old.get(name) and digests.get(name) else 'added or removed'})")
    old_cfg, new_cfg = manifest.get("config") or {}, hashed_config(cfg)

    def diff(a, b, prefix=""):
        for k in sorted(set(a) | set(b)):
            va, vb = a.get(k), b.get(k)
            if isinstance(va, dict) and isinstance(vb, dict):
                diff(va, vb, f"{prefix}{k}.")
            elif va != vb:
                parts.append(f"{prefix}{k} {va!r} -> {vb!r}")

    diff(old_cfg, new_cfg)
    return ", ".join(parts) or "its stage or extra inputs"


# ---------------------------------------------------------------------------------------------
# Non-finite steps
# ---------------------------------------------------------------------------------------------


class BadStepGuard:
    """Skip optimizer steps whose loss or gradient norm is NaN/inf, and stop after too many in a row.

    `ok(step, loss, grad_norm)` returns True when the step may be taken. A bad step is logged (the
    caller must then not call `optimizer.step()`); at the `max_bad`-th consecutive one the guard is
    `exhausted` and, with `raise_when_exhausted` (SFT, RM, pretraining), raises TrainingStopped
    naming the last good checkpoint. PPO instead stops and saves the last good weights. A skipped
    step never touches the weights, so the state before it is still good.
    """

    def __init__(self, stage: str, ckpt_dir, max_bad: int = MAX_BAD_STEPS, raise_when_exhausted: bool = True):
        self.stage, self.ckpt_dir, self.max_bad = stage, Path(ckpt_dir), max(1, max_bad)
        self.raise_when_exhausted = raise_when_exhausted
        self.streak = 0
        self.skipped = 0

    @property
    def exhausted(self) -> bool:
        return self.streak >= self.max_bad

    def ok(self, step: int, loss, grad_norm=None) -> bool:
        values = [float(loss)] + ([float(grad_norm)] if grad_norm is not None else [])
        if all(math.isfinite(v) for v in values):
            self.good()
            return True
        what = "loss" if not math.isfinite(values[0]) else "gradient norm"
        self.bad(step, f"non-finite {what} ({', '.join(f'{v:g}' for v in values)}); optimizer step skipped")
        return False

    def good(self) -> None:
        """A step was taken: the streak of bad ones ends."""
        self.streak = 0

    def bad(self, step: int, why: str) -> None:
        """Count one bad step (or batch) and log why; stop when that makes too many in a row."""
        self.streak += 1
        self.skipped += 1
        log.warning("%s step %d: %s (%d in a row)", self.stage, step, why, self.streak)
        if self.exhausted and self.raise_when_exhausted:
            ckpt = self.ckpt_dir / CHECKPOINT_STATE
            where = (f"the last good checkpoint is kept in {self.ckpt_dir} (--resume continues from it)"
                     if ckpt.exists() else "no checkpoint had been written yet (set checkpoint_every)")
            raise TrainingStopped(
                f"{self.stage} stopped at step {step}: {self.streak} consecutive steps with a non-finite loss or "
                f"gradient (NaN/inf); {where}. Lower {self.stage}.lr or check the data")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One training run's folders and identity; see the module docstring for the lifecycle."""

    stage: str
    cfg: Any
    out: Path  # the output folder (on ranks other than 0: a private temporary one)
    inputs: dict  # name -> path(s), as given
    digests: dict  # name -> content hash(es)
    fingerprint: str
    overwrite: bool
    resume: bool | str
    staging: Path
    guard: BadStepGuard
    is_main: bool = True
    finished: bool = False
    _logger: Any = None
    values: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def start(cls, stage: str, cfg, out, inputs: dict, overwrite: bool = False, resume: bool | str = False,
              values: dict | None = None, dist=None, max_bad_steps: int = MAX_BAD_STEPS,
              stop_on_bad_steps: bool = True) -> "Run":
        """Check the output folder and hash the inputs (before any model loads), then take the
        staging folder. `inputs`: name -> a path, a list of paths, or None; `values`: other things
        that make the run (e.g. the name of a reward function), part of the fingerprint."""
        out = Path(out)
        refuse_input_folders(out, inputs)
        digests = digest_inputs(inputs)
        fp = fingerprint(stage, cfg, digests, values)
        if resume is True:
            _require_checkpoint(checkpoint_dir(out))
        guard_output(out, stage, fp, overwrite)
        if dist is not None:
            out = Path(dist.private_out(str(out)))  # only rank 0 writes the real output folder
        staging = staging_dir(out)
        guard = BadStepGuard(stage, checkpoint_dir(out), max_bad_steps, stop_on_bad_steps)
        return cls(stage, cfg, out, inputs, digests, fp, overwrite, resume, staging, guard,
                   is_main=dist is None or dist.is_main, values=dict(values or {}))

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._logger is not None:
            self._logger.close()
        if not self.finished:  # a failed or interrupted run: its scratch goes, the old output stays
            shutil.rmtree(self.staging, ignore_errors=True)
        if exc is not None and is_disk_full(exc):
            path = exc.path if isinstance(exc, DiskFullError) else getattr(exc, "filename", None) or self.staging.parent
            note = ""
            try:
                step = (read_checkpoint_manifest(self.checkpoint_dir) or {}).get("step")
            except (OSError, ValueError):
                step = None
            if step is not None:  # a whole checkpoint is not debris: it is what --resume needs
                note = (f"the last checkpoint (step {step}) is kept in {self.checkpoint_dir}: free some space and "
                        f"rerun with --resume")
            raise DiskFullError(path, note) from None
        return False

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoint_dir(self.out)

    def logger(self, fields: list[str], step_field: str = "step", rows: list[dict] = ()):
        """log.csv in the staging folder, plus the trackers `cfg.report_to` asks for (rank 0 only);
        `rows` (a resumed run's log so far) are logged again first."""
        self._logger = MetricsLogger(self.staging / "log.csv", fields, step_field=step_field,
                                     tracker=stage_trackers(self.cfg, self.staging, self.stage, self.is_main,
                                                            self.out))
        for r in rows:
            self._logger.log(**r)
        return self._logger

    # -- checkpoints -----------------------------------------------------------------------------

    def resume_state(self) -> dict | None:
        """The state of the last checkpoint of this very run, or None to start from the beginning.

        `resume` False: None. True (`--resume`): the checkpoint must exist and be this run's, else an
        error says what differs. "auto" (the pipeline): used when it matches; a stale or unreadable
        one is removed. The fingerprint is compared before any tensor is read."""
        if not self.resume:
            return None
        ckpt = self.checkpoint_dir
        strict = self.resume is True
        try:
            manifest = read_checkpoint_manifest(ckpt)
        except (OSError, ValueError) as e:
            return self._unusable(ckpt, f"cannot read {ckpt / CHECKPOINT_STATE}: {e}", strict)
        if manifest is None:
            if strict:
                _require_checkpoint(ckpt)
            return None
        if manifest.get("stage") != self.stage or manifest.get("fingerprint") != self.fingerprint:
            why = what_changed(manifest, self.digests, self.cfg)
            return self._unusable(ckpt, f"checkpoint {ckpt} is from a different {manifest.get('stage', 'unknown')} "
                                        f"run ({why}); resume with the original settings and inputs, or run without "
                                        f"--resume to start over", strict)
        try:
            state = load_checkpoint_state(ckpt, manifest)
        except Exception as e:  # noqa: BLE001 - a damaged file: ours are written atomically
            return self._unusable(ckpt, f"cannot read checkpoint {ckpt}: {type(e).__name__}: {e}", strict)
        log.info("resuming %s from %s at step %s", self.stage, ckpt, manifest.get("step"))
        return state

    def _unusable(self, ckpt: Path, message: str, strict: bool):
        if strict:
            raise InstructRLError(message)
        log.warning("%s; starting from the beginning", message)
        shutil.rmtree(ckpt, ignore_errors=True)
        return None

    def checkpoint(self, step: int, total: int, good: bool, state_fn: Callable[[], dict]) -> bool:
        """Save `state_fn()` every `cfg.checkpoint_every` steps (never after the last step, nor
        after a skipped one). Returns whether it saved."""
        every = getattr(self.cfg, "checkpoint_every", 0)
        if not (every and step % every == 0 and step < total and good):
            return False
        manifest = {"stage": self.stage, "fingerprint": self.fingerprint, "step": step,
                    "inputs": self.digests, "config": hashed_config(self.cfg)}
        save_checkpoint(self.checkpoint_dir, manifest, state_fn())
        return True

    # -- the end ---------------------------------------------------------------------------------

    def finish(self, metrics: dict, models: list[tuple[str, Any, Any]], merge: bool = True) -> Path:
        """Write the models (`(sub-folder, model, tokenizer)`; "" = the output itself) and the run's
        files (config.yaml, run.json, metrics.json, beside log.csv and the trackers' folders) into
        the staging folder, fsync it, and swap it into place as `out`. The checkpoint then goes."""
        if self._logger is not None:
            self._logger.close()
        for sub, model, _tok in models:  # never a complete-looking folder of NaN weights
            bad = next((n for n, p in model.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())), None)
            if bad is not None:
                raise TrainingStopped(f"{self.stage}: the trained weights hold NaN/inf (tensor {bad}{' of ' + sub if sub else ''}); "
                                      f"nothing was written to {self.out}. Lower the learning rate")
        try:
            for sub, model, tok in models:
                lora.write_model(model, tok, self.staging / sub if sub else self.staging, merge)
            save_config(self.cfg, self.staging)
            write_json(self.staging / RUN_FILE, {
                "stage": self.stage, "fingerprint": self.fingerprint, "inputs": self._input_paths(),
                "digests": self.digests, **({"values": self.values} if self.values else {})})
            write_json(self.staging / "metrics.json", _finite(metrics))
            (self.staging / "owner.pid").unlink(missing_ok=True)
            fsync_tree(self.staging)
            os.chmod(self.staging, 0o755)
        except BaseException as e:
            if is_disk_full(e):
                raise DiskFullError(self.staging.parent) from None
            raise
        if Path(self.out).exists() and any(Path(self.out).iterdir()) and not self.overwrite:
            raise InstructRLError(f"output folder {self.out} appeared while the run was going on; "
                                  f"pass --overwrite to replace it")
        replace_dir(self.staging, self.out)
        self.finished = True
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return self.out

    def _input_paths(self) -> dict:
        return {k: (None if v is None else [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v))
                for k, v in self.inputs.items()}


def _require_checkpoint(ckpt: Path) -> None:
    if (ckpt / CHECKPOINT_STATE).is_file():
        return
    legacy = " (an old-format state.pt is never loaded: it is a pickle, which could run code)" \
        if (ckpt / "state.pt").exists() else ""
    raise InstructRLError(f"nothing to resume: {ckpt} holds no checkpoint{legacy}; run without --resume, "
                          f"and set checkpoint_every to checkpoint")


def _finite(metrics: dict) -> dict:
    """metrics.json holds numbers or null, never NaN/inf (which JSON does not allow)."""
    def clean(v):
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return clean(metrics)
