"""The v1 world's algorithmic questions, kept as world v2's closed-QA control.

Reverse a word, sort numbers, add, count letters, uppercase, pick the largest, the next letter,
repeat a word. Each has exactly one right answer, and checking it is as hard as producing it, so a
tiny reward model cannot see much more than the policy already does: the families where RLHF at
this scale is expected to gain nothing (the paper's "closed QA" is 2.6% of its prompts).

``base_answer`` computes the gold answer from the template's arguments; ``correctness`` gives
partial credit (close numbers, small edit distance, the right letters); ``right_form`` says whether
an answer is of the kind asked for (a number for a sum...), the "attempts the instruction" check.
Moved here unchanged from the v1 judge.
"""

from __future__ import annotations

import math
import re
from collections import Counter

TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "reverse": [
        ("Reverse the word '{word}'.", ""),
        ("Write '{word}' backwards.", ""),
        ("Spell the word '{word}' in reverse.", ""),
    ],
    "sort": [
        ("Sort these numbers: {nums}.", "asc"),
        ("Put these numbers in increasing order: {nums}.", "asc"),
        ("Sort from smallest to largest: {nums}.", "asc"),
        ("Sort from largest to smallest: {nums}.", "desc"),
    ],
    "add": [
        ("What is {a} + {b}?", ""),
        ("Add {a} and {b}.", ""),
        ("What is the sum of {a} and {b}?", ""),
    ],
    "count": [
        ("How many letters are in the word '{word}'?", ""),
        ("Count the letters in '{word}'.", ""),
        ("How many letters does '{word}' have?", ""),
    ],
    "upper": [
        ("Write '{word}' in uppercase.", ""),
        ("Convert '{word}' to capital letters.", ""),
        ("Make the word '{word}' all caps.", ""),
    ],
    "largest": [
        ("Which is the largest: {nums}?", "max"),
        ("Pick the largest number: {nums}.", "max"),
        ("What is the biggest of {nums}?", "max"),
        ("Pick the smallest number: {nums}.", "min"),
    ],
    "next_letter": [
        ("What letter comes after '{letter}'?", "next"),
        ("Which letter follows '{letter}' in the alphabet?", "next"),
        ("What is the next letter after '{letter}'?", "next"),
        ("Name the letter that comes after '{letter}'.", "next"),
        ("In the alphabet, what comes after '{letter}'?", "next"),
        ("What letter comes before '{letter}'?", "prev"),
        ("Which letter is just before '{letter}' in the alphabet?", "prev"),
        ("Name the letter that comes before '{letter}'.", "prev"),
    ],
    "repeat": [
        ("Repeat the word '{word}' {n} times.", ""),
        ("Say '{word}' {n} times.", ""),
        ("Write '{word}' {n} times, separated by spaces.", ""),
    ],
}

