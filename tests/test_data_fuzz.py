"""Property: any file either parses or raises DataError, never another exception type."""

from __future__ import annotations

import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructrl.data.readers import (
    describe,
    detect_kind,
    parse_demonstration,
    parse_prompt,
    parse_ranking,
    read_demonstrations,
    read_pretrain_texts,
    read_prompts,
    read_rankings,
)
from instructrl.errors import DataError

KEYS = ["prompt", "response", "responses", "ranking", "labeler", "chosen", "rejected", "messages",
        "role", "content", "info", "post", "title", "subreddit", "summaries", "text", "choice", "worker"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["", " ", "a", "b", "\n\nHuman: x\n\nAssistant: y",
                                           "\n\nAssistant:", "user", "assistant", "\ud800"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), inner, max_size=5),
    ),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "", 1]),
                           "content": st.sampled_from(["hi", "yo", " ", "", 2, "x"])}),
    max_size=4,
)
plausible = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(json_values, messages, st.lists(st.one_of(st.integers(-1, 4), st.lists(st.integers(-1, 4), max_size=3)),
                                              max_size=5),
              st.lists(st.sampled_from(["a", "b", "c", "a "]), max_size=5),
              st.fixed_dictionaries({"post": scalars, "title": scalars}),
              st.lists(st.fixed_dictionaries({"text": scalars}), max_size=3)),
    max_size=6,
)

# Valid records of every format, then one field replaced or deleted: reaches the deep checks.
_U = {"role": "user", "content": "q"}
VALID = [
    {"prompt": "p", "response": "r"},
    {"messages": [_U, {"role": "assistant", "content": "a"}]},
    {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [2, [0, 1]], "labeler": "L"},
    {"prompt": "p", "chosen": "a", "rejected": "b"},
    {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"},
    {"prompt": "q", "chosen": [_U, {"role": "assistant", "content": "a"}],
     "rejected": [_U, {"role": "assistant", "content": "b"}]},
    {"info": {"post": "x", "title": "t"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 1},
    {"prompt": "p", "family": "f"},
    {"text": "t"},
]


@st.composite
def mutated(draw):
    rec = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(rec) + ["ranking", "prompt"]))
        if draw(st.booleans()):
            rec.pop(key, None)
        else:
            rec[key] = draw(st.one_of(json_values, messages, st.lists(st.integers(-1, 3), max_size=4),
                                      st.lists(st.sampled_from(["a", "b", "c", " "]), max_size=4)))
    return rec


plausible = st.one_of(plausible, mutated())


def to_line(v) -> bytes:
    if isinstance(v, bytes):
        return v.replace(b"\n", b" ")
    try:
        return json.dumps(v).encode("utf-8", "surrogatepass")
    except ValueError:
        return b"{"


lines = st.lists(st.one_of(st.binary(max_size=30), json_values, plausible, st.just(b""),
                           st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass"))),
                 min_size=0, max_size=5)

TMP = tempfile.mkdtemp(prefix="instructrl-fuzz-")
READERS = [read_demonstrations, read_rankings, read_prompts, read_pretrain_texts, detect_kind, describe]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines, st.sampled_from([".jsonl", ".txt"]))
def test_readers_parse_or_raise_data_error(ls, suffix):
    path = os.path.join(TMP, "f" + suffix)
    with open(path, "wb") as f:
        f.write(b"\n".join(to_line(v) for v in ls))
    for reader in READERS:
        try:
            reader(path)
        except DataError as e:
            assert "f" + suffix in str(e)


@settings(max_examples=500, deadline=None)
@given(st.one_of(plausible, json_values))
def test_parse_functions_raise_only_data_error(obj):
    for parse in (parse_demonstration, parse_ranking, parse_prompt):
        try:
            rec = parse(obj, "x.jsonl", 1)
        except DataError as e:
            assert e.line == 1 and "x.jsonl:1" in str(e)
        else:
            if parse is parse_ranking:  # a valid ranking is a well-formed ranking
                k = len(rec.responses)
                assert k >= 2 and sorted(rec.ranking) == list(range(k))
                assert len(set(rec.responses)) == k
                assert len(set(rec.ranks())) >= 2
