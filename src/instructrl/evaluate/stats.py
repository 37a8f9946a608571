"""Statistics of evaluation: win rates with 95% bootstrap intervals, paired differences, seeds.

Plain functions of numbers (no models, no world):

- :func:`win_rate` — how often model A's answer is preferred to model B's on the same prompts, by a
  judge (:mod:`instructrl.evaluate.judges`), ties counting half, with a 95% bootstrap interval over
  prompts;
- :func:`paired_delta` — the mean of paired differences (gold score of A minus B per prompt) and its
  bootstrap interval;
- :func:`bootstrap_ci` — the percentile bootstrap interval of a mean;
- :func:`py_rng`, :func:`np_rng`, :func:`stable_seed` — the random sources they use, from a seed.
"""

from __future__ import annotations

import random
import zlib
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["py_rng", "np_rng", "stable_seed", "bootstrap_ci", "win_rate", "paired_delta"]

def py_rng(rng: Any) -> random.Random:
    """A ``random.Random`` from a Random, an int seed, a numpy Generator or None (seed 0)."""
    if isinstance(rng, random.Random):
        return rng
    if rng is None:
        return random.Random(0)
    if isinstance(rng, (int, np.integer)):
        return random.Random(int(rng))
    if hasattr(rng, "integers"):
        return random.Random(int(rng.integers(0, 2**62)))
    raise TypeError(f"cannot use {type(rng).__name__} as an rng")


def np_rng(rng: Any) -> np.random.Generator:
    """A numpy Generator from the same kinds of ``rng`` as :func:`py_rng`."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(py_rng(rng).getrandbits(63))


def stable_seed(*parts) -> int:
    """A seed that depends only on its parts (not on PYTHONHASHSEED)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode()) & 0x7FFFFFFF



def bootstrap_ci(values: Sequence[float], rng: Any = 0, n_resamples: int = 1000,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the items)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if n_resamples <= 0 or x.size == 1:
        m = float(x.mean())
        return [m, m]
    g = np_rng(rng)
    idx = g.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return [float(lo), float(hi)]


def win_rate(prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str],
             judge: Callable[[str, str, str], float], rng: Any = 0, bootstrap: int = 1000) -> dict:
    """Win rate of A over B: mean of ``judge(prompt, a, b)`` (1 = A preferred, 0 = B, 0.5 = tie).

    Returns ``{"winrate", "ci95": [lo, hi], "n", "wins", "ties", "losses"}``; the interval is a
    95% percentile bootstrap over prompts (``bootstrap`` resamples; 0 gives a zero-width one).
    A judge object with a ``batch(prompts, a, b) -> list`` method is called once for all prompts.
    """
    n = len(prompts)
    if not (n == len(responses_a) == len(responses_b)):
        raise ValueError(f"win_rate: {n} prompts but {len(responses_a)} and {len(responses_b)} responses")
    if n == 0:
        raise ValueError("win_rate: no prompts")
    if hasattr(judge, "batch"):
        outcomes = [float(o) for o in judge.batch(list(prompts), list(responses_a), list(responses_b))]
    else:
        outcomes = [float(judge(p, a, b)) for p, a, b in zip(prompts, responses_a, responses_b)]
    for o in outcomes:
        if not 0.0 <= o <= 1.0:
            raise ValueError(f"a judge must return 1, 0 or 0.5 (or a probability), got {o}")
    wr = float(np.mean(outcomes))
    lo, hi = bootstrap_ci(outcomes, rng, bootstrap)
    # The percentile interval always contains the estimate up to resampling noise; make it exact.
    lo, hi = min(lo, wr), max(hi, wr)
    return {
        "winrate": wr,
        "ci95": [max(0.0, lo), min(1.0, hi)],
        "n": n,
        "wins": int(sum(o == 1.0 for o in outcomes)),
        "ties": int(sum(o == 0.5 for o in outcomes)),
        "losses": int(sum(o == 0.0 for o in outcomes)),
    }


def paired_delta(a: Sequence[float], b: Sequence[float], rng: Any = 0, bootstrap: int = 1000) -> tuple[float, list[float]]:
    """Mean of the paired differences a_i - b_i and its 95% bootstrap interval over items."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("paired_delta: no items")
    m = float(d.mean())
    lo, hi = bootstrap_ci(d, rng, bootstrap)
    return m, [min(lo, m), max(hi, m)]