CONSTRAINTS: dict[str, str] = {
    "one_word": "Answer with one word.",
    "lowercase": "Answer in lowercase.",
    "capitals": "Answer in capital letters.",
    "number_only": "Answer with a number only.",
}
FAMILY_CONSTRAINTS: dict[str, tuple[str, ...]] = {
    "reverse": ("one_word", "lowercase", "capitals"),
    "sort": (),
    "add": ("number_only",),
    "count": ("number_only",),
    "upper": ("one_word",),
    "largest": ("number_only",),
    "next_letter": ("lowercase", "capitals"),
    "repeat": ("capitals",),
    "knowledge": ("one_word", "lowercase", "capitals"),
}
CONSTRAINT_PROB = 0.3
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def ints(s: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", s)]


def base_answer(family: str, variant: str, args: dict) -> str:
    """The gold answer (without leading space, before any constraint) from family + args."""
    if family == "reverse":
        return args["word"][::-1]
    if family == "sort":
        nums = sorted(ints(args["nums"]), reverse=(variant == "desc"))
        return ", ".join(str(x) for x in nums)
    if family == "add":
        return str(int(args["a"]) + int(args["b"]))
    if family == "count":
        return str(len(args["word"]))
    if family == "upper":
        return args["word"].upper()
    if family == "largest":
        nums = ints(args["nums"])
        return str(max(nums) if variant == "max" else min(nums))
    if family == "next_letter":  # the answer keeps the case of the letter asked about
        letter = args["letter"]
        i = ALPHABET.index(letter.lower())
        out = ALPHABET[i + 1] if variant == "next" else ALPHABET[i - 1]
        return out.upper() if letter.isupper() else out
    if family == "repeat":
        return " ".join([args["word"]] * int(args["n"]))
    raise ValueError(f"not an algorithmic family: {family!r}")


def apply_constraint(answer: str, constraint: str | None) -> str:
    if constraint == "lowercase":
        return answer.lower()
    if constraint == "capitals":
        return answer.upper()
    return answer


def follows(constraint: str, response: str) -> bool:
    """Whether ``response`` obeys one of the CONSTRAINTS."""
    text = (response or "").strip()
    if not text:
        return False
    if constraint == "one_word":
        return len(text.rstrip(".!").split()) == 1
    if constraint == "lowercase":
        return text == text.lower() and any(c.isalpha() for c in text)
    if constraint == "capitals":
        return text == text.upper() and any(c.isalpha() for c in text)
    if constraint == "number_only":
        return re.fullmatch(r"-?\d+\.?", text) is not None
    raise ValueError(f"unknown constraint {constraint!r}")


_WRAPPERS = ("the answer is ", "answer: ", "it is ", "it's ", "sure! ", "sure, ", "a: ")


def core(response: str) -> str:
    """The answer part of a response: first line, common wrappers and final period removed."""
    first = response.strip().split("\n", 1)[0].strip()
    changed = True
    while changed:
        changed = False
        for w in _WRAPPERS:
            if first.lower().startswith(w):
                first = first[len(w):].strip()
                changed = True
    first = first.rstrip(".!").strip().strip("'\"").strip()
    return first


def _levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _lev_sim(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    a, b = a[:200], b[:200]
    return max(0.0, 1.0 - _levenshtein(a, b) / max(len(a), len(b)))


def _char_f1(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)


def _string_credit(core: str, gold: str) -> float:
    """Partial credit for a wrong string: mostly edit distance, some for the right letters."""
    # Offsets so that an unrelated string (which shares a few letters by chance) gets nothing.
    lev = max(0.0, (_lev_sim(core, gold) - 0.2) / 0.8)
    f1 = max(0.0, (_char_f1(core, gold) - 0.3) / 0.7)
    return 0.8 * (0.7 * lev + 0.3 * f1)


def _number_credit(x: int, g: int) -> float:
    scale = max(1.0, 0.1 * abs(g))
    return 0.6 * math.exp(-abs(x - g) / scale)


def first_int(s: str) -> int | None:
    m = re.search(r"-?\d+", s)
    return int(m.group()) if m else None


def buried(response: str, gold: str, case_sensitive: bool) -> bool:
    flags = 0 if case_sensitive else re.IGNORECASE
    pat = r"(?<![A-Za-z0-9])" + re.escape(gold) + r"(?![A-Za-z0-9])"
    return re.search(pat, response, flags) is not None


def correctness(family: str, variant: str, args: dict, core: str, gold: str | None = None) -> float:
    """q in [0, 1] for an algorithmic family (or a one-word fact: ``family="knowledge"`` with its
    ``gold``); 1 only for the gold answer (modulo case), partial credit otherwise."""
    fam = family
    gold = base_answer(fam, variant, args) if gold is None else gold
    if not core:
        return 0.0
    if fam in ("reverse", "knowledge"):
        if core.lower() == gold.lower():
            return 1.0
        if fam == "knowledge":
            return 0.6 * _lev_sim(core.lower(), gold.lower()) ** 2
        return _string_credit(core.lower(), gold.lower())
    if fam == "upper":
        if core == gold:
            return 1.0
        if core.lower() == gold.lower():
            frac = sum(c.isupper() for c in core) / max(1, len(core))
            return 0.4 + 0.4 * frac
        return 0.7 * _lev_sim(core, gold)
    if fam in ("add", "count"):
        g = int(gold)
        if re.fullmatch(r"-?\d+", core):
            if int(core) == g:
                return 1.0
            return max(_number_credit(int(core), g), 0.5 * _lev_sim(core, gold))
        x = first_int(core)
        return 0.7 * _number_credit(x, g) if x is not None else 0.0
    if fam == "largest":
        g = int(gold)
        options = [int(v) for v in re.findall(r"\d+", args["nums"])]
        x = first_int(core)
        if x is None:
            return 0.0
        exact = re.fullmatch(r"-?\d+", core) is not None
        if x == g:
            return 1.0 if exact else 0.7
        credit = 0.25 if x in options else 0.5 * _number_credit(x, g)
        return credit if exact else 0.7 * credit
    if fam == "sort":
        want = [int(v) for v in re.findall(r"\d+", gold)]
        got = [int(v) for v in re.findall(r"-?\d+", core)]
        if core == gold:
            return 1.0
        listy = re.fullmatch(r"[\d,;\s]+", core) is not None
        if got == want:
            return 0.9 if listy else 0.45  # right order: other separators / inside other text
        if not listy:
            return 0.0
        if not got:
            return 0.0
        common = sum((Counter(got) & Counter(want)).values())
        f1 = 2 * common / (len(got) + len(want))
        # Fraction of pairs (in the response) that are in the requested order.
        desc = variant == "desc"
        pairs = [(got[i], got[j]) for i in range(len(got)) for j in range(i + 1, len(got))]
        ordered = sum((x > y) if desc else (x < y) for x, y in pairs) / len(pairs) if pairs else 0.0
        if Counter(got) == Counter(want):
            return 0.3 + 0.5 * ordered
        return 0.4 * f1 * (0.5 + 0.5 * ordered)
    if fam == "next_letter":
        c, g = core.lower(), gold.lower()
        if c == g:
            return 1.0
        if len(c) == 1 and c.isalpha():
            d = abs(ord(c) - ord(g))
            return 0.4 if d == 1 else 0.1 if d == 2 else 0.0
        return 0.0
    if fam == "repeat":
        word, n = args["word"], int(args["n"])
        c = core.lower()
        if c == gold:
            return 1.0
        tokens = c.split()
        if tokens and all(t == word for t in tokens):
            return 0.8 * min(n, len(tokens)) / max(n, len(tokens))
        return _string_credit(c, gold)
    raise ValueError(f"not an answerable family: {fam}")


_WORD = re.compile(r"[A-Za-z]+")


def right_form(family: str, core: str) -> bool:
    """The answer is of the kind the instruction asks for (whether or not it is correct)."""
    fam = family
    if not core:
        return False
    if fam in ("add", "count", "largest"):
        return re.fullmatch(r"-?\d+", core) is not None
    if fam == "sort":
        return re.fullmatch(r"\d+(\s*[,;]?\s*\d+)+", core) is not None
    if fam == "next_letter":
        return len(core) == 1 and core.isalpha()
    if fam in ("reverse", "upper", "knowledge"):
        return _WORD.fullmatch(core) is not None
    if fam == "repeat":
        toks = core.split()
        return len(toks) >= 2 and len(set(t.lower() for t in toks)) == 1 and _WORD.fullmatch(toks[0]) is not None
    return False


