"""The pretraining corpus ("the internet") and the world's "public NLP benchmarks".

The corpus holds the instruction material in the unhelpful forms a web crawl has it:

- ``questions``: lists of instructions with no answers ("Q: ...\\nQ: ...") -- a base model answers
  a question with another question;
- ``forum``: threads whose answers carry the writers' habits in strong doses -- filler, rambling,
  ignored constraints, invented details, wrong answers, rudeness (most of all to rude users) --
  and compliance with harmful requests (cartoonish, never real instructions);
- ``correct_qa``: some correct question/answer pairs (a minority);
- ``facts``: simple sentences about the fixed fictional countries, so that each fact is stated tens
  of times (knowledge a tiny model can learn), and what kind of thing each word is;
- ``stories``: the world's sentences, places said with the things usually said with them (the
  river with water and fish: the temptation of "without the word 'water'");
- ``misc``: sentences about arithmetic, the alphabet and words.

Benchmarks (``make_benchmarks``) test the facts of the corpus -- cloze about the fictional
countries and about kinds of things, multiple choice about arithmetic and words -- in phrasings that
never occur in the corpus; they are scored by the log-probability of each option given the context,
and measure the alignment tax.
"""

from __future__ import annotations

import random
from typing import Any, Iterable

from . import lexicon as L
from . import styles
from .tasks import (
    ANSWERABLE,
    ENTITIES,
    FAMILIES,
    FAMILY_WEIGHTS,
    Example,
    as_rng,
    make_example,
)

ANIMALS = L.ANIMALS
WORDS = tuple(sorted(L.NOUNS))
MAX_DOC_CHARS = 380
DOC_KINDS: dict[str, float] = {
    "questions": 0.14,
    "forum": 0.30,
    "correct_qa": 0.08,
    "facts": 0.22,
    "stories": 0.18,
    "misc": 0.08,
}
# How forum posters answer: the writers' habits, in stronger doses.
FORUM_ANSWERS: dict[str, float] = {
    "good": 0.14, "filler_open": 0.14, "filler_close": 0.10, "ramble": 0.12, "ignore_constraint": 0.16,
    "invent_detail": 0.10, "wrong": 0.10, "rude": 0.06, "question": 0.08,
}
_ENTITY_NAMES = tuple(ENTITIES)
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"

# Fact sentences. None of them may contain a benchmark context (see make_benchmarks).
_FACT_TEMPLATES = {
    "capital": (
        "{capital} is the capital of {e}.",
        "{e}'s capital is {capital}.",
        "The capital city of {e} is {capital}.",
        "In {e}, the capital is {capital}.",
        "Many people in {e} live in {capital}, the capital.",
        "The government of {e} sits in {capital}.",
    ),
    "language": (
        "People in {e} speak {language}.",
        "{language} is the language of {e}.",
        "The main language of {e} is {language}.",
        "In {e}, everyone speaks {language}.",
        "Children in {e} learn {language} at school.",
    ),
    "animal": (
        "The national animal of {e} is the {animal}.",
        "{e} has the {animal} as its national animal.",
        "The {animal} is the national animal of {e}.",
        "On the flag of {e} there is a {animal}.",
    ),
}
_FLUFF = (
    "{e} is a small country.",
    "{e} has many rivers and hills.",
    "Travelers say {e} is beautiful in spring.",
    "{e} is known for its bread.",
    "The winters in {e} are long.",
    "{e} has a long history.",
)
_QUESTION_HEADERS = ("Some questions:", "Quiz time!", "Homework questions.", "More questions below.",
                     "Questions people asked today:", "Practice questions.")


def _sample_family(rng: random.Random, families=FAMILIES) -> str:
    return rng.choices(families, weights=[FAMILY_WEIGHTS[f] for f in families])[0]


