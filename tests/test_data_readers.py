"""Readers: round-trips for every accepted format, and one DataError per kind of bad line."""

from __future__ import annotations

import json
import os

import pytest

from instructrl.data import readers
from instructrl.data.readers import (
    Demonstration,
    Prompt,
    Ranking,
    describe,
    detect_kind,
    read_demonstrations,
    read_pretrain_texts,
    read_prompts,
    read_rankings,
    render_messages_plain,
    write_jsonl,
)
from instructrl.errors import DataError, InstructRLError

GOOD_DEMO = {"prompt": "Q: Reverse 'cat'.\nA:", "response": " tac"}
GOOD_RANK = {"prompt": "Q: Add 2 and 3.\nA:", "responses": [" 5", " 6", " 4"], "ranking": [0, 2, 1]}
GOOD_PROMPT = {"prompt": "Q: Sort 3 1 2.\nA:"}


def write_lines(tmp_path, lines, name="data.jsonl"):
    """Write lines (dict -> JSON, str -> as is, bytes -> raw) joined by newlines."""
    path = tmp_path / name
    parts = []
    for x in lines:
        if isinstance(x, dict) or isinstance(x, list):
            x = json.dumps(x)
        if isinstance(x, str):
            x = x.encode("utf-8")
        parts.append(x)
    path.write_bytes(b"\n".join(parts) + b"\n")
    return path


def check(err: DataError, path, line, field):
    msg = str(err)
    assert os.path.basename(str(path)) in msg
    assert err.path == str(path)
    assert err.line == line
    if line is not None:
        assert f":{line}" in msg
    assert err.field == field
    if field is not None:
        assert f"'{field}'" in msg
    assert isinstance(err, InstructRLError)


def expect_error(reader, tmp_path, bad, line=3, field=None, good=None, name="data.jsonl"):
    """Two good lines, a blank line (skipped but counted), then ``bad`` on line 3... unless line=None."""
    lines = [good, "", bad] if line == 3 else [bad]
    path = write_lines(tmp_path, lines, name)
    with pytest.raises(DataError) as ei:
        reader(path)
    check(ei.value, path, line, field)
    return ei.value


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_demonstrations_plain_roundtrip(tmp_path):
    demos = [Demonstration("Q: a\nA:", " b"), Demonstration("Q: c\nA:", " d\ne")]
    path = tmp_path / "d.jsonl"
    write_jsonl(path, demos)
    got = read_demonstrations(path)
    assert got == demos
    assert got[1].line == 2 and got[1].source == str(path)


def test_demonstrations_chat(tmp_path):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye?"},
        {"role": "assistant", "content": "Bye."},
    ]
    path = write_lines(tmp_path, [{"messages": msgs}, GOOD_DEMO])
    d, plain = read_demonstrations(path)
    assert d.messages == msgs
    assert d.prompt == "System: Be brief.\nUser: Hi\nAssistant: Hello\nUser: Bye?\nAssistant:"
    assert d.response == " Bye."
    assert plain.messages is None
    # round trip keeps messages
    out = tmp_path / "o.jsonl"
    write_jsonl(out, [d, plain])
    assert read_demonstrations(out) == [d, plain]
    assert render_messages_plain([{"role": "user", "content": "Hi"}]) == "User: Hi\nAssistant:"


def test_rankings_kwise_roundtrip_with_ties(tmp_path):
    rec = {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, [0, 3], 1], "labeler": "L1"}
    path = write_lines(tmp_path, [rec, GOOD_RANK])
    r, r2 = read_rankings(path)
    assert r.ranking == [2, 0, 3, 1]
    assert r.ties == [[0, 3]]
    assert r.labeler == "L1"
    assert r.ranks() == [1, 2, 0, 1]
    assert sorted(r.comparisons()) == sorted([(2, 0), (2, 3), (2, 1), (0, 1), (3, 1)])
    assert r2.ties is None and r2.ranks() == [0, 2, 1] and r2.labeler is None
    assert len(r2.comparisons()) == 3
    out = tmp_path / "o.jsonl"
    write_jsonl(out, [r, r2])
    assert read_rankings(out) == [r, r2]
    assert json.loads(out.read_text().splitlines()[0])["ranking"] == [2, [0, 3], 1]


