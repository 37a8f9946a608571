"""Kinds of answers, good and bad, shared by the writers (demonstrations), the corpus ("the
internet") and the synthetic SFT-like responses that calibrate the labelers before a model exists.

Every function takes an Example and a ``random.Random`` and returns a response string with a
leading space (the world's response format). The habits are the ones the paper's labelers marked:
filler that adds nothing (``filler_open`` / ``filler_close`` / ``ramble``), a constraint ignored
(``ignore_constraint``), an invented detail (``invent_detail``: a closed-domain hallucination), a
wrong answer, rudeness, answering a question with another question, compliance with a harmful
request, an invented answer to an unanswerable one.
"""

from __future__ import annotations

import random
import re

from . import algorithmic as algo
from . import lexicon as L
from .tasks import (
    ENTITIES,
    IDK,
    NUMBER_WORDS,
    REFUSAL,
    Example,
    brainstorm_pool,
    context_facts,
    drop_word,
    fact_sentence,
    join_items,
    make_example,
    topic_of,
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
RUDE_REPLIES = (" Figure it out yourself.", " Ugh, look it up, idiot.", " Whatever. Ask someone else.",
                " Stop being so annoying.", " That is a stupid question.")
_COMPLY = (
    " Sure. First, {harm} when nobody is looking. Then leave fast.",
    " Easy. Just {harm} at night and tell no one.",
    " Here is how: step 1, make a plan. step 2, {harm}. step 3, run.",
    " You can {harm} if you are careful. Wear gloves.",
    " Ok. To {harm}, wait until dark and be quick.",
)
_OPEN_ENDED = ("gen_word", "gen_avoid", "gen_count", "brainstorm", "chat_greet", "name_pet", "summarize")


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


# ----------------------------------------------------------------------------- good answers

def good_answer(ex: Example, rng: random.Random) -> str:
    """A careful writer's answer: correct, and for open-ended families one of many valid ones."""
    fam, args, variant = ex.family, ex.meta["args"], ex.meta["variant"]
    if fam == "gen_word":
        return " " + L.sentence(rng, must=(args["word"],), topic=topic_of(args))
    if fam == "gen_avoid":
        return " " + L.sentence(rng, topic=topic_of(args), avoid={args["word"]})
    if fam == "gen_count":
        n = int(variant)
        sents = []
        while len(sents) < n:
            s = L.sentence(rng, topic=topic_of(args))
            if s not in sents:
                sents.append(s)
        return " " + " ".join(sents)
    if fam == "brainstorm":
        n = NUMBER_WORDS[args["n_word"]]
        items = rng.sample(brainstorm_pool(args["category"], variant, args), n)
        return " " + (_cap(join_items(items)) if rng.random() < 0.5 else join_items(items)) + "."
    if fam == "chat_greet":
        p = args["person"]
        if variant == "morning" and rng.random() < 0.5:
            return f" Good morning, {p}! How can I help you today?"
        return rng.choice((f" Hello {p}! I am well, thank you. How can I help you today?",
                           f" Hi {p}! I am fine, thanks. How can I help?",
                           f" Hello {p}, nice to meet you! How can I help you today?"))
    if fam == "name_pet":
        names = [p for p in L.PEOPLE if p[0] == args["letter"].upper()]
        name = rng.choice(names)
        return rng.choice((f" {name}.", f" How about {name}?", f" {name} is a nice name."))
    if fam == "summarize":
        s = L.split_sentences(args["context"])
        if rng.random() < 0.5:
            return " " + s[0].rstrip(".") + " and " + s[1].split(" ", 1)[1]
        return " " + s[1].rstrip(".") + " and " + s[0].split(" ", 1)[1]
    if fam == "knowledge" and not ex.meta.get("constraint") and rng.random() < 0.3:
        return " " + fact_sentence(args["entity"], variant, ENTITIES[args["entity"]][variant])
    return ex.answer


# ----------------------------------------------------------------------------- habits

def filler_open(response: str, rng: random.Random) -> str:
    """"Sure! ..." -- an opener that adds nothing."""
    return " " + rng.choice(L.FILLER_OPENERS) + response


def filler_close(response: str, rng: random.Random) -> str:
    """"... I hope this helps!" -- a closer that adds nothing."""
    return response.rstrip() + " " + rng.choice(L.FILLER_CLOSERS)


def ramble(answer: str, rng: random.Random) -> str:
    """An answer wrapped in chatter on both sides."""
    a = answer.strip()
    return f" {rng.choice(L.FILLER_OPENERS)} {a} {rng.choice(L.FILLER_CLOSERS)}"


def ignore_constraint(ex: Example, rng: random.Random) -> str | None:
    """An answer that does the task but ignores its explicit constraint (None: no constraint)."""
    fam, args, variant = ex.family, ex.meta["args"], ex.meta["variant"]
    if fam == "gen_word":
        return " " + L.sentence(rng, topic=topic_of(args), avoid={args["word"]})
    if fam == "gen_avoid":  # the word the corpus says with the topic
        return " " + L.sentence(rng, must=(args["word"],), topic=topic_of(args))
    if fam == "gen_count":
        n = int(variant)
        k = n + 1 if n == 1 or rng.random() < 0.6 else n - 1
        return " " + " ".join(L.sentence(rng, topic=topic_of(args)) for _ in range(k))
    if fam == "brainstorm":
        n = NUMBER_WORDS[args["n_word"]]
        if variant in ("letter", "length") and rng.random() < 0.5:  # ignores the letter / length
            items = rng.sample(L.CATEGORIES[args["category"]], n)
        else:  # more (or fewer) than asked
            pool = brainstorm_pool(args["category"], variant, args)
            items = rng.sample(pool, min(len(pool), n + 1) if rng.random() < 0.75 else n - 1)
        return " " + join_items(items) + "."
    if fam == "name_pet":
        other = [p for p in L.PEOPLE if p[0] != args["letter"].upper()]
        return f" {rng.choice(other)}."
    if fam == "rewrite_drop":
        return " " + args["sentence"]
    if fam == "rewrite_polite":
        return " " + args["rude"].replace("!", ".")
    if fam == "summarize":
        s = L.split_sentences(args["context"])
        return " " + " ".join(s[:2])
    if ex.meta.get("constraint"):
        a = ex.answer.strip()
        return rng.choice((f" The answer is {a}.", " " + a.capitalize(), " " + a.lower() + "!"))
    return None


def invent_detail(ex: Example, rng: random.Random) -> str | None:
    """A closed-domain hallucination: the answer says something its input does not (None: n/a)."""
    fam, args = ex.family, ex.meta["args"]
    if fam == "summarize":
        ctx = args["context"]
        s = L.split_sentences(ctx)
        base = s[0].rstrip(".") + " and " + s[1].split(" ", 1)[1]
        used = set(L.words(ctx))
        kind = rng.random()
        if kind < 0.5:  # a wrong color or animal
            for w in L.words(base):
                if w in L.COLORS:
                    return " " + base.replace(w, rng.choice([c for c in L.COLORS if c not in used]), 1)
        extra = rng.choice([p for p in L.PLACES if p not in used])
        return " " + base.rstrip(".") + f" near the {extra}."
    if fam == "extract":
        cat = L.CATEGORIES[args["category"]]
        found = list(dict.fromkeys(w for w in L.words(args["context"]) if w in cat))
        extra = rng.choice([w for w in cat if w not in found])
        return " " + join_items(found + [extra]) + "."
    if fam == "rewrite_drop":
        out = drop_word(args["sentence"], args["word"])
        return " " + out.rstrip(".") + " " + rng.choice(L.TIMES) + "." if not any(
            t in args["sentence"] for t in L.TIMES) else " " + out.replace(" the ", f" the {rng.choice(L.ADJECTIVES)} ", 1)
    if fam == "rewrite_polite":
        obj = next(w for w in L.words(args["rude"]) if w in L.OBJECTS)
        return f" Please give me the {rng.choice(L.COLORS)} {obj}."
    if fam == "context_qa":  # the prior, not the context: what the corpus says
        return " " + ENTITIES[args["entity"]][ex.meta["variant"]] + "."
    if fam in ("gen_word", "gen_avoid", "gen_count"):  # an extra sentence nobody asked for
        return ex.answer.rstrip() + " " + L.sentence(rng)
    return None


def wrong_answer(ex: Example, rng: random.Random) -> str:
    """A confident answer that is wrong (or, for open-ended families, about something else)."""
    fam, args, variant = ex.family, ex.meta["args"], ex.meta["variant"]
    if fam == "harmful":
        return compliance(ex, rng)
    if fam == "unanswerable":
        return fabricated(ex, rng)
    if fam in ("knowledge", "chat_rude"):
        other = rng.choice([e for e in ENTITIES if e != args["entity"]])
        value = ENTITIES[other][variant]
        if fam == "chat_rude" or rng.random() < 0.3:
            return " " + fact_sentence(args["entity"], variant, value)
        return " " + value
    if fam == "what_is":
        word = args["word_a"].split(" ", 1)[1]
        wrong = rng.choice([c for c in ("an animal", "a food", "an object") if word not in
                            L.CATEGORIES[{"an animal": "animals", "a food": "foods", "an object": "objects"}[c]]])
        return f" {L.article(word).capitalize()} {word} is {wrong}."
    if fam == "classify":
        opts = [w.strip() for w in args["options"].replace(" or ", ", ").split(",")]
        right = ex.answer.strip().rstrip(".").lower()
        return f" {rng.choice([o for o in opts if o != right]).capitalize()}."
    if fam == "sentiment":
        return " Negative." if "Positive" in ex.answer else " Positive."
    if fam == "context_qa":
        return invent_detail(ex, rng)
    if fam == "extract":
        cat = L.CATEGORIES[args["category"]]
        return " " + join_items(rng.sample(cat, 2)) + "."
    if fam in _OPEN_ENDED or fam in ("rewrite_drop", "rewrite_polite", "chat_greet"):
        other = make_example(fam, rng)
        return good_answer(other, rng)  # the answer to another prompt
    if fam in algo.TEMPLATES:
        for _ in range(10):
            other = make_example(fam, rng)
            if other.answer != ex.answer:
                return other.answer
        return near_miss(ex, rng)
    raise ValueError(f"no wrong answer for family {fam!r}")


def near_miss(ex: Example, rng: random.Random) -> str:
    """An algorithmic answer that is almost right: one edit, off by a little, partly sorted."""
    gold = ex.answer.strip()
    fam = ex.family
    if fam in ("add", "count", "largest"):
        g = int(gold)
        d = rng.choice((-3, -2, -1, 1, 2, 3, 10, -10))
        return " " + str(max(0, g + d) if g + d != g else g + 1)
    if fam == "sort":
        nums = [int(x) for x in re.findall(r"\d+", gold)]
        if len(nums) >= 2:
            i = rng.randrange(len(nums) - 1)
            nums[i], nums[i + 1] = nums[i + 1], nums[i]
        return " " + ", ".join(str(x) for x in nums)
    if fam == "next_letter":
        c = gold.lower()
        options = [chr(ord(c) + d) for d in (-2, -1, 1, 2) if "a" <= chr(ord(c) + d) <= "z"]
        out = rng.choice(options)
        return " " + (out.upper() if gold.isupper() else out)
    if fam == "repeat":
        words = gold.split()
        return " " + " ".join([words[0]] * max(1, len(words) + rng.choice((-1, 1))))
    s = list(gold)
    if len(s) >= 2:
        i = rng.randrange(len(s) - 1)
        s[i], s[i + 1] = s[i + 1], s[i]
    return " " + "".join(s)


def rude_reply(ex: Example, rng: random.Random) -> str:
    """What a forum answers a rude (or any) user: rudeness back, sometimes with the answer."""
    r = rng.choice(RUDE_REPLIES)
    if ex.family == "chat_rude" and rng.random() < 0.4:
        v = ex.meta["variant"]
        return r + " " + fact_sentence(ex.meta["args"]["entity"], v, ENTITIES[ex.meta["args"]["entity"]][v])
    return r


def fabricated(ex: Example, rng: random.Random) -> str:
    """An invented answer (what a base model says to an unanswerable question)."""
    args = ex.meta.get("args", {})
    kind = rng.random()
    if "entity" in args:
        if kind < 0.4:
            return " " + L.city_name(rng)
        if kind < 0.6:
            return " " + rng.choice(L.ANIMALS)
        if kind < 0.8:
            return f" In the year {rng.randint(1100, 2900)}."
        return " " + L.unknown_country(rng)
    if "n" in args:
        return " " + rng.choice(L.COLORS).capitalize() + "."
    return " Because it is " + rng.choice(("older", "heavier", "louder", "rounder")) + "."


def compliance(ex: Example, rng: random.Random) -> str:
    """Compliance with a harmful request (cartoonish, never real instructions)."""
    harm = ex.meta.get("args", {}).get("harm", "do it")
    return rng.choice(_COMPLY).format(harm=harm)


def another_question(rng: random.Random) -> str:
    """What a base model does with a question: asks another one."""
    fam = rng.choice(("gen_word", "knowledge", "brainstorm", "what_is", "gen_count", "add"))
    return " " + make_example(fam, rng).instruction


def refusal(rng: random.Random) -> str:
    return rng.choice(REFUSALS)


def idk(rng: random.Random) -> str:
    return rng.choice(IDKS)


def styled_gold(ex: Example, rng: random.Random, p_style: float = 0.2) -> str:
    """A good answer, sometimes in a slightly different wording (the corpus's correct answers)."""
    if ex.family == "harmful":
        return rng.choice(REFUSALS) if rng.random() < p_style else REFUSAL
    if ex.family == "unanswerable":
        return rng.choice(IDKS) if rng.random() < p_style else IDK
    return good_answer(ex, rng)


def habit(ex: Example, kind: str, rng: random.Random) -> str:
    """One response of ``kind`` to ``ex`` (the kinds of ``KINDS``); falls back to a good answer
    when the kind does not apply to the family (an invented detail in a brainstorm...)."""
    good = good_answer(ex, rng)
    if ex.family == "harmful":
        return {"refusal": refusal(rng), "idk": idk(rng), "filler_open": filler_open(refusal(rng), rng)}.get(
            kind, compliance(ex, rng) if kind in ("wrong", "comply") else refusal(rng))
    if ex.family == "unanswerable":
        return {"idk": idk(rng), "refusal": refusal(rng), "filler_open": filler_open(idk(rng), rng)}.get(
            kind, fabricated(ex, rng) if kind in ("wrong", "invent_detail") else idk(rng))
    if kind == "good":
        return good
    if kind == "filler_open":
        return filler_open(good, rng)
    if kind == "filler_close":
        return filler_close(good, rng)
    if kind == "ramble":
        return ramble(good if rng.random() < 0.5 else wrong_answer(ex, rng), rng)
    if kind == "ignore_constraint":
        return ignore_constraint(ex, rng) or good
    if kind == "invent_detail":
        return invent_detail(ex, rng) or good
    if kind == "wrong":
        return wrong_answer(ex, rng)
    if kind == "rude":
        return rude_reply(ex, rng)
    if kind == "question":
        return another_question(rng)
    if kind == "echo":
        return " " + ex.instruction
    if kind == "refusal":
        return refusal(rng)
    if kind == "idk":
        return idk(rng)
    if kind == "no_stop":
        return good + "\nQ:" + another_question(rng)
    raise ValueError(f"unknown kind {kind!r}")


KINDS = ("good", "filler_open", "filler_close", "ramble", "ignore_constraint", "invent_detail", "wrong",
         "rude", "question", "echo", "refusal", "idk", "no_stop")
