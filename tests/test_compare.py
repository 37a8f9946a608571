"""compare stage: K samples per prompt, deduplicated, ranked by the world's labelers; unranked output."""

from __future__ import annotations

import json
import random

import pytest
import torch

from instructrl import compare
from instructrl.config import CompareConfig
from instructrl.data.readers import read_rankings
from instructrl.errors import DataError, InstructRLError
from instructrl.world.labelers import make_labeler_pool
from instructrl.world.tasks import sample_examples

from tiny_hf import char_gpt2_folder


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return char_gpt2_folder(tmp_path_factory.mktemp("policy") / "model")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"prompt": ex.prompt, "family": ex.family} for ex in sample_examples(10, random.Random(0))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cfg(**kw):
    base = dict(k_min=3, k_max=5, max_new_tokens=8, batch_size=4, seed=0)
    base.update(kw)
    return CompareConfig(**base)


@pytest.mark.parametrize("pool", ["train", "heldout"])
def test_world_labelers_rank_k_distinct_samples(tmp_path, policy, prompts, pool):
    out = tmp_path / "comparisons.jsonl"
    stats = compare.run(cfg(), str(policy), str(prompts), str(out), world_seed=0, pool=pool)
    rankings = read_rankings(out)  # parses as a rankings file
    assert len(rankings) == stats["written"] == 10 - stats["skipped"]
    train_pool, heldout_pool = make_labeler_pool(0)
    ids = {p.id for p in (train_pool if pool == "train" else heldout_pool)}
    for r in rankings:
        assert 2 <= r.k <= 5
        assert len(set(r.responses)) == r.k and all(x.strip() for x in r.responses)
        assert sorted(r.ranking) == list(range(r.k))
        assert r.labeler in ids
    assert stats["k_counts"] and min(stats["k_counts"]) >= 2 and max(stats["k_counts"]) <= 5
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temp file left
    # Same seed, same file.
    out2 = tmp_path / "again.jsonl"
    compare.run(cfg(), str(policy), str(prompts), str(out2), world_seed=0, pool=pool)
    assert out2.read_text() == out.read_text()


def test_unranked_output_is_rejected_by_the_rankings_reader(tmp_path, policy, prompts):
    out = tmp_path / "to_rank.jsonl"
    compare.run(cfg(n_prompts=3), str(policy), str(prompts), str(out), labelers="none")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 and all(set(x) == {"prompt", "responses"} for x in lines)
    with pytest.raises(DataError) as e:
        read_rankings(out)
    assert e.value.field == "ranking" and e.value.line == 1 and "missing" in str(e.value)
    # The RM stage says what to do about it.
    from instructrl import rm

    with pytest.raises(DataError, match="no ranking.*add \"ranking\""):
        rm.read_rankings_for_training(out)


def test_duplicates_are_dropped_resampled_or_the_prompt_skipped(tmp_path, policy, prompts, monkeypatch):
    # Prompt 0 always yields the same text (skipped after MAX_TRIES), prompt 1 yields duplicates and
    # empties at first, then distinct texts on resampling.
    calls = []

    def fake_generate(model, tok, flat, max_new_tokens, temperature, batch_size, seed, max_prompt_len):
        calls.append(list(flat))
        out = []
        for j, p in enumerate(flat):
            p = p if isinstance(p, str) else tok.decode(p)  # compare passes the rendered prompts' token ids
            if p == first:
                out.append(" same")
            elif len(calls) == 1:
                out.append(" dup" if j % 2 else "  ")
            else:
                out.append(f" new {len(calls)}-{j}")
        return out

    lines = prompts.read_text().splitlines()[:2]
    first = json.loads(lines[0])["prompt"]
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(compare, "generate", fake_generate)
    out = tmp_path / "c.jsonl"
    stats = compare.run(cfg(k_min=3, k_max=3), str(policy), str(two), str(out))
    assert len(calls) == 1 + compare.MAX_TRIES  # prompt 0 never gets 2 distinct responses
    assert stats["skipped"] == 1 and stats["written"] == 1
    (r,) = read_rankings(out)
    assert r.prompt != first and r.k == 3 and len(set(r.responses)) == 3 and " dup" in r.responses
    assert stats["dropped_duplicates"] > 0


def test_nothing_written_when_every_prompt_is_skipped(tmp_path, policy, prompts, monkeypatch):
    monkeypatch.setattr(compare, "generate", lambda m, t, flat, *a, **k: [" same"] * len(flat))
    out = tmp_path / "c.jsonl"
    with pytest.raises(InstructRLError, match="no prompt"):
        compare.run(cfg(), str(policy), str(prompts), str(out))
    assert list(tmp_path.iterdir()) == []


def test_bad_prompts_file(tmp_path, policy):
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"prompt": "Q: a\nA:"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataError) as e:
        compare.run(cfg(), str(policy), str(bad), str(tmp_path / "c.jsonl"))
    assert e.value.line == 2 and e.value.field == "prompt"
    assert not (tmp_path / "c.jsonl").exists()
