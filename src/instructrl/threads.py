"""CPU threads: keep a stage fast when the machine is doing something else too.

torch runs its CPU ops on an OpenMP thread pool (one thread per core by default). OpenMP's default
wait policy lets a thread that finished its share of an op *spin* for a while, waiting for the
others; with another busy process on the machine, one of them is descheduled, and every one of
the thousands of small ops a step makes waits for it: a 2-thread run beside one busy process was
10-25x slower than alone (issue 16). With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep
instead, and the same run is at most about 2x slower (``benchmarks/bench_threads.py`` measures
it; docs/architecture.md has the figures).

:func:`configure` (called by the ``instructrl`` command before torch is imported) therefore sets
``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets ``OMP_WAIT_POLICY``; the number of
threads stays torch's default (or ``OMP_NUM_THREADS``), so results are those of the same thread
count as before, bit for bit. Overrides:

- ``OMP_WAIT_POLICY=ACTIVE`` (or any value): yours is kept;
- ``INSTRUCTRL_OMP_WAIT_POLICY=default``: leave OpenMP's default (spinning) alone;
- ``OMP_NUM_THREADS=N`` / ``INSTRUCTRL_THREADS=N``: N threads (``1`` is the safest on a machine
  that is shared all the time; a different thread count rounds float sums differently).

A library user who imports torch first sets these variables themself (they are read when
OpenMP starts).
"""

from __future__ import annotations

import os

__all__ = ["configure"]


def configure() -> dict:
    """Set the OpenMP wait policy (and ``INSTRUCTRL_THREADS``) for this process; returns what was set."""
    done = {}
    n = os.environ.get("INSTRUCTRL_THREADS", "")
    if n.isdigit() and int(n) > 0 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = n
        done["OMP_NUM_THREADS"] = n
    policy = os.environ.get("INSTRUCTRL_OMP_WAIT_POLICY", "passive").strip().lower()
    if "OMP_WAIT_POLICY" not in os.environ and policy != "default":
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
        done["OMP_WAIT_POLICY"] = policy.upper()
    import sys

    if "torch" in sys.modules and done:  # too late for OpenMP to read them, and for torch's pool size
        import torch

        if "OMP_NUM_THREADS" in done:
            torch.set_num_threads(int(done["OMP_NUM_THREADS"]))
    return done
