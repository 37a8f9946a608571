"""instructrl.world.tasks: families, templates, gold answers, sampling."""

import random
import re
from collections import Counter

import pytest

from instructrl.world.judge import parse_prompt
from instructrl.world.tasks import (
    ENTITIES,
    FAMILIES,
    FAMILY_WEIGHTS,
    IDK,
    REFUSAL,
    Example,
    make_example,
    sample_examples,
)


def test_families_and_weights():
    assert len(FAMILIES) >= 10
    for fam in ("reverse", "sort", "add", "count", "upper", "largest", "next_letter", "repeat",
                "knowledge", "harmful", "unanswerable"):
        assert fam in FAMILIES
    assert abs(sum(FAMILY_WEIGHTS.values()) - 1.0) < 1e-9
    assert 0.06 <= FAMILY_WEIGHTS["harmful"] <= 0.10
    assert 0.06 <= FAMILY_WEIGHTS["unanswerable"] <= 0.10


def test_fixed_entities():
    assert len(ENTITIES) == 40
    names = set(ENTITIES)
    capitals = {f["capital"] for f in ENTITIES.values()}
    assert len(capitals) == 40 and not names & capitals
    # fixed across worlds: no dependence on any seed the caller passes
    from instructrl.world.tasks import _make_entities
    assert _make_entities() == ENTITIES


@pytest.mark.parametrize("family", FAMILIES)
def test_examples_format(family):
    rng = random.Random(0)
    for _ in range(300):
        ex = make_example(family, rng)
        assert isinstance(ex, Example) and ex.family == family
        assert ex.prompt.startswith("Q: ") and ex.prompt.endswith("\nA:")
        assert ex.answer.startswith(" ") and not ex.answer.startswith("  ")
        assert len(ex.answer) <= 32, ex
        assert len(ex.prompt) <= 90, ex
        assert all(32 <= ord(c) < 127 or c == "\n" for c in ex.prompt + ex.answer)
        assert ex.prompt.count("\n") == 1 and "\n" not in ex.answer


def test_prompts_are_mostly_short():
    exs = sample_examples(2000, random.Random(1))
    short = sum(len(ex.prompt) <= 70 for ex in exs) / len(exs)
    assert short > 0.75


def test_gold_answers_by_hand():
    rng = random.Random(3)
    seen = Counter()
    for ex in sample_examples(3000, rng):
        args, variant, c = ex.meta["args"], ex.meta["variant"], ex.meta["constraint"]
        a = ex.answer.strip()
        if c == "capitals":
            assert a == a.upper()
        if c == "lowercase":
            assert a == a.lower()
        a = a.lower() if ex.family not in ("upper",) else a
        seen[ex.family] += 1
        if ex.family == "reverse":
            assert a == args["word"][::-1]
        elif ex.family == "sort":
            nums = sorted(int(x) for x in args["nums"].split(", "))
            if variant == "desc":
                nums = nums[::-1]
            assert a == ", ".join(map(str, nums))
            assert 3 <= len(nums) <= 5 and all(0 <= x <= 99 for x in nums)
        elif ex.family == "add":
            assert int(a) == int(args["a"]) + int(args["b"])
        elif ex.family == "count":
            assert int(a) == len(args["word"])
        elif ex.family == "upper":
            assert a == args["word"].upper()
        elif ex.family == "largest":
            nums = [int(x) for x in args["nums"].split(", ")]
            assert int(a) == (max(nums) if variant == "max" else min(nums))
        elif ex.family == "next_letter":
            delta = 1 if variant == "next" else -1
            assert a == chr(ord(args["letter"].lower()) + delta)
        elif ex.family == "repeat":
            assert a == " ".join([args["word"]] * int(args["n"]))
        elif ex.family == "knowledge":
            assert a == ENTITIES[args["entity"]][variant].lower()
        elif ex.family == "harmful":
            assert ex.answer == REFUSAL
        elif ex.family == "unanswerable":
            assert ex.answer == IDK
            if variant == "unknown_entity":
                assert args["entity"] not in ENTITIES
    assert set(seen) == set(FAMILIES)


def test_some_prompts_carry_constraints():
    exs = sample_examples(2000, random.Random(2))
    kinds = Counter(ex.meta["constraint"] for ex in exs)
    for c in ("one_word", "lowercase", "capitals", "number_only"):
        assert kinds[c] > 20
    assert 0.1 < 1 - kinds[None] / len(exs) < 0.4


def test_examples():
    ex = Example(prompt="Q: Reverse the word 'cat'.\nA:", answer=" tac", family="reverse")
    assert ex.instruction == "Reverse the word 'cat'."
    assert parse_prompt(ex.prompt).answer == " tac"
    assert make_example("knowledge", 5).family == "knowledge"  # int seeds are accepted


def test_unanswerable_mix():
    exs = [make_example("unanswerable", random.Random(i)) for i in range(400)]
    kinds = Counter(ex.meta["variant"] for ex in exs)
    assert kinds["unknown_entity"] > 100 and kinds["false_premise"] > 100


def test_sampling_deterministic_mix_and_unique():
    a = sample_examples(500, random.Random(7))
    b = sample_examples(500, random.Random(7))
    assert [(x.prompt, x.answer) for x in a] == [(x.prompt, x.answer) for x in b]
    exs = sample_examples(5000, random.Random(8))
    freq = Counter(ex.family for ex in exs)
    for fam, w in FAMILY_WEIGHTS.items():
        assert abs(freq[fam] / 5000 - w) < 0.025, fam
    seen = set()
    u = sample_examples(1000, random.Random(9), unique=True, exclude=seen)
    assert len({ex.prompt for ex in u}) == 1000 and len(seen) == 1000
    only = sample_examples(50, random.Random(1), families=["add", "sort"], weights=[1, 3])
    assert {ex.family for ex in only} <= {"add", "sort"}
    with pytest.raises(ValueError):
        sample_examples(3, random.Random(0), families=["nope"])
    with pytest.raises(ValueError):
        make_example("nope", random.Random(0))


def test_harmful_and_knowledge_text():
    ex = make_example("harmful", random.Random(0))
    assert ex.meta["args"]["harm"] in ex.prompt
    kn = [make_example("knowledge", random.Random(i)) for i in range(50)]
    assert all(re.search(r"[A-Z][a-z]+", k.instruction) for k in kn)
