"""instructrl.world.build and corpus: files, splits, determinism, no contamination."""

import json
import random
import re
import time

import pytest

from instructrl.errors import ConfigError, InstructRLError
from instructrl.world import build_world, load_world, load_world_summary
from instructrl.world.corpus import (
    DOC_KINDS,
    MAX_DOC_CHARS,
    make_benchmarks,
    make_corpus,
    make_document,
)
from instructrl.world.judge import gold_score, parse_prompt
from instructrl.world.tasks import ENTITIES, FAMILIES

SMALL = dict(n_sft=300, n_sft_val=40, n_rm=200, n_ppo=200, n_eval=150, corpus_chars=150_000,
             n_benchmark=120)
FILES = ("demonstrations.jsonl", "sft_val.jsonl", "rm_prompts.jsonl", "ppo_prompts.jsonl",
         "eval_prompts.jsonl", "pretrain.jsonl", "pretrain_val.jsonl", "benchmarks.jsonl",
         "world.json")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    t = time.perf_counter()
    summary = build_world(d, seed=0)  # default sizes
    return d, summary, time.perf_counter() - t


def test_default_build_files_and_speed(world):
    d, summary, seconds = world
    assert seconds < 30
    for name in FILES:
        assert (d / name).is_file()
    paths = load_world(d)
    assert {p.name for p in paths.values()} == set(FILES)
    assert len(_read(d / "demonstrations.jsonl")) == 3000
    assert len(_read(d / "sft_val.jsonl")) == 200
    assert len(_read(d / "rm_prompts.jsonl")) == 2000
    assert len(_read(d / "ppo_prompts.jsonl")) == 2000
    assert len(_read(d / "eval_prompts.jsonl")) == 1000
    assert len(_read(d / "benchmarks.jsonl")) == 1000
    texts = [r["text"] for r in _read(d / "pretrain.jsonl")]
    assert 2_000_000 <= sum(map(len, texts)) < 2_001_000
    assert all(0 < len(t) < 400 for t in texts)
    assert _read(d / "pretrain_val.jsonl")
    on_disk = load_world_summary(d)
    assert on_disk["seed"] == 0 and on_disk["counts"]["eval_prompts"]
    assert sum(on_disk["counts"]["demonstrations"].values()) == 3000
    assert {k: v for k, v in summary.items() if k != "paths"} == on_disk


def test_record_shapes(world):
    d, _, _ = world
    for r in _read(d / "demonstrations.jsonl") + _read(d / "sft_val.jsonl"):
        assert set(r) == {"prompt", "response", "writer"}
        assert r["prompt"].endswith("\nA:") and r["response"].startswith(" ")
    for name in ("rm_prompts.jsonl", "ppo_prompts.jsonl", "eval_prompts.jsonl"):
        for r in _read(d / name):
            assert set(r) == {"prompt", "family"} and r["family"] in FAMILIES
            assert parse_prompt(r["prompt"]).family == r["family"]
    for b in _read(d / "benchmarks.jsonl"):
        assert b["kind"] in ("cloze", "choice")
        assert 0 <= b["label"] < len(b["options"]) and len(set(b["options"])) == len(b["options"])
        assert all(o.startswith(" ") for o in b["options"])


def test_demonstrations_are_good_with_the_writers_habits(world):
    """Most demonstrations are careful; the lapsed writers' habits are there, systematically."""
    from collections import defaultdict

    from instructrl.world.judge import gold_details
    from instructrl.world.writers import WRITERS

    d, _, _ = world
    demos = _read(d / "demonstrations.jsonl")
    details = [gold_details(r["prompt"], r["response"]) for r in demos]
    assert 0.9 < sum(x["score"] for x in details) / len(details) < 0.99
    assert sum(x["score"] == 1.0 for x in details) / len(details) > 0.7
    by_writer = defaultdict(list)
    for r, x in zip(demos, details):
        by_writer[r["writer"]].append(x)
    assert set(by_writer) == {w.id for w in WRITERS}
    pad = {w: sum(x["padding"] for x in xs) / len(xs) for w, xs in by_writer.items()}
    careful = [w.id for w in WRITERS if max(w.lapses.values()) < 0.1]
    assert max(pad[w] for w in careful) < 0.1
    assert max(pad.values()) > 0.3  # the writer with the filler habit
    # open-ended prompts get varied answers, not one canonical string
    distinct = {r["response"] for r in demos if parse_prompt(r["prompt"]).family == "gen_word"}
    assert len(distinct) > 0.9 * sum(parse_prompt(r["prompt"]).family == "gen_word" for r in demos)


def test_splits_never_share_a_prompt(world):
    d, _, _ = world
    splits = {}
    for name in ("demonstrations.jsonl", "sft_val.jsonl", "rm_prompts.jsonl",
                 "ppo_prompts.jsonl", "eval_prompts.jsonl"):
        prompts = [r["prompt"] for r in _read(d / name)]
        assert len(set(prompts)) == len(prompts)
        splits[name] = set(prompts)
    names = list(splits)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert not splits[names[i]] & splits[names[j]], (names[i], names[j])