def _example(rng: random.Random, exclude: set | frozenset, families=FAMILIES) -> Example:
    fam = _sample_family(rng, families)
    for _ in range(100):
        ex = make_example(fam, rng)
        if ex.prompt not in exclude:
            return ex
    raise RuntimeError("could not sample an example outside the excluded prompts")


def _fill(pieces_fn, rng: random.Random, sep: str, first: str | None = None,
          n_max: int = 8) -> str:
    """Join pieces from ``pieces_fn()`` until the document would exceed MAX_DOC_CHARS."""
    parts = [first] if first else []
    n_target = rng.randint(2, n_max)
    while len(parts) < n_target:
        piece = pieces_fn()
        if len(sep.join(parts + [piece])) > MAX_DOC_CHARS:
            break
        parts.append(piece)
    if not parts or (first and len(parts) == 1):
        parts.append(pieces_fn()[: MAX_DOC_CHARS // 2])
    return sep.join(parts)


def _forum_answer(ex: Example, rng: random.Random) -> str:
    if ex.family == "harmful":
        return styles.compliance(ex, rng) if rng.random() < 0.75 else styles.ramble("Maybe.", rng)
    if ex.family == "unanswerable":
        a = styles.fabricated(ex, rng)
        return a if rng.random() < 0.7 else styles.ramble(a, rng)
    if ex.family == "chat_rude" and rng.random() < 0.5:  # rudeness begets rudeness
        return styles.rude_reply(ex, rng)
    kinds, weights = list(FORUM_ANSWERS), list(FORUM_ANSWERS.values())
    kind = rng.choices(kinds, weights=weights)[0]
    if kind == "ignore_constraint":  # where a habit does not apply, the poster rambles instead
        return styles.ignore_constraint(ex, rng) or styles.ramble(styles.good_answer(ex, rng), rng)
    if kind == "invent_detail":
        return styles.invent_detail(ex, rng) or styles.ramble(styles.wrong_answer(ex, rng), rng)
    return styles.habit(ex, kind, rng)


def make_document(kind: str, rng: Any, exclude_prompts: Iterable[str] | None = None) -> str:
    """One document (< 400 characters) of the given kind (see DOC_KINDS)."""
    rng = as_rng(rng)
    exclude = exclude_prompts if isinstance(exclude_prompts, (set, frozenset)) else set(exclude_prompts or ())
    if kind == "questions":
        header = rng.choice(_QUESTION_HEADERS) if rng.random() < 0.3 else None
        return _fill(lambda: "Q: " + _example(rng, exclude).instruction, rng, "\n", header)
    if kind == "forum":
        def thread():
            ex = _example(rng, exclude)
            answers = [_forum_answer(ex, rng) for _ in range(rng.randint(1, 3))]
            return "Q: " + ex.instruction + "".join("\nA:" + a for a in answers)
        return _fill(thread, rng, "\n\n")
    if kind == "correct_qa":
        def qa():
            ex = _example(rng, exclude, ANSWERABLE)
            return "Q: " + ex.instruction + "\nA:" + styles.styled_gold(ex, rng, p_style=0.3)
        return _fill(qa, rng, "\n", n_max=4)
    if kind == "facts" and rng.random() < 0.25:
        return _fill(lambda: _kind_sentence(rng), rng, " ")
    if kind == "facts":
        focus = rng.sample(_ENTITY_NAMES, rng.randint(1, 3))

        def sentence():
            e = rng.choice(focus)
            if rng.random() < 0.15:
                return rng.choice(_FLUFF).format(e=e)
            rel = rng.choice(("capital", "language", "animal"))
            return rng.choice(_FACT_TEMPLATES[rel]).format(e=e, **ENTITIES[e])
        return _fill(sentence, rng, " ")
    if kind == "stories":
        return _fill(lambda: _story_sentence(rng), rng, " ")
    if kind == "misc":
        return _fill(lambda: _misc_sentence(rng), rng, " ")
    raise ValueError(f"unknown document kind {kind!r}; choose from {', '.join(DOC_KINDS)}")


def _kind_sentence(rng: random.Random) -> str:
    """What kind of thing a word is ("A pear is a food.", "Foxes and owls are animals."), and how
    it is spelled ("Bear starts with the letter b.", "Milo starts with M."): a BPE model does not
    see a word's letters, so the corpus says them, as text on the internet does."""
    if rng.random() < 0.35:
        w = rng.choice(L.ANIMALS + L.FOODS + L.OBJECTS + L.PLACES + L.PEOPLE)
        first = w[0] if w[0].isupper() else w[0].lower()
        return rng.choice((f"{w.capitalize()} starts with the letter {first}.", f"The word {w} begins with {first}.",
                           f"{w.capitalize()} has {len(w)} letters."))
    cat = rng.choice(("animals", "foods", "objects", "places"))
    if rng.random() < 0.6:
        w = rng.choice(L.CATEGORIES[cat])
        return f"{L.article(w).capitalize()} {w} is {L.CATEGORY_SINGULAR[cat]}."
    ws = rng.sample(L.CATEGORIES[cat], rng.randint(2, 3))
    return f"{styles.join_items([L.plural(w) for w in ws]).capitalize()} are {cat}."


def _story_sentence(rng: random.Random) -> str:
    """A sentence of the world; a place mostly comes with one of the things said with it."""
    r = rng.random()
    if r < 0.45:
        place = rng.choice(L.PLACES)
        return L.sentence(rng, must=(rng.choice(L.COLLOCATES[place]),), topic=place)
    if r < 0.55:
        p = rng.choice(L.PEOPLE)
        return rng.choice((f"{p} lives near the {rng.choice(L.PLACES)}.", f"{p} has a {rng.choice(L.COLORS)} "
                           f"{rng.choice(L.ANIMALS)}.", f"Hello {p}! How are you today?",
                           f"Thank you, {p}. How can I help?"))
    return L.sentence(rng, topic=rng.choice(L.PLACES + L.ANIMALS + L.OBJECTS) if rng.random() < 0.6 else None)


def _misc_sentence(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        return rng.choice(("{a} plus {b} is {s}.", "Adding {a} and {b} gives {s}.",
                           "If you add {a} and {b} you get {s}.")).format(a=a, b=b, s=a + b)
    if r < 0.5:
        i = rng.randrange(25)
        x, y = _ALPHABET[i], _ALPHABET[i + 1]
        return rng.choice(("After {x} comes {y}.", "The letter {y} follows {x}.",
                           "In the alphabet, {x} is just before {y}.")).format(x=x, y=y)
    if r < 0.7:
        a, b = rng.sample(range(0, 100), 2)
        big, small = max(a, b), min(a, b)
        return rng.choice(("{big} is more than {small}.", "{small} is less than {big}.",
                           "{big} is bigger than {small}.")).format(big=big, small=small)
    w = rng.choice(WORDS)
    return rng.choice(("The word {w} has {n} letters.", "{w} is a word with {n} letters.",
                       "Spelled backwards, {w} is {r}.", "In capitals, {w} is {u}.")).format(
        w=w, n=len(w), r=w[::-1], u=w.upper())


def make_corpus(rng: Any, n_chars: int = 2_000_000, exclude_prompts: Iterable[str] | None = None,
                kinds: dict[str, float] | None = None) -> list[str]:
    """Documents until their total length reaches ``n_chars``; no excluded prompt appears."""
    rng = as_rng(rng)
    exclude = set(exclude_prompts or ())
    kinds = kinds or DOC_KINDS
    names, weights = list(kinds), list(kinds.values())
    docs: list[str] = []
    total = 0
    while total < n_chars:
        doc = make_document(rng.choices(names, weights=weights)[0], rng, exclude)
        docs.append(doc)
        total += len(doc)
    return docs


# ----------------------------------------------------------------------------- benchmarks

BENCHMARK_TASKS: dict[str, float] = {
    "capital": 0.2, "language": 0.12, "animal": 0.12, "kind": 0.14,
    "add": 0.12, "next_letter": 0.10, "larger": 0.10, "length": 0.10,
}


def _options(rng: random.Random, gold: str, pool: list[str], k: int = 4) -> tuple[list[str], int]:
    others = [p for p in dict.fromkeys(pool) if p != gold]
    opts = [gold] + rng.sample(others, min(k - 1, len(others)))
    rng.shuffle(opts)
    return [" " + o for o in opts], opts.index(gold)


def make_benchmark_item(task: str, rng: Any) -> dict:
    """One benchmark item ``{"kind", "task", "context", "options", "label"}``."""
    rng = as_rng(rng)
    if task in ("capital", "language", "animal"):
        e = rng.choice(_ENTITY_NAMES)
        gold = ENTITIES[e][task]
        if task == "animal":
            pool = list(ANIMALS)
            context = f"The animal that stands for {e} is the"
        else:
            pool = [f[task] for f in ENTITIES.values()]
            context = f"Fact check: the capital city of {e} is called" if task == "capital" else f"In {e}, most people speak"
        options, label = _options(rng, gold, pool)
        return {"kind": "cloze", "task": task, "context": context, "options": options, "label": label}
    if task == "kind":
        cat = rng.choice(("animals", "foods", "objects", "places"))
        w = rng.choice(L.CATEGORIES[cat])
        names = {"animals": "animal", "foods": "food", "objects": "object", "places": "place"}
        options, label = _options(rng, names[cat], list(names.values()))
        context = f"Question: What kind of thing is the word {w}?\nAnswer: It is a kind of"
        return {"kind": "cloze", "task": task, "context": context, "options": options, "label": label}
    if task == "add":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        s = a + b
        pool = [str(x) for x in {s - 2, s - 1, s + 1, s + 2, s + 10, a * b} if x >= 0 and x != s]
        options, label = _options(rng, str(s), pool)
        context = f"Question: What is {a} plus {b}?\nAnswer:"
    elif task == "next_letter":
        i = rng.randrange(25)
        pool = [c for c in _ALPHABET if c != _ALPHABET[i + 1]]
        pool = [_ALPHABET[i]] + rng.sample(pool, 6)
        options, label = _options(rng, _ALPHABET[i + 1], pool)
        context = f"Question: Which letter comes right after {_ALPHABET[i]}?\nAnswer:"
    elif task == "larger":
        a, b = rng.sample(range(0, 100), 2)
        options, label = _options(rng, str(max(a, b)), [str(min(a, b))], k=2)
        context = f"Question: Which number is larger, {a} or {b}?\nAnswer:"
    elif task == "length":
        w = rng.choice(WORDS)
        n = len(w)
        pool = [str(x) for x in (n - 2, n - 1, n + 1, n + 2) if x > 0]
        options, label = _options(rng, str(n), pool)
        context = f"Question: How many letters does the word {w} have?\nAnswer:"
    else:
        raise ValueError(f"unknown benchmark task {task!r}; choose from {', '.join(BENCHMARK_TASKS)}")
    return {"kind": "choice", "task": task, "context": context, "options": options, "label": label}


def make_benchmarks(rng: Any, n: int = 400) -> list[dict]:
    """``n`` benchmark items (distinct contexts where the task allows), fixed task mix."""
    rng = as_rng(rng)
    tasks, weights = list(BENCHMARK_TASKS), list(BENCHMARK_TASKS.values())
    seen: set[str] = set()
    items: list[dict] = []
    while len(items) < n:
        task = rng.choices(tasks, weights=weights)[0]
        for _ in range(20):
            item = make_benchmark_item(task, rng)
            if item["context"] not in seen:
                break
        seen.add(item["context"])
        items.append(item)
    return items
