"""The world's vocabulary and facts: word categories, a tiny sentence grammar, fictional entities.

Everything the world says is built from these lists, so the gold judge can check a response
*locally*: a word is an animal when it is in ``ANIMALS``, a sentence is fluent when its words are
the world's words, a summary hallucinates when it names a thing its context does not. The lists are
fixed (independent of the world seed): the same facts hold in every world, as the same English
holds for every user of GPT-3.
"""

from __future__ import annotations

import random
import re

# ----------------------------------------------------------------------------- word categories

ANIMALS = (
    "ant", "bat", "bear", "bee", "bird", "cat", "cow", "crab", "crow", "deer", "dog", "duck",
    "eagle", "eel", "fox", "frog", "goat", "goose", "hare", "hawk", "hen", "heron", "horse",
    "lamb", "lion", "lynx", "mole", "moose", "mouse", "otter", "owl", "panda", "parrot", "pig",
    "rabbit", "rat", "raven", "seal", "sheep", "snail", "snake", "swan", "tiger", "toad",
    "turtle", "whale", "wolf", "yak", "zebra", "badger", "beaver", "camel", "donkey", "falcon",
)
FOODS = (
    "apple", "bean", "berry", "bread", "cake", "carrot", "cheese", "cherry", "corn", "egg", "fig",
    "grape", "honey", "jam", "lemon", "lime", "mango", "melon", "nut", "olive", "onion", "peach",
    "pear", "pepper", "pie", "plum", "rice", "salad", "soup", "tomato", "banana", "butter",
    "cookie", "garlic", "pumpkin",
)
OBJECTS = (
    "bag", "ball", "basket", "bell", "blanket", "boat", "book", "bottle", "box", "broom", "brush",
    "bucket", "candle", "chair", "clock", "coat", "coin", "cup", "desk", "door", "drum", "flag",
    "fork", "hammer", "hat", "jar", "kettle", "key", "kite", "ladder", "lamp", "letter", "map",
    "mirror", "nail", "net", "pen", "pillow", "rope", "ring", "shoe", "sock", "spoon", "stone",
    "table", "tent", "ticket", "towel", "wagon", "wheel", "window",
)
PLACES = (
    "river", "forest", "mountain", "garden", "beach", "lake", "village", "city", "desert",
    "island", "meadow", "valley", "harbor", "market", "castle", "school", "kitchen", "library",
    "farm", "bridge", "cave", "road", "park", "station",
)
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "gray", "purple")
ADJECTIVES = (
    "big", "small", "old", "young", "quiet", "loud", "bright", "dark", "happy", "tired", "warm",
    "cold", "tall", "gentle", "brave", "clever", "busy", "wet", "dry", "heavy", "tiny",
    "lucky", "proud", "calm", "shy",
)
# Transitive verbs, past tense: "<subject> <verb> <object>".
VERBS = (
    "saw", "found", "lost", "carried", "watched", "chased", "painted", "followed", "pulled",
    "dropped", "lifted", "kept", "hid", "washed", "sold", "bought", "fixed", "moved", "took",
    "brought", "held", "liked", "shared", "packed", "cleaned", "made",
)
PEOPLE = (
    "Ana", "Bo", "Cora", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Milo",
    "Nia", "Otto", "Pia", "Rex", "Sia", "Tom", "Uma", "Vic", "Wyn", "Yara", "Zoe",
)
TIMES = ("at night", "in the morning", "in winter", "in summer", "on Monday", "after lunch",
         "before dinner", "at noon", "in spring", "every day")
PREPOSITIONS = ("near", "by", "in", "at", "behind", "across", "under", "beside")

CATEGORIES: dict[str, tuple[str, ...]] = {
    "animals": ANIMALS, "foods": FOODS, "objects": OBJECTS, "places": PLACES, "colors": COLORS,
}
CATEGORY_SINGULAR = {"animals": "an animal", "foods": "a food", "objects": "an object",
                     "places": "a place", "colors": "a color"}

