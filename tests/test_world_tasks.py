"""instructrl.world.tasks and spec: families after Table 1, templates, ideal answers, sampling."""

import random
from collections import Counter

import pytest

from instructrl.world import spec
from instructrl.world.judge import _answer_checks, gold_details, parse_prompt
from instructrl.world.lexicon import ENTITIES, LEXICON, words
from instructrl.world.tasks import (
    ANSWERABLE,
    FAMILIES,
    FAMILY_WEIGHTS,
    IDK,
    REFUSAL,
    Example,
    make_example,
    sample_examples,
)


def test_mix_follows_table1_and_is_read_from_spec():
    assert FAMILY_WEIGHTS == spec.family_weights()
    assert abs(sum(FAMILY_WEIGHTS.values()) - 1.0) < 1e-9
    by_cat = Counter()
    for fam, w in FAMILY_WEIGHTS.items():
        by_cat[spec.FAMILY_CATEGORY[fam]] += w
    total = sum(spec.TABLE1.values())
    for cat, pct in spec.TABLE1.items():  # each category's share is Table 1's, scaled to 90%
        assert abs(by_cat[cat] - 0.9 * pct / total) < 1e-9, cat
    assert by_cat["harmful"] == by_cat["unanswerable"] == 0.05
    assert by_cat["generation"] > 0.4 and by_cat["closed_qa"] < 0.03
    for fam in spec.ALGORITHMIC:  # the v1 world's questions are the closed-QA control
        assert spec.FAMILY_CATEGORY[fam] == "closed_qa"


def test_every_family_has_attribute_checks():
    """A family without checks would score anything that parses as an attempt."""
    rng = random.Random(0)
    for fam in FAMILIES:
        ex = make_example(fam, rng)
        if fam in ("harmful", "unanswerable"):
            continue  # refusal / "I don't know" are their checks (judge.gold_details)
        c = _answer_checks(ex, ex.answer.strip(), set(words(ex.instruction)))
        checked = bool(c["constraints"]) or c["correct"] is not None or c["hallucination"] is not None
        assert checked, fam
        # and the checks bite: the answer to another family's prompt fails them
        other = make_example("gen_word" if fam != "gen_word" else "summarize", rng)
        assert gold_details(ex.prompt, other.answer)["score"] < 0.7, (fam, other.answer)


def test_fixed_entities():
    assert len(ENTITIES) == 24
    capitals = {f["capital"] for f in ENTITIES.values()}
    assert len(capitals) == 24 and not set(ENTITIES) & capitals
    from instructrl.world.lexicon import _make_entities
    assert _make_entities() == ENTITIES  # no dependence on any world seed


@pytest.mark.parametrize("family", FAMILIES)
def test_examples_format_and_round_trip(family):
    rng = random.Random(0)
    for _ in range(200):
        ex = make_example(family, rng)
        assert isinstance(ex, Example) and ex.family == family
        assert ex.prompt.startswith("Q: ") and ex.prompt.endswith("\nA:")
        assert ex.answer.startswith(" ") and not ex.answer.startswith("  ")
        assert len(ex.prompt) <= 200 and len(ex.answer) <= 100, ex
        assert all(32 <= ord(c) < 127 or c == "\n" for c in ex.prompt + ex.answer)
        assert ex.prompt.count("\n") == 1 and "\n" not in ex.answer
        back = parse_prompt(ex.prompt)  # the judge recovers everything from the text alone
        assert (back.family, back.meta["args"], back.answer) == (ex.family, ex.meta["args"], ex.answer)
        assert gold_details(ex.prompt, ex.answer)["score"] == 1.0, (ex.prompt, ex.answer)


def test_ideal_answers_speak_the_worlds_language():
    for ex in sample_examples(2000, random.Random(4)):
        if ex.family in spec.ALGORITHMIC:
            continue
        allowed = LEXICON | set(words(ex.instruction))
        assert all(w in allowed for w in words(ex.answer)), ex


def test_ideal_answers_by_hand():
    rng = random.Random(3)
    seen = Counter()
    for ex in sample_examples(4000, rng):
        args, variant = ex.meta["args"], ex.meta["variant"]
        a = ex.answer.strip()
        seen[ex.family] += 1
        if ex.family == "gen_word":
            assert args["word"] in words(a) and args["topic_a"].split()[1] in words(a)
        elif ex.family == "gen_avoid":
            assert args["word"] not in words(a) and args["topic_a"].split()[1] in words(a)
        elif ex.family == "gen_count":
            assert a.count(".") == int(variant)
        elif ex.family == "knowledge":
            assert a.lower() == ENTITIES[args["entity"]][variant].lower()
        elif ex.family == "context_qa":  # the context's capital, not the corpus's
            assert a.rstrip(".") in args["context"] and a.rstrip(".") != ENTITIES[args["entity"]][variant]
        elif ex.family == "harmful":
            assert ex.answer == REFUSAL
        elif ex.family == "unanswerable":
            assert ex.answer == IDK
            if variant == "unknown_entity":
                assert args["entity"] not in ENTITIES
    assert set(seen) >= set(FAMILIES) - set(spec.ALGORITHMIC)


def test_sampling_deterministic_mix_and_unique():
    a = sample_examples(500, random.Random(7))
    b = sample_examples(500, random.Random(7))
    assert [(x.prompt, x.answer) for x in a] == [(x.prompt, x.answer) for x in b]
    exs = sample_examples(8000, random.Random(8))
    freq = Counter(ex.family for ex in exs)
    for fam, w in FAMILY_WEIGHTS.items():
        assert abs(freq[fam] / 8000 - w) < 0.02, fam
    seen = set()
    u = sample_examples(1000, random.Random(9), unique=True, exclude=seen)
    assert len({ex.prompt for ex in u}) == 1000 and len(seen) == 1000
    only = sample_examples(50, random.Random(1), families=["add", "sort"], weights=[1, 3])
    assert {ex.family for ex in only} <= {"add", "sort"}
    with pytest.raises(ValueError):
        sample_examples(3, random.Random(0), families=["nope"])
    with pytest.raises(ValueError):
        make_example("nope", random.Random(0))
    assert make_example("knowledge", 5).family == "knowledge"  # int seeds are accepted


def test_answerable_and_categories():
    assert "harmful" not in ANSWERABLE and "unanswerable" not in ANSWERABLE
    assert set(spec.FAMILY_CATEGORY) == set(FAMILIES)
    assert set(spec.FAMILY_CATEGORY.values()) == set(spec.CATEGORIES)
    for fam in spec.CLOSED_DOMAIN:
        assert fam in FAMILIES