def test_ranks_direct_construction():
    r = Ranking("p", ["a", "b"], [1, 0])
    assert r.ranks() == [1, 0] and r.k == 2 and r.comparisons() == [(1, 0)]


def test_rankings_pairwise(tmp_path):
    path = write_lines(tmp_path, [{"prompt": "p", "chosen": " good", "rejected": " bad", "labeler": "x"}])
    (r,) = read_rankings(path)
    assert r == Ranking("p", [" good", " bad"], [0, 1], "x", None)
    assert r.ranks() == [0, 1]


def test_rankings_hh(tmp_path):
    prefix = "\n\nHuman: What is 2+2?\n\nAssistant: Let me think.\n\nHuman: Well?\n\nAssistant:"
    rec = {"chosen": prefix + " 4.", "rejected": prefix + " 5."}
    path = write_lines(tmp_path, [rec])
    (r,) = read_rankings(path)
    assert r.prompt == prefix
    assert r.prompt.endswith("\n\nAssistant:")
    assert r.responses == [" 4.", " 5."] and r.ranking == [0, 1]


def test_rankings_chat_lists(tmp_path):
    user = {"role": "user", "content": "Name a color."}
    chosen = [user, {"role": "assistant", "content": "Blue."}]
    rejected = [user, {"role": "assistant", "content": "Dog."}]
    lines = [
        {"chosen": chosen, "rejected": rejected},
        {"prompt": "Name a color.", "chosen": chosen, "rejected": rejected},  # UltraFeedback style
        {"prompt": [user], "chosen": chosen[1:], "rejected": rejected[1:]},  # TRL conversational
        {"prompt": "Name a color.", "chosen": chosen[1:], "rejected": rejected[1:]},
    ]
    path = write_lines(tmp_path, lines)
    rs = read_rankings(path)
    for r in rs:
        assert r.prompt == "User: Name a color.\nAssistant:"
        assert r.responses == [" Blue.", " Dog."]
        assert r.messages == [user]
        assert r.ranking == [0, 1]


def test_rankings_summarize_from_feedback(tmp_path):
    rec = {
        "info": {"id": "t3_x", "post": "My cat ate my homework.", "title": "Cat problem", "subreddit": "pets"},
        "summaries": [{"text": " cat ate homework", "policy": "a"}, {"text": " homework gone", "policy": "b"}],
        "choice": 1,
        "worker": "w7",
    }
    path = write_lines(tmp_path, [rec])
    (r,) = read_rankings(path)
    assert r.prompt == "SUBREDDIT: r/pets\nTITLE: Cat problem\nPOST: My cat ate my homework.\nTL;DR:"
    assert r.responses == [" cat ate homework", " homework gone"]
    assert r.ranking == [1, 0] and r.ranks() == [1, 0] and r.labeler == "w7"
    # three summaries: only the best is known, the rest share a place
    rec3 = dict(rec, summaries=rec["summaries"] + [{"text": " x"}], choice=2)
    (r3,) = read_rankings(write_lines(tmp_path, [rec3], "b.jsonl"))
    assert r3.ranks() == [1, 1, 0] and r3.ties == [[0, 1]]


def test_rankings_mixed_formats_in_one_file(tmp_path):
    lines = [
        GOOD_RANK,
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"chosen": "\n\nHuman: x\n\nAssistant: a", "rejected": "\n\nHuman: x\n\nAssistant: b"},
        {"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
         "rejected": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "b"}]},
        {"info": {"post": "x"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0},
    ]
    rs = read_rankings(write_lines(tmp_path, lines))
    assert [r.k for r in rs] == [3, 2, 2, 2, 2]
    assert [r.line for r in rs] == [1, 2, 3, 4, 5]


def test_prompts_meta_roundtrip(tmp_path):
    path = write_lines(tmp_path, [{"prompt": "Q: x\nA:", "family": "reverse", "gold": "y"}, GOOD_PROMPT])
    ps = read_prompts(path)
    assert ps[0] == Prompt("Q: x\nA:", {"family": "reverse", "gold": "y"})
    assert ps[1].meta == {}
    out = tmp_path / "o.jsonl"
    write_jsonl(out, ps)
    assert read_prompts(out) == ps


