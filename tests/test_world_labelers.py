"""instructrl.world.labelers: simulated labelers, SFT-like samples, calibrated agreement."""

import random

import pytest

from instructrl.world.judge import gold_score
from instructrl.world.labelers import (
    DEFAULT_NOISE,
    Labeler,
    agreement,
    make_calibration_items,
    make_labeler_pool,
    pool_agreement,
    sft_like_responses,
)
from instructrl.world.tasks import FAMILIES, make_example


@pytest.fixture(scope="module")
def items():
    return make_calibration_items(300, random.Random(0))


def test_pool_disjoint_and_deterministic():
    train, held = make_labeler_pool(0)
    assert len(train) == 8 and len(held) == 4
    assert not {l.id for l in train} & {l.id for l in held}
    assert len({l.id for l in train + held}) == 12
    assert make_labeler_pool(0) == (train, held)
    assert make_labeler_pool(1) != (train, held)
    for l in train + held:
        assert 0.8 * DEFAULT_NOISE < l.noise < 1.2 * DEFAULT_NOISE
        assert l.brevity_bias >= 0 and l.position_bias >= 0


def test_rank_and_compare():
    lab = Labeler("x", noise=0.0, brevity_bias=0.0, position_bias=0.0)
    p = "Q: Reverse the word 'cat'.\nA:"
    responses = [" dog", " tac", " tca", " I don't know."]
    assert lab.rank(p, responses, random.Random(0)) == [1, 2, 0, 3]
    assert lab.compare(p, " tac", " dog", random.Random(0)) == 1.0
    assert lab.compare(p, " dog", " tac", random.Random(0)) == 0.0
    assert lab.compare(p, " tac", " tac", random.Random(0)) == 0.5
    noisy = make_labeler_pool(0)[0][0]
    r1 = noisy.rank(p, responses, random.Random(5))
    assert r1 == noisy.rank(p, responses, random.Random(5))  # deterministic given the rng
    assert sorted(r1) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        lab.rank(p, [" tac"], random.Random(0))


def test_noisy_labelers_still_prefer_better_responses():
    lab = make_labeler_pool(0)[0][0]
    p = "Q: What is 12 + 7?\nA:"
    rng = random.Random(1)
    wins = sum(lab.compare(p, " 19", " 64", rng) for _ in range(400)) / 400
    assert wins > 0.9
    # close calls stay noisy: two wrong answers a little apart in gold score
    close = sum(lab.compare(p, " 25", " 64", rng) for _ in range(400)) / 400
    assert 0.5 < close < 0.95


def test_brevity_bias():
    lab = Labeler("b", noise=0.0, brevity_bias=1.0, position_bias=0.0)
    p = "Q: Reverse the word 'cat'.\nA:"
    # equal gold score (1.0), the shorter one wins for a labeler who likes brevity
    assert gold_score(p, " tac") == gold_score(p, " The answer is tac.") == 1.0
    assert lab.rank(p, [" The answer is tac.", " tac"], random.Random(0)) == [1, 0]


@pytest.mark.parametrize("family", FAMILIES)
def test_sft_like_responses(family):
    rng = random.Random(3)
    for _ in range(20):
        ex = make_example(family, rng)
        k = rng.randint(4, 9)
        rs = sft_like_responses(ex, k, rng)
        assert len(rs) == k and all(isinstance(r, str) for r in rs)
        assert len(set(rs)) >= min(k, 3)
    a = sft_like_responses(make_example(family, 1), 6, random.Random(2))
    b = sft_like_responses(make_example(family, 1), 6, random.Random(2))
    assert a == b


def test_synthetic_items_are_easier_than_real_sft_samples(items, sft_items):
    """The synthetic SFT-like responses spread more in quality than a tiny SFT model's samples,
    so labelers agree more on them: calibration must use real samples (see sft_items)."""
    train, _ = make_labeler_pool(0)
    assert agreement(train[0], train[1], items, random.Random(1)) > agreement(train[0], train[1], sft_items, random.Random(1))


def test_sft_like_responses_span_quality(items):
    scores = [gold_score(p, r) for p, rs in items for r in rs]
    assert 0.3 < sum(scores) / len(scores) < 0.7
    assert sum(s == 1.0 for s in scores) > 0.1 * len(scores)
    assert sum(s < 0.2 for s in scores) > 0.1 * len(scores)


def test_agreement_definition():
    p = "Q: Reverse the word 'cat'.\nA:"
    perfect = Labeler("a", noise=0.0, brevity_bias=0.0, position_bias=0.0)
    items = [(p, [" tac", " tca", " dog", " tac"])]
    # pairs of distinct texts: 5 of 6 (the two " tac" are skipped); noiseless labelers agree
    assert agreement(perfect, perfect, items, random.Random(0)) == 1.0
    pure_noise = Labeler("n", noise=100.0, brevity_bias=0.0, position_bias=0.0)
    many = [(p, [" tac", " tca", " dog", " cat", " act"])] * 400
    assert abs(agreement(pure_noise, pure_noise, many, random.Random(0)) - 0.5) < 0.05
    with pytest.raises(ValueError):
        agreement(perfect, perfect, [(p, [" tac", " tac"])], random.Random(0))


@pytest.fixture(scope="module")
def sft_items():
    """Real SFT samples: 300 RM prompts with their K samples from the default pipeline's SFT model.

    Made by `instructrl pipeline --preset default` (comparisons.jsonl, first 300 lines, rankings
    dropped). The labelers' noise is calibrated on these, since the paper's 72.6% was measured on
    ranking SFT-model outputs.
    """
    import json
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "sft_samples_default.jsonl"
    return [(r["prompt"], r["responses"]) for r in map(json.loads, path.read_text().splitlines())]


def test_agreement_is_calibrated_to_the_paper(sft_items):
    """InstructGPT: training labelers agree with each other 72.6 +- 1.5% of the time."""
    items = sft_items
    train, held = make_labeler_pool(0)
    a = agreement(train[0], train[1], items, random.Random(1))
    assert 0.70 <= a <= 0.76, a
    pa = pool_agreement(train, items, random.Random(2))
    assert 0.70 <= pa <= 0.76, pa
    ph = pool_agreement(held, items, random.Random(3))
    assert 0.69 <= ph <= 0.77, ph
    assert pool_agreement(train, items, random.Random(2)) == pa  # deterministic