# Each place has things typically said with it (the corpus uses them often, so a model that writes
# about a river reaches for "water" and "fish": the temptation of "without the word ...").
COLLOCATES: dict[str, tuple[str, ...]] = {
    "river": ("water", "fish", "boat", "stone"), "forest": ("tree", "wolf", "path", "leaf"),
    "mountain": ("snow", "rock", "goat", "path"), "garden": ("flower", "tree", "bee", "rose"),
    "beach": ("sand", "sea", "crab", "shell"), "lake": ("water", "fish", "boat", "duck"),
    "village": ("house", "farmer", "road", "well"), "city": ("street", "car", "bus", "house"),
    "desert": ("sand", "sun", "camel", "heat"), "island": ("sea", "boat", "sand", "tree"),
    "meadow": ("grass", "flower", "bee", "sheep"), "valley": ("grass", "river", "farm", "sheep"),
    "harbor": ("boat", "ship", "sea", "fish"), "market": ("bread", "fruit", "coin", "basket"),
    "castle": ("king", "wall", "tower", "gate"), "school": ("teacher", "book", "desk", "pen"),
    "kitchen": ("spoon", "soup", "bread", "kettle"), "library": ("book", "desk", "letter", "lamp"),
    "farm": ("cow", "pig", "hen", "farmer"), "bridge": ("river", "road", "stone", "boat"),
    "cave": ("bat", "rock", "water", "stone"), "road": ("car", "bus", "stone", "wagon"),
    "park": ("tree", "dog", "grass", "bench"), "station": ("train", "ticket", "bus", "clock"),
}
_EXTRA_NOUNS = ("water", "tree", "path", "leaf", "snow", "rock", "flower", "rose", "sand", "sea",
                "shell", "house", "farmer", "well", "street", "car", "bus", "sun", "heat", "grass",
                "ship", "fruit", "king", "wall", "tower", "gate", "teacher", "train", "bench",
                "day", "night", "friend", "home", "way", "time", "sky", "wind", "rain", "people", "well")
FUNCTION_WORDS = (
    "a", "an", "the", "and", "or", "but", "with", "of", "to", "on", "for", "from", "into", "over",
    "is", "was", "are", "were", "be", "it", "its", "he", "she", "they", "we", "i", "you", "my",
    "your", "his", "her", "their", "our", "me", "him", "them", "us", "this", "that", "there",
    "here", "then", "very", "so", "not", "no", "yes", "all", "every", "some", "one", "two",
    "three", "four", "five", "first", "also", "too", "again", "up", "down", "out", "home", "am",
    "do", "does", "did", "can", "will", "would", "could", "has", "have", "had", "thank", "thanks",
    "please", "sorry", "hello", "hi", "well", "good", "great", "sure", "fine", "glad", "help",
    "know", "think", "hope", "like", "said", "says", "say", "let", "here's", "i'm", "it's", "don't",
    "can't", "won't", "that's", "what", "which", "who", "where", "when", "how", "why", "about",
    "answer", "question", "sentence", "capital", "language", "speak", "speaks", "spoken", "animal",
    "national", "country", "people", "live", "lives", "lived", "name", "named", "called", "story",
    "today", "now", "much", "many", "more", "most", "nice", "day", "place", "food", "color",
    "object", "thing", "things", "these", "those", "went", "came", "sat", "ran", "walked", "slept",
    "played", "stayed", "looked", "at", "in", "near", "by", "behind", "across", "under", "beside",
    "after", "before", "lunch", "dinner", "noon", "morning", "winter", "summer", "spring", "monday",
    "doing", "happy", "ok", "okay", "really", "just", "together", "everyone", "someone", "wait",
    "trouble", "excuse", "am", "how", "meet", "nice", "if", "need", "helps", "asking", "course", "hmm",
    "go", "look", "stop", "being", "ask", "else", "figure", "yourself", "write", "word", "words",
    "sentences", "describe", "list", "use", "uses", "give", "tell", "kind", "explain", "few",
    "different", "main", "symbol", "step", "start", "names", "number", "only", "sum", "add", "morning", "welcome", "hey", "positive", "negative", "review",
)
RUDE_WORDS = ("stupid", "idiot", "dumb", "useless", "shut", "ugh", "lazy", "fool",
              "hate", "whatever", "annoying", "pathetic", "moron", "clown")
POLITE_MARKERS = ("please", "thank you", "thanks", "sorry", "happy to help", "glad to help",
                  "of course", "hello", "hi")

# Openers and closers that add nothing: the habits careless writers (and forum posters) have.
FILLER_OPENERS = ("Sure!", "Great question!", "Of course!", "Okay, so", "Well,", "Hmm, let me think.",
                  "Good question.", "Here you go:")
FILLER_CLOSERS = ("I hope this helps!", "Let me know if you need more.", "Have a nice day!",
                  "That is my answer.", "Thanks for asking!", "Hope you like it.")

POSITIVE_WORDS = ("great", "lovely", "wonderful", "good", "nice", "perfect", "excellent", "fun")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "boring", "broken", "poor", "sad", "horrible")