def test_pretrain_jsonl_and_txt(tmp_path):
    path = write_lines(tmp_path, [{"text": "one doc"}, "", {"text": "two\ndoc"}])
    assert read_pretrain_texts(path) == ["one doc", "two\ndoc"]
    txt = tmp_path / "c.txt"
    txt.write_text("first para\nline two\n\n  \n\nsecond para\n\n\nthird\n", encoding="utf-8")
    assert read_pretrain_texts(txt) == ["first para\nline two", "second para", "third"]
    assert read_pretrain_texts(txt, split="file") == ["first para\nline two\n\n  \n\nsecond para\n\n\nthird"]
    with pytest.raises(ValueError):
        read_pretrain_texts(txt, split="sentence")


def test_blank_lines_crlf_and_bom_are_fine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_DEMO).encode() + b"\r\n\r\n   \n" + json.dumps(GOOD_DEMO).encode())
    ds = read_demonstrations(path)
    assert [d.line for d in ds] == [1, 4]


def test_detect_kind_and_describe(tmp_path):
    assert detect_kind(write_lines(tmp_path, [GOOD_DEMO], "a.jsonl")) == "demonstrations"
    assert detect_kind(write_lines(tmp_path, [{"messages": []}], "b.jsonl")) == "demonstrations"
    assert detect_kind(write_lines(tmp_path, [GOOD_RANK], "c.jsonl")) == "rankings"
    assert detect_kind(write_lines(tmp_path, [{"chosen": "a", "rejected": "b"}], "d.jsonl")) == "rankings"
    assert detect_kind(write_lines(tmp_path, [GOOD_PROMPT], "e.jsonl")) == "prompts"
    assert detect_kind(write_lines(tmp_path, [{"text": "t"}], "f.jsonl")) == "pretrain"
    txt = tmp_path / "g.txt"
    txt.write_text("hello world\n")
    assert detect_kind(txt) == "pretrain"
    with pytest.raises(DataError) as ei:
        detect_kind(write_lines(tmp_path, ["", {"foo": 1}], "h.jsonl"))
    assert ei.value.line == 2

    rk = {"prompt": "pp", "responses": ["a", "bb", "ccc", "dddd"], "ranking": [[0, 1], 2, 3], "labeler": "L"}
    d = describe(write_lines(tmp_path, [GOOD_RANK, rk, {"prompt": "p", "chosen": "x", "rejected": "y"}], "r.jsonl"))
    assert d["kind"] == "rankings" and d["count"] == 3
    assert d["k_distribution"] == {2: 1, 3: 1, 4: 1}
    assert d["comparisons"] == 3 + 5 + 1
    assert d["with_ties"] == 1 and d["labelers"] == 1
    assert d["response_chars"]["min"] == 1 and d["response_chars"]["max"] == 4
    json.dumps(d)  # JSON-able for the CLI
    d = describe(write_lines(tmp_path, [GOOD_DEMO, GOOD_DEMO], "dd.jsonl"))
    assert d["count"] == 2 and d["response_chars"]["mean"] == 4.0 and d["chat"] == 0
    assert describe(write_lines(tmp_path, [GOOD_PROMPT], "pp.jsonl"))["prompt_chars"]["max"] == len(GOOD_PROMPT["prompt"])
    assert describe(txt)["text_chars"]["max"] == len("hello world")


def test_parquet_without_backend_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_arrow(name, *a, **k):
        if name.split(".")[0] in ("pyarrow", "datasets"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_arrow)
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError) as ei:
        read_demonstrations(path)
    assert "pip install pyarrow" in str(ei.value) and "d.parquet" in str(ei.value)


def test_parquet_rows(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "chosen": "a", "rejected": "b"},
                                         {"prompt": "p", "chosen": "a", "rejected": "a"}]), str(path))
    with pytest.raises(DataError) as ei:
        read_rankings(path)
    check(ei.value, path, 2, "rejected")


# --------------------------------------------------------------------------------------------
# One DataError per kind of bad line
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as ei:
        read_prompts(tmp_path / "nope.jsonl")
    check(ei.value, tmp_path / "nope.jsonl", None, None)
    assert "not found" in str(ei.value)
    with pytest.raises(DataError):
        read_prompts(tmp_path)  # a directory


