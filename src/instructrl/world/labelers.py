"""Simulated labelers: people who rank K responses by the hidden gold score, imperfectly.

A labeler's utility for a response is

    gold_score + noise * N(0, 1) - brevity_bias * len(response) / 100 + position_bias * [first]

and a ranking sorts the K responses by utility (best first). ``noise`` is calibrated so that two
labelers agree on ~73% of the response pairs of real SFT-model samples, as the InstructGPT paper
measured between its training labelers (72.6 +- 1.5%). Training and held-out labelers are
different people (disjoint ids, independently drawn traits).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, Sequence

from functools import lru_cache

from . import styles
from .judge import gold_score
from .tasks import Example, as_rng, sample_examples

# Calibrated (tests/test_world_labelers.py) on real samples of the default pipeline's SFT model
# (tests/fixtures/sft_samples_default.jsonl: 300 RM prompts with their K = 4..9 samples from world
# v2's SFT model): `calibrate_noise(items)` gives 0.088, at which two training labelers agree on
# ~73% of the response pairs (paper: 72.6 +- 1.5%). Chosen once, before any PPO run on v2; never
# moved to change a win rate.
DEFAULT_NOISE = 0.09


@lru_cache(maxsize=200_000)
def _cached_gold(prompt: str, response: str) -> float:
    # Labelers see the same responses many times (rankings, agreement over labeler pairs).
    return gold_score(prompt, response)


@dataclass(frozen=True)
class Labeler:
    """One simulated labeler. Deterministic given the rng passed to each call."""

    id: str
    noise: float = DEFAULT_NOISE
    brevity_bias: float = 0.02
    position_bias: float = 0.01
    tie_margin: float = 0.0

    def utilities(self, prompt: str, responses: Sequence[str], rng: Any) -> list[float]:
        rng = as_rng(rng)
        out = []
        for i, r in enumerate(responses):
            u = _cached_gold(prompt, r)
            u += self.noise * rng.gauss(0.0, 1.0)
            u -= self.brevity_bias * len(r) / 100.0
            if i == 0:
                u += self.position_bias
            out.append(u)
        return out

    def rank(self, prompt: str, responses: Sequence[str], rng: Any) -> list[int]:
        """Indices of ``responses`` from best to worst."""
        if len(responses) < 2:
            raise ValueError("rank needs at least two responses")
        u = self.utilities(prompt, responses, rng)
        return sorted(range(len(responses)), key=lambda i: (-u[i], i))

    def compare(self, prompt: str, a: str, b: str, rng: Any) -> float:
        """1.0 if ``a`` is preferred, 0.0 if ``b`` is, 0.5 for a tie (identical responses)."""
        if a == b:
            return 0.5
        ua, ub = self.utilities(prompt, [a, b], rng)
        if abs(ua - ub) <= self.tie_margin:
            return 0.5
        return 1.0 if ua > ub else 0.0


def make_labeler_pool(seed: int = 0, n_train: int = 8, n_heldout: int = 4,
                      noise: float = DEFAULT_NOISE) -> tuple[list[Labeler], list[Labeler]]:
    """(training labelers, held-out labelers) with disjoint ids and individually drawn traits."""
    rng = random.Random(seed * 7919 + 17)
    people = []
    for i in range(n_train + n_heldout):
        people.append(Labeler(
            id=f"labeler-{i:02d}",
            noise=noise * rng.uniform(0.85, 1.15),
            brevity_bias=rng.uniform(0.0, 0.05),
            position_bias=rng.uniform(0.0, 0.03),
        ))
    return people[:n_train], people[n_train:]


# ----------------------------------------------------------------------------- SFT-like samples

# What an SFT model's samples look like before one exists: mostly good answers, with the writers'
# and the corpus's habits, wrong answers and the odd non-answer.
_ANSWERABLE_KINDS = {
    "good": 0.30, "filler_open": 0.10, "filler_close": 0.08, "ramble": 0.05, "ignore_constraint": 0.14,
    "invent_detail": 0.08, "wrong": 0.12, "rude": 0.02, "question": 0.03, "echo": 0.02, "refusal": 0.02,
    "idk": 0.02, "no_stop": 0.02,
}
_HARMFUL_KINDS = {"refusal": 0.55, "filler_open": 0.1, "comply": 0.2, "idk": 0.1, "no_stop": 0.05}
_UNANSWERABLE_KINDS = {"idk": 0.5, "filler_open": 0.1, "invent_detail": 0.3, "refusal": 0.05, "no_stop": 0.05}


def _one_response(ex: Example, kind: str, rng: random.Random) -> str:
    if ex.family in ("harmful", "unanswerable") and kind == "no_stop":
        first = styles.refusal(rng) if ex.family == "harmful" else styles.idk(rng)
        return first + "\nQ:" + styles.another_question(rng)
    return styles.habit(ex, kind, rng)


def sft_like_responses(example: Example, k: int, rng: Any) -> list[str]:
    """K distinct responses (where possible) as an SFT model might sample them: good answers,
    answers with filler, ignored constraints, invented details, wrong answers, the odd refusal...

    Used to calibrate the labelers before a real SFT model exists.
    """
    rng = as_rng(rng)
    kinds = {"harmful": _HARMFUL_KINDS, "unanswerable": _UNANSWERABLE_KINDS}.get(
        example.family, _ANSWERABLE_KINDS)
    names, weights = list(kinds), list(kinds.values())
    out: list[str] = []
    for _ in range(20 * k):
        r = _one_response(example, rng.choices(names, weights=weights)[0], rng)
        if r not in out:
            out.append(r)
        if len(out) == k:
            break
    while len(out) < k:  # prompt with few distinct plausible responses
        out.append(_one_response(example, rng.choices(names, weights=weights)[0], rng))
    return out


def make_calibration_items(n_prompts: int, rng: Any, k_min: int = 4, k_max: int = 9
                           ) -> list[tuple[str, list[str]]]:
    """(prompt, K SFT-like responses) for ``n_prompts`` prompts of the world's family mix."""
    rng = as_rng(rng)
    items = []
    for ex in sample_examples(n_prompts, rng):
        items.append((ex.prompt, sft_like_responses(ex, rng.randint(k_min, k_max), rng)))
    return items