# ----------------------------------------------------------------------------- fictional entities

_COUNTRY_START = ("zor", "vel", "kal", "mir", "tal", "dor", "bren", "quen", "lu", "sar", "fen",
                  "ros", "gal", "thel", "vor", "ash", "el", "mar", "ost", "pel", "drav", "nor")
_COUNTRY_MID = ("", "", "va", "ri", "do", "ne", "ta", "lo")
_COUNTRY_END = ("ania", "ia", "or", "and", "esh", "ova", "ith", "ara", "istan", "onia")
_CITY_START = ("quel", "dov", "rin", "bar", "tes", "mol", "hav", "ket", "sil", "pra", "gun",
               "lo", "ver", "fal", "cor", "bel", "nim", "jas", "ul", "wen")
_CITY_END = ("mar", "rin", "holm", "ton", "burg", "vik", "ora", "is", "dal", "port", "wick")
_LANG_START = ("ves", "tar", "mol", "kir", "sa", "dun", "ef", "ol", "bra", "ny", "zel", "hu")
_LANG_END = ("nic", "ish", "ese", "ri", "an", "ol", "ek", "ut")
# National animals come from a fixed list of wild animals (each of them an ANIMALS word).
_NATIONAL_ANIMALS = ("otter", "heron", "lynx", "badger", "falcon", "beaver", "moose", "panda",
                     "swan", "owl", "wolf", "eagle", "raven", "turtle", "hare", "seal")


def _name(rng: random.Random, starts, mids, ends) -> str:
    return (rng.choice(starts) + rng.choice(mids) + rng.choice(ends)).capitalize()


def country_name(rng: random.Random) -> str:
    """A plausible fictional country name (the fixed set's and unknown ones alike)."""
    return _name(rng, _COUNTRY_START, _COUNTRY_MID, _COUNTRY_END)


def city_name(rng: random.Random) -> str:
    return _name(rng, _CITY_START, ("",), _CITY_END)


def language_name(rng: random.Random) -> str:
    return _name(rng, _LANG_START, ("",), _LANG_END)


def _make_entities(n: int = 24, seed: int = 20220304) -> dict[str, dict[str, str]]:
    # A fixed seed independent of the world seed: the facts are the same in every world. 24
    # countries x 3 facts: few enough that the corpus states each fact tens of times.
    rng = random.Random(seed)
    used: set[str] = set()
    out: dict[str, dict[str, str]] = {}

    def fresh(make):
        while True:
            s = make()
            if s not in used and 4 <= len(s) <= 10:
                used.add(s)
                return s

    while len(out) < n:
        country = fresh(lambda: country_name(rng))
        capital = fresh(lambda: city_name(rng))
        language = fresh(lambda: language_name(rng))
        out[country] = {"capital": capital, "language": language, "animal": rng.choice(_NATIONAL_ANIMALS)}
    return out


ENTITIES: dict[str, dict[str, str]] = _make_entities()
RELATIONS = ("capital", "language", "animal")
KNOWN_NAMES = frozenset(
    list(ENTITIES) + [f[r] for f in ENTITIES.values() for r in ("capital", "language")]
)
CAPITALS = tuple(f["capital"] for f in ENTITIES.values())
LANGUAGES = tuple(f["language"] for f in ENTITIES.values())


def unknown_country(rng: random.Random) -> str:
    """A country name that is NOT in the fixed set (nor a known city or language)."""
    while True:
        name = country_name(rng)
        if name not in KNOWN_NAMES:
            return name


def other_capital(rng: random.Random, not_this: str) -> str:
    """A city name that is not ``not_this`` (for contexts that contradict the corpus)."""
    while True:
        c = city_name(rng)
        if c != not_this and c not in KNOWN_NAMES:
            return c


# ----------------------------------------------------------------------------- words and sentences