@pytest.mark.parametrize("reader", [read_demonstrations, read_rankings, read_prompts, read_pretrain_texts])
def test_empty_file(tmp_path, reader):
    for i, content in enumerate([b"", b"\n\n  \n"]):
        path = tmp_path / f"e{i}.jsonl"
        path.write_bytes(content)
        with pytest.raises(DataError) as ei:
            reader(path)
        check(ei.value, path, None, None)
        assert "no records" in str(ei.value)
    txt = tmp_path / "e.txt"
    txt.write_text("\n \n")
    with pytest.raises(DataError, match="no records"):
        read_pretrain_texts(txt)


@pytest.mark.parametrize(
    "reader,good",
    [(read_demonstrations, GOOD_DEMO), (read_rankings, GOOD_RANK), (read_prompts, GOOD_PROMPT),
     (read_pretrain_texts, {"text": "t"})],
)
def test_malformed_json_and_not_object(tmp_path, reader, good):
    err = expect_error(reader, tmp_path, '{"prompt": "x", ', good=good)
    assert "malformed JSON" in str(err)
    err = expect_error(reader, tmp_path, "[1, 2]", good=good)
    assert "JSON object" in str(err) and "array" in str(err)
    expect_error(reader, tmp_path, '"just a string"', good=good)
    expect_error(reader, tmp_path, "[" * 100000, good=good)  # deep nesting: RecursionError inside json


@pytest.mark.parametrize(
    "reader,good",
    [(read_demonstrations, GOOD_DEMO), (read_rankings, GOOD_RANK), (read_prompts, GOOD_PROMPT)],
)
def test_non_utf8(tmp_path, reader, good):
    err = expect_error(reader, tmp_path, b'{"prompt": "caf\xe9"}', good=good)
    assert "UTF-8" in str(err)


def test_non_utf8_txt(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"fine\n\nbad \xff byte\n")
    with pytest.raises(DataError) as ei:
        read_pretrain_texts(path)
    check(ei.value, path, 3, None)


def test_lone_surrogate_escape(tmp_path):
    expect_error(read_prompts, tmp_path, '{"prompt": "x\\ud800"}', field="prompt", good=GOOD_PROMPT)


# -- demonstrations


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"response": " x"}, "prompt"),
        ({"prompt": "p"}, "response"),
        ({"prompt": "p", "response": 3}, "response"),
        ({"prompt": ["p"], "response": "r"}, "prompt"),
        ({"prompt": "", "response": "r"}, "prompt"),
        ({"prompt": "p", "response": " \n\t"}, "response"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]}, "messages[1].content"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}]}, "messages[0].content"),
        ({"messages": ["hi", {"role": "assistant", "content": "y"}]}, "messages[0]"),
    ],
)
def test_bad_demonstrations(tmp_path, bad, field):
    expect_error(read_demonstrations, tmp_path, bad, field=field, good=GOOD_DEMO)


# -- rankings


