"""Progress a person can follow in a terminal, in a log file, under nohup or in CI.

:func:`progress` gives a tqdm bar when stderr is a terminal; otherwise (a pipe, a file, a job
scheduler) a :class:`LineProgress` with tqdm's interface (``update``, ``set_postfix``, ``write``,
``close``) that prints one line every N steps and at least every ``interval`` seconds:

    sft 40/200 (20%) loss=2.310 lr=1.90e-05 tok_s=812 | 1.3 step/s, elapsed 31s, eta 2m03s

N is about 5% of the run (``INSTRUCTRL_LOG_EVERY=N`` sets it; the first and the last step are
always printed); ``INSTRUCTRL_PROGRESS=1`` asks for the tqdm bar even without a terminal.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["progress", "LineProgress", "format_duration"]

#: Print at least this often (seconds) while steps are being made.
DEFAULT_INTERVAL_S = 60.0


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LineProgress:
    """Periodic one-line progress logs on a stream (stderr by default), with tqdm's interface."""

    def __init__(self, total: int, desc: str, unit: str = "step", every: int | None = None,
                 interval: float = DEFAULT_INTERVAL_S, stream=None):
        self.total, self.desc, self.unit = int(total or 0), desc, unit
        env = os.environ.get("INSTRUCTRL_LOG_EVERY", "")
        self.every = every or (int(env) if env.isdigit() and int(env) > 0 else max(1, round(self.total / 20)))
        self.interval = interval
        self.stream = stream
        self.n = 0
        self.n_start = 0  # steps done before this process (resume): not counted in the rate
        self.postfix: dict = {}
        self.t0 = self.last = time.time()
        self.printed_at = -1
        self.due = False
        self.closed = False

    # tqdm's interface ------------------------------------------------------------------------

    def update(self, k: int = 1) -> None:
        if self.due:  # the previous step's line never got its postfix: print it now
            self._print()
        self.n += k
        if self.n == k and k > 1 and self.printed_at < 0:
            self.n_start = self.n  # a resumed run starts at its checkpoint: the rate counts from here
            return
        first = self.printed_at < 0
        self.due = first or self.n >= self.total or self.n - max(self.printed_at, 0) >= self.every \
            or time.time() - self.last >= self.interval

    def set_postfix(self, **kwargs) -> None:
        self.postfix = kwargs
        if self.due:
            self._print()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.due or (self.n and self.printed_at != self.n):
            self._print()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------------------

    def line(self) -> str:
        now = time.time()
        done = self.n - self.n_start
        rate = done / max(now - self.t0, 1e-9)
        head = f"{self.desc} {self.n}/{self.total}" if self.total else f"{self.desc} {self.n}"
        if self.total:
            head += f" ({100 * self.n / self.total:.0f}%)"
        post = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        tail = f"{rate:.2f} {self.unit}/s, elapsed {format_duration(now - self.t0)}"
        if self.total and rate > 0 and self.n < self.total:
            tail += f", eta {format_duration((self.total - self.n) / rate)}"
        return f"{head}{' ' + post if post else ''} | {tail}"

    def _print(self) -> None:
        self.write(self.line())
        self.printed_at = self.n
        self.last = time.time()
        self.due = False


class _Silent:
    """No output at all (progress explicitly off)."""

    def __init__(self, *a, **k):
        self.n = 0

    def update(self, k: int = 1) -> None:
        self.n += k

    def set_postfix(self, **kwargs) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, desc: str, unit: str = "step", disable: bool | None = None):
    """A tqdm bar on a terminal, periodic one-line logs elsewhere; ``disable=True``: silent
    (``write`` still prints), ``False``: the tqdm bar even without a terminal."""
    if disable is True:
        return _Silent()
    tty = sys.stderr.isatty() or bool(os.environ.get("INSTRUCTRL_PROGRESS")) or disable is False
    if not tty:
        return LineProgress(total, desc, unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