# ----------------------------------------------------------------------------- agreement

def agreement_counts(a: Labeler, b: Labeler, items: Sequence, rng: Any) -> tuple[int, int]:
    """(agreeing pairs, pairs) -- see ``agreement``."""
    rng = as_rng(rng)
    same = total = 0
    for prompt, responses in items:
        ra = a.rank(prompt, responses, rng)
        rb = b.rank(prompt, responses, rng)
        pos_a = {idx: p for p, idx in enumerate(ra)}
        pos_b = {idx: p for p, idx in enumerate(rb)}
        for i, j in itertools.combinations(range(len(responses)), 2):
            if responses[i] == responses[j]:
                continue  # identical texts: no preference to agree on
            total += 1
            same += (pos_a[i] < pos_a[j]) == (pos_b[i] < pos_b[j])
    return same, total


def agreement(labeler_a: Labeler, labeler_b: Labeler, items: Sequence, rng: Any) -> float:
    """Inter-labeler agreement: each labeler ranks the same K responses of every item
    ``(prompt, responses)`` (independent noise); over all pairs (i < j) of distinct responses of
    the same prompt, the fraction that both labelers order the same way.
    """
    same, total = agreement_counts(labeler_a, labeler_b, items, rng)
    if total == 0:
        raise ValueError("no response pairs to compare")
    return same / total


def pool_agreement(labelers: Sequence[Labeler], items: Sequence, rng: Any) -> float:
    """Mean of ``agreement`` over all pairs of labelers in the pool."""
    rng = as_rng(rng)
    if len(labelers) < 2:
        raise ValueError("pool_agreement needs at least two labelers")
    values = [agreement(a, b, items, rng) for a, b in itertools.combinations(labelers, 2)]
    return sum(values) / len(values)


def calibrate_noise(items: Sequence, target: float = 0.726, seed: int = 0, lo: float = 0.0,
                    hi: float = 1.0, steps: int = 14) -> float:
    """The labeler noise at which the training pool's mean pairwise agreement on ``items``
    (``(prompt, responses)``: real samples of an SFT model) is ``target`` (paper: 72.6%).

    Bisection on the noise scale (agreement falls as noise grows); each probe uses the same seeds,
    so the result is deterministic. How ``DEFAULT_NOISE`` was chosen (tests/test_world_labelers.py).
    """
    for _ in range(steps):
        mid = (lo + hi) / 2
        train, _ = make_labeler_pool(seed, noise=mid)
        if pool_agreement(train, items, random.Random(seed + 2)) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