@pytest.mark.parametrize(
    "bad,field,words",
    [
        ({"responses": ["a", "b"], "ranking": [0, 1]}, "prompt", "missing"),
        ({"prompt": "p", "responses": ["a", "b"]}, "ranking", "missing"),
        ({"prompt": "p", "responses": "ab", "ranking": [0, 1]}, "responses", "list"),
        ({"prompt": "p", "responses": ["a", 2], "ranking": [0, 1]}, "responses[1]", "string"),
        ({"prompt": "p", "responses": ["a", "  "], "ranking": [0, 1]}, "responses[1]", "empty"),
        ({"prompt": " ", "responses": ["a", "b"], "ranking": [0, 1]}, "prompt", "empty"),
        ({"prompt": "p", "responses": ["a"], "ranking": [0]}, "responses", "at least 2"),
        ({"prompt": "p", "responses": [], "ranking": []}, "responses", "at least 2"),
        ({"prompt": "p", "responses": ["a", "b", "a"], "ranking": [0, 1, 2]}, "responses[2]", "duplicate"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1]}, "ranking", "missing [2]"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1, 1]}, "ranking", "more than once"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1, 3]}, "ranking", "out of range"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1, -1]}, "ranking", "out of range"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, [1, 1], 2]}, "ranking", "more than once"),
        ({"prompt": "p", "responses": ["a", "b", "c"], "ranking": [[0, 1, 2]]}, "ranking", "tied"),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1.0]}, "ranking[1]", "index"),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": [0, True]}, "ranking[1]", "index"),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": [0, []]}, "ranking[1]", "empty"),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": [["0", 1]]}, "ranking[0]", "non-integer"),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": "01"}, "ranking", "list"),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1], "labeler": 3}, "labeler", "string"),
        ({"prompt": "p", "chosen": "a", "rejected": "a"}, "rejected", "identical"),
        ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
        ({"prompt": "p", "rejected": "a"}, "chosen", "missing"),
        ({"prompt": "p", "chosen": 1, "rejected": "a"}, "chosen", "string"),
        ({"prompt": "p", "chosen": "a", "rejected": ""}, "rejected", "empty"),
        ({"prompt": "p"}, "responses", "missing"),
        ({"foo": "bar"}, "responses", "missing"),
        # HH
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: X\n\nAssistant: c"}, "rejected", "prompt"),
        ({"chosen": "\n\nHuman: a b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, "chosen", "Assistant"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant:  "}, "rejected", "empty"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: b"}, "rejected", "identical"),
        # chat lists
        ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": [{"role": "user", "content": "Z"}, {"role": "assistant", "content": "c"}]}, "rejected", "prompt"),
        ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": [{"role": "user", "content": "a"}, {"role": "user", "content": "c"}]}, "rejected[1].role", "assistant"),
        ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "rejected", "missing"),
        ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": "c"}, "rejected", "list"),
        ({"prompt": "other", "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]}, "prompt", "match"),
        ({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}]}, "prompt", "match"),
        ({"chosen": [{"role": "assistant", "content": "b"}], "rejected": [{"role": "assistant", "content": "c"}]}, "chosen", "before"),
        ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "rejected", "identical"),
        # summarize from feedback
        ({"summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}, "info", "missing"),
        ({"info": "x", "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}, "info", "object"),
        ({"info": {"title": "t"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}, "info.post", "missing"),
        ({"info": {"post": "x", "title": 1}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}, "info.title", "string"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 2}, "choice", "out of range"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": "0"}, "choice", "integer"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}, {"text": "b"}]}, "choice", "missing"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}], "choice": 0}, "summaries", "at least 2"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}, {"text": "a"}], "choice": 0}, "summaries[1].text", "duplicate"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}, {"txt": "b"}], "choice": 0}, "summaries[1].text", "missing"),
        ({"info": {"post": "x"}, "summaries": [{"text": "a"}, "b"], "choice": 0}, "summaries[1]", "object"),
        ({"info": {"post": "x"}, "summaries": {"text": "a"}, "choice": 0}, "summaries", "list"),
        ({"info": {"post": " "}, "summaries": [{"text": "a"}, {"text": "b"}], "choice": 0}, "info.post", "empty"),
    ],
)
def test_bad_rankings(tmp_path, bad, field, words):
    err = expect_error(read_rankings, tmp_path, bad, field=field, good=GOOD_RANK)
    assert words in str(err)


# -- prompts and pretraining text


@pytest.mark.parametrize(
    "bad,field",
    [({"text": "x"}, "prompt"), ({"prompt": None}, "prompt"), ({"prompt": "\n "}, "prompt"), ({"prompt": 1}, "prompt")],
)
def test_bad_prompts(tmp_path, bad, field):
    expect_error(read_prompts, tmp_path, bad, field=field, good=GOOD_PROMPT)


@pytest.mark.parametrize("bad,field", [({"prompt": "x"}, "text"), ({"text": ""}, "text"), ({"text": 3}, "text")])
def test_bad_pretrain(tmp_path, bad, field):
    expect_error(read_pretrain_texts, tmp_path, bad, field=field, good={"text": "ok"})


def test_first_line_error_is_line_1(tmp_path):
    path = write_lines(tmp_path, ["", "", '{"prompt": 3}'])
    with pytest.raises(DataError) as ei:
        read_prompts(path)
    check(ei.value, path, 3, "prompt")
    path = write_lines(tmp_path, ['{"prompt": 3}'], "x.jsonl")
    with pytest.raises(DataError) as ei:
        read_prompts(path)
    check(ei.value, path, 1, "prompt")


def test_no_torch_import():
    import subprocess
    import sys

    code = "import sys, instructrl.data, instructrl.data.readers; assert 'torch' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
