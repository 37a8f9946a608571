"""Experiment trackers: where a stage's metrics go besides its `log.csv` (`report_to` in each config).

* ``auto`` (the default): ``tensorboard`` when the package is installed, else nothing (and no
  warning: a plain install has no TensorBoard, and log.csv holds every number anyway).
* ``tensorboard``: event files in ``<run_dir>/tensorboard/``. Needs the ``tensorboard``
  package; asked for explicitly without it, a warning is logged once and the run goes on.
* ``wandb``: Weights & Biases. Needs ``pip install wandb`` (asking for it without is an error).
  ``WANDB_MODE`` is respected; when it is unset the run is ``offline`` unless ``WANDB_API_KEY`` is
  set (no login prompt, no network needed; ``wandb sync <run_dir>/wandb/offline-run-*`` uploads it).
  ``WANDB_PROJECT`` names the project (default ``instructrl``).
* ``mlflow``: MLflow. Needs ``pip install mlflow``; logs to ``<run_dir>/mlruns`` unless
  ``MLFLOW_TRACKING_URI`` is set (experiment: ``MLFLOW_EXPERIMENT_NAME``, default ``instructrl``).
* ``none``: nothing besides the CSV.

Only finite numbers are logged (ints and floats; not bools, strings or None). A tag is
``<prefix><column>``, e.g. ``sft/loss``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from instructrl.errors import InstructRLError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorboard", "wandb", "mlflow", "none")
_warned: set[str] = set()  # tensorboard-missing is warned once per process


def _numbers(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        if hasattr(v, "item") and callable(v.item):  # a 0-d tensor / numpy scalar
            try:
                v = v.item()
            except (ValueError, RuntimeError):
                continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        out[k] = v
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, metrics: dict, step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run_dir: Path, config: dict, run_name: str):
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        if mode == "offline" and not os.environ.get("WANDB_MODE"):
            log.info("wandb: offline run in %s (set WANDB_MODE=online or WANDB_API_KEY to log to the server)",
                     run_dir / "wandb")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "instructrl"), name=run_name or None,
                              config=config, dir=str(run_dir), mode=mode)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir: Path, config: dict, run_name: str):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "instructrl")
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(name)
        self.run_id = self.client.create_run(exp_id, run_name=run_name or None).info.run_id
        for k, v in _flatten(config).items():
            self.client.log_param(self.run_id, k, str(v)[:500])

    def log(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k.replace("/", "."), float(v), ts, step)
                                                    for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Trackers:
    """Every tracker asked for, behind one `log(metrics, step)` / `close()`."""

    def __init__(self, backends: list, prefix: str = ""):
        self.backends = backends
        self.prefix = prefix
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self.backends)

    def log(self, metrics: dict, step: int) -> None:
        nums = _numbers(metrics)
        if not nums or self.closed:
            return
        nums = {f"{self.prefix}{k}": v for k, v in nums.items()}
        for b in self.backends:
            b.log(nums, int(step))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for b in self.backends:
            try:
                b.close()
            except Exception as e:  # a tracker failing to close must not cost the trained model
                log.warning("closing %s failed: %s", type(b).__name__.strip("_"), e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _missing(name: str) -> InstructRLError:
    return InstructRLError(f"report_to asks for {name}, which is not installed: pip install {name} "
                           f"(or drop it from report_to)")


def require_trackers(kind_list) -> None:
    """Raise now (before any output is touched) what make_trackers would: an unknown tracker, or
    wandb/MLflow asked for but not installed."""
    for k in [kind_list] if isinstance(kind_list, str) else (kind_list or []):
        k = str(k).strip().lower()
        if k not in BACKENDS:
            raise InstructRLError(f"report_to: unknown tracker {k!r}; choose from {', '.join(BACKENDS)}")
        if k in ("wandb", "mlflow"):
            try:
                __import__(k)
            except ImportError:
                raise _missing(k) from None


def _installed(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def make_trackers(kind_list, run_dir, config_dict: dict | None = None, run_name: str = "",
                  prefix: str = "") -> Trackers:
    """The trackers named in `kind_list` (see the module docstring), writing under `run_dir`.

    An unknown name, or wandb/mlflow asked for but not installed, is an InstructRLError; a
    missing tensorboard package is a warning (once) and no TensorBoard logging.
    """
    if isinstance(kind_list, str):
        kind_list = [kind_list]
    require_trackers(kind_list)
    kinds = []
    for k in kind_list or []:
        k = str(k).strip().lower()
        if k == "auto":
            k = "tensorboard" if _installed("tensorboard") else "none"
        if k != "none" and k not in kinds:
            kinds.append(k)
    run_dir = Path(run_dir)
    config = config_dict or {}
    backends = []
    try:
        for k in kinds:
            if k == "tensorboard":
                try:
                    import tensorboard  # noqa: F401  (torch's SummaryWriter needs it)
                except ImportError:
                    if "tensorboard" not in _warned:
                        _warned.add("tensorboard")
                        log.warning("report_to asks for tensorboard, which is not installed: metrics go to "
                                    "log.csv only (pip install tensorboard)")
                    continue
                backends.append(_TensorBoard(run_dir, config))
            elif k == "wandb":
                backends.append(_WandB(run_dir, config, run_name))
            elif k == "mlflow":
                backends.append(_MLflow(run_dir, config, run_name))
    except BaseException:
        Trackers(backends).close()
        raise
    return Trackers(backends, prefix)


__all__ = ["make_trackers", "require_trackers", "Trackers", "BACKENDS"]