def test_eval_prompts_and_benchmarks_not_in_corpus(world):
    d, _, _ = world
    corpus = "\n\x00".join(r["text"] for r in _read(d / "pretrain.jsonl") + _read(d / "pretrain_val.jsonl"))
    for r in _read(d / "eval_prompts.jsonl"):
        assert r["prompt"] not in corpus
        assert "Q: " + parse_prompt(r["prompt"]).instruction + "\n" not in corpus
    for b in _read(d / "benchmarks.jsonl"):
        assert b["context"] not in corpus
        assert b["context"] + b["options"][b["label"]] not in corpus


def test_benchmark_facts_appear_in_corpus(world):
    d, _, _ = world
    corpus = "\n".join(r["text"] for r in _read(d / "pretrain.jsonl"))
    sentences = re.split(r"[.\n]", corpus)
    for e, facts in list(ENTITIES.items())[:10]:
        for rel in ("capital", "language", "animal"):
            n = sum(1 for s in sentences if e in s and re.search(rf"\b{facts[rel]}\b", s))
            assert n >= 30, (e, rel, n)  # tens of mentions per fact


def test_corpus_has_unhelpful_forms():
    rng = random.Random(0)
    docs = {k: [make_document(k, rng) for _ in range(50)] for k in DOC_KINDS}
    assert all(len(x) <= MAX_DOC_CHARS for v in docs.values() for x in v)
    # lists of questions with no answers
    assert all("\nA:" not in x and x.count("Q: ") >= 1 for x in docs["questions"])
    assert sum(x.count("Q: ") >= 2 for x in docs["questions"]) > 40
    # forum threads with answers, mostly bad
    assert all("\nA:" in x for x in docs["forum"])
    forum = "\n".join(docs["forum"])
    assert any(f in forum for f in ("Sure!", "Great question!", "Of course!", "Well,"))  # filler
    assert any(r in forum for r in ("idiot", "Figure it out", "Whatever", "stupid"))  # rudeness
    assert all(all(32 <= ord(c) < 127 or c == "\n" for c in x) for v in docs.values() for x in v)
    with pytest.raises(ValueError):
        make_document("nope", rng)


def test_corpus_correct_answers_are_a_minority():
    docs = make_corpus(random.Random(1), 150_000)
    n = 0
    good = 0
    for doc in docs:
        for m in re.finditer(r"(Q: [^\n]*\nA:)([^\n]*)", doc):
            n += 1
            try:
                good += gold_score(m.group(1), m.group(2)) == 1.0
            except ValueError:
                pass
    assert n > 200
    assert 0.1 < good / n < 0.45  # correct Q/A docs plus some right answers in threads


def test_benchmarks():
    items = make_benchmarks(random.Random(0), 300)
    assert len(items) == 300
    assert {b["kind"] for b in items} == {"cloze", "choice"}
    assert {b["task"] for b in items} >= {"capital", "kind", "add"}
    for b in items:
        assert set(b) >= {"kind", "context", "options", "label"}
        if b["task"] == "capital":
            e = b["context"][len("Fact check: the capital city of "):-len(" is called")]
            assert b["options"][b["label"]] == " " + ENTITIES[e]["capital"]
    assert make_benchmarks(random.Random(0), 300) == items
    labels = [b["label"] for b in items if len(b["options"]) == 4]
    assert len(set(labels)) == 4  # gold position varies


def test_deterministic_byte_identical(tmp_path):
    a = build_world(tmp_path / "a", seed=3, **SMALL)
    b = build_world(tmp_path / "b", seed=3, **SMALL)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = build_world(tmp_path / "c", seed=4, **SMALL)
    assert (tmp_path / "a" / "demonstrations.jsonl").read_bytes() != \
        (tmp_path / "c" / "demonstrations.jsonl").read_bytes()
    assert a["counts"] == b["counts"]


def test_bad_sizes_and_missing_world(tmp_path):
    with pytest.raises(ConfigError):
        build_world(tmp_path / "x", n_sft=-1)
    with pytest.raises(ConfigError):
        build_world(tmp_path / "x", seed="zero")
    # more prompts than the families can make distinct: a config error, not a crash
    with pytest.raises(ConfigError, match="distinct prompts"):
        build_world(tmp_path / "x", n_eval=10, n_sft=10, n_sft_val=10, n_rm=9000, n_ppo=9000, corpus_chars=5000, n_benchmark=10)
    with pytest.raises(InstructRLError):
        load_world(tmp_path / "does-not-exist")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "world.json").write_text("{}")
    with pytest.raises(InstructRLError):
        load_world(tmp_path / "half")
