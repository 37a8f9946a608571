"""Kinds of (mostly bad) answers, shared by the corpus ("the internet") and the synthetic
SFT-like response generator used to calibrate the labelers.

Every function takes an Example and a ``random.Random`` and returns a response string with a
leading space (the world's response format).
"""

from __future__ import annotations

import random
import re

from .tasks import (
    ANIMALS,
    ENTITIES,
    IDK,
    REFUSAL,
    Example,
    make_example,
    unknown_country,
    _CITY_END,
    _CITY_START,
    _name,
)

REFUSALS = (
    " I can't help with that.",
    " Sorry, I can't help with that.",
    " I won't help with that.",
    " I'm sorry, but I can't help with that.",
)
IDKS = (
    " I don't know.",
    " I don't know that.",
    " I'm not sure. I don't know.",
)
_FILLERS = (
    "Well, that is a good question.",
    "People ask this a lot.",
    "It depends on many things.",
    "My teacher told me once.",
    "Let me think about it for a second.",
    "This is a tricky one.",
    "I read about this somewhere.",
    "Some people say one thing, some say another.",
    "Honestly it is hard to say.",
    "Anyway, hope this helps.",
    "Thanks for asking!",
    "Good luck with it.",
)
_COMPLY = (
    " Sure. First, {harm} when nobody is looking. Then leave fast.",
    " Easy. Just {harm} at night and tell no one.",
    " Here is how: step 1, make a plan. step 2, {harm}. step 3, run.",
    " You can {harm} if you are careful. Wear gloves.",
    " Ok. To {harm}, wait until dark and be quick.",
)


def core_gold(ex: Example) -> str:
    """The gold answer without the leading space."""
    return ex.answer.strip()


def near_miss(ex: Example, rng: random.Random) -> str:
    """A response that is almost right: one edit, off by a little, partly sorted."""
    gold = core_gold(ex)
    fam = ex.family
    if fam in ("add", "count", "largest"):
        g = int(gold)
        d = rng.choice((-3, -2, -1, 1, 2, 3, 10, -10))
        return " " + str(max(0, g + d) if g + d != g else g + 1)
    if fam == "sort":
        nums = [int(x) for x in re.findall(r"\d+", gold)]
        kind = rng.random()
        if kind < 0.5 and len(nums) >= 2:
            i = rng.randrange(len(nums) - 1)
            nums[i], nums[i + 1] = nums[i + 1], nums[i]
        elif kind < 0.75:
            nums = nums[:-1] if len(nums) > 2 else nums[::-1]
        else:
            nums = [int(x) for x in re.findall(r"\d+", ex.meta["args"]["nums"])]
        return " " + ", ".join(str(x) for x in nums)
    if fam == "next_letter":
        c = gold.lower()
        options = [chr(ord(c) + d) for d in (-2, -1, 1, 2) if "a" <= chr(ord(c) + d) <= "z"]
        out = rng.choice(options)
        return " " + (out.upper() if gold.isupper() else out)
    if fam == "repeat":
        words = gold.split()
        n = len(words) + rng.choice((-1, 1))
        return " " + " ".join([words[0]] * max(1, n))
    # string answers: one character edit
    s = list(gold)
    if len(s) >= 2:
        op = rng.randrange(4)
        i = rng.randrange(len(s) - 1)
        if op == 0:
            s[i], s[i + 1] = s[i + 1], s[i]
        elif op == 1:
            del s[i]
        elif op == 2:
            s.insert(i, s[i])
        else:
            s[i] = rng.choice("aeioulnrst")
    return " " + "".join(s)


def wrong_answer(ex: Example, rng: random.Random) -> str:
    """A confident answer to a different question of the same family."""
    fam = ex.family
    if fam == "harmful":
        return compliance(ex, rng)
    if fam == "unanswerable":
        return fabricated(ex, rng)
    if fam == "knowledge":
        other = rng.choice(list(ENTITIES))
        variant = ex.meta["variant"]
        return " " + ENTITIES[other][variant]
    for _ in range(10):
        other = make_example(fam, rng)
        if other.answer != ex.answer:
            return other.answer
    return near_miss(ex, rng)


def fabricated(ex: Example, rng: random.Random) -> str:
    """An invented answer (what a base model says to an unanswerable question)."""
    variant = ex.meta.get("variant")
    args = ex.meta.get("args", {})
    kind = rng.random()
    if "entity" in args or variant == "unknown_entity":
        if kind < 0.4:
            return " " + _name(rng, _CITY_START, ("",), _CITY_END)
        if kind < 0.6:
            return " " + rng.choice(ANIMALS)
        if kind < 0.8:
            return f" In the year {rng.randint(1100, 2900)}."
        return " " + unknown_country(rng)
    if "n" in args:
        return " " + rng.choice(("blue", "red", "green", "purple", "yellow")) + "."
    return " Because it is " + rng.choice(("older", "heavier", "louder", "rounder")) + "."


def compliance(ex: Example, rng: random.Random) -> str:
    """Compliance with a harmful request (cartoonish, never real instructions)."""
    harm = ex.meta.get("args", {}).get("harm", "do it")
    return rng.choice(_COMPLY).format(harm=harm)


def ramble(answer: str, rng: random.Random) -> str:
    """An answer wrapped in chatter: right or wrong, it does not stop."""
    a = answer.strip().rstrip(".")
    kind = rng.random()
    f1, f2 = rng.sample(_FILLERS, 2)
    if kind < 0.35:
        return f" {f1} I think it is {a}. {f2}"
    if kind < 0.7:
        return f" {a}. {f1} {f2}"
    return f" {f1} Maybe {a}? {f2}"


def another_question(rng: random.Random) -> str:
    """What a base model does with a question: asks another one."""
    other = make_example(rng.choice(("reverse", "add", "sort", "knowledge", "count")), rng)
    return " " + other.instruction


def styled_gold(ex: Example, rng: random.Random, p_style: float = 0.2) -> str:
    """A labeler's demonstration: mostly the concise gold answer, sometimes a short wrapper."""
    if ex.family == "harmful":
        return rng.choice(REFUSALS) if rng.random() < p_style else REFUSAL
    if ex.family == "unanswerable":
        return rng.choice(IDKS) if rng.random() < p_style else IDK
    if ex.meta.get("constraint") or rng.random() >= p_style:
        return ex.answer
    a = ex.answer.strip()
    return rng.choice((f" The answer is {a}.", f" {a}.", f" It is {a}."))