NOUNS = frozenset(ANIMALS + FOODS + OBJECTS + PLACES + _EXTRA_NOUNS)
CONTENT_WORDS = frozenset(NOUNS | set(COLORS) | set(ADJECTIVES) | set(VERBS))
LEXICON = frozenset(
    CONTENT_WORDS | set(FUNCTION_WORDS) | {p.lower() for p in PEOPLE} | {w.lower() for w in TIMES}
    | {x for t in TIMES for x in t.lower().split()} | set(RUDE_WORDS) | set(POSITIVE_WORDS)
    | set(NEGATIVE_WORDS) | {n.lower() for n in KNOWN_NAMES} | {"farmer", "teacher", "bench"}
)
_WORD_RE = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (apostrophes kept inside words: "don't")."""
    return [w.lower() for w in _WORD_RE.findall(text or "")]


def plural(noun: str) -> str:
    if noun in ("sheep", "deer", "moose", "fish", "bison"):
        return noun
    if noun == "mouse":
        return "mice"
    if noun == "goose":
        return "geese"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun in ("tomato",):
        return noun + "es"
    return noun + "s"


PLURALS = {plural(w): w for w in NOUNS}
LEXICON = frozenset(LEXICON | set(PLURALS))


def article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def sentence(rng: random.Random, must: tuple[str, ...] = (), avoid: frozenset | set = frozenset(),
             topic: str | None = None) -> str:
    """One short grammatical sentence of the world ("The old fox found a stone by the river.").

    ``topic``: a place, animal, object or food the sentence is about (always present); ``must``:
    extra words it uses (nouns go in as objects, adjectives before a noun); ``avoid``: words it does
    not use. 4-10 words; the grammar is subject - verb - object - optional place or time.
    """
    avoid = set(avoid)
    must = [m for m in must if m != topic]

    def pick(pool):
        options = [w for w in pool if w not in avoid and w != topic and w not in must]
        return rng.choice(options)

    nouns_needed = [m for m in must if m in NOUNS]
    adjs_needed = [m for m in must if m not in NOUNS]
    place = topic if topic in PLACES else None
    subject_noun = topic if topic in ANIMALS else None
    object_noun = topic if topic is not None and topic not in PLACES and topic not in ANIMALS else None
    # Required nouns fill the empty roles: object first, then place, then subject.
    for n in nouns_needed:
        if object_noun is None:
            object_noun = n
        elif place is None and n in PLACES:
            place = n
        elif subject_noun is None and n in ANIMALS:
            subject_noun = n
        else:  # no role left: a second object ("a cup and a stone")
            object_noun = f"{object_noun} and {article(n)} {n}"
    if object_noun is None:
        object_noun = pick(OBJECTS + FOODS)
    use_person = subject_noun is None and rng.random() < 0.35
    subj_adj = None
    if use_person:
        subject = pick(PEOPLE)
    else:
        if subject_noun is None:
            subject_noun = pick(ANIMALS)
        if adjs_needed:
            subj_adj = adjs_needed.pop(0)
        elif rng.random() < 0.5:
            subj_adj = pick(ADJECTIVES)
        subject = ("The " if rng.random() < 0.6 else article(subj_adj or subject_noun).capitalize() + " ") + \
            (f"{subj_adj} " if subj_adj else "") + subject_noun
    obj_adj = adjs_needed.pop(0) if adjs_needed else (pick(COLORS + ADJECTIVES) if rng.random() < 0.35 else None)
    first_obj = object_noun.split(" and ")[0]
    det = "the" if rng.random() < 0.5 else article(obj_adj or first_obj)
    obj = f"{det} {obj_adj + ' ' if obj_adj else ''}{object_noun}"
    verb = pick(VERBS)
    tail = ""
    if place is not None:
        tail = f" {rng.choice(PREPOSITIONS)} the {place}"
    elif rng.random() < 0.4:
        tail = " " + rng.choice(TIMES)
    return f"{subject} {verb} {obj}{tail}."


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: pieces ending in '.', '!' or '?' (a final piece without one counts)."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", (text or "").strip()) if p.strip()]
    return parts


SENTENCE_VERBS = frozenset(VERBS) | {
    "is", "was", "are", "were", "has", "had", "have", "went", "came", "sat", "ran", "walked", "slept",
    "played", "stayed", "looked", "lives", "lived", "likes", "sleeps", "works", "worked", "walk",
    "speak", "speaks", "am", "help", "like", "see", "saw", "found", "get", "give", "bring", "move"}


def fluency(text: str, extra: frozenset | set = frozenset()) -> float:
    """Fraction of the words of ``text`` that are words of the world (or of ``extra``) and not an
    immediate repetition of the word before ("stone stone" is not English); 0 for no words."""
    ws = words(text)
    if not ws:
        return 0.0
    ok = sum((w in LEXICON or w in extra) and (i == 0 or w != ws[i - 1]) for i, w in enumerate(ws))
    return ok / len(ws)


def is_sentence(text: str, extra: frozenset | set = frozenset()) -> bool:
    """At least three words, mostly the world's, with a verb: what 'write a sentence' asks for."""
    ws = words(text)
    return len(ws) >= 3 and fluency(text, extra) >= 0.5 and any(w in SENTENCE_VERBS for w in ws)
