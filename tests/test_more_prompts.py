"""scripts/more_prompts.py: distinct prompts outside the excluded files, reproducible, and a clear
failure when the world's prompt space is too small."""

import json

import pytest

from tiny_hf import load_script, write_jsonl


def _script():
    return load_script("more_prompts")


def test_draws_distinct_prompts_outside_the_excluded_ones(tmp_path):
    m = _script()
    first = m.more_prompts(300, set(), seed=3)
    excluded = {r["prompt"] for r in first[:150]}
    path = tmp_path / "eval_prompts.jsonl"
    write_jsonl(path, [{"prompt": p, "family": "x"} for p in sorted(excluded)])
    out = tmp_path / "more.jsonl"
    assert m.main(["--n", "400", "--seed", "3", "--exclude", str(path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = [r["prompt"] for r in rows]
    assert len(prompts) == 400 and len(set(prompts)) == 400
    assert not excluded & set(prompts)
    from instructrl.world.tasks import FAMILIES

    assert {r["family"] for r in rows} <= set(FAMILIES) and len({r["family"] for r in rows}) > 5
    # the same seed draws the same file; another seed another one
    assert m.more_prompts(400, excluded, seed=3) == rows
    assert m.more_prompts(400, excluded, seed=4) != rows


def test_refuses_to_overwrite_and_reports_bad_lines(tmp_path):
    m = _script()
    out = tmp_path / "more.jsonl"
    out.write_text("keep me\n")
    with pytest.raises(SystemExit, match="exists"):
        m.main(["--n", "3", "--out", str(out)])
    assert out.read_text() == "keep me\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:2"):
        m.main(["--n", "3", "--exclude", str(bad), "--out", str(tmp_path / "new.jsonl")])
    assert not (tmp_path / "new.jsonl").exists()


def test_says_so_when_the_world_runs_out(tmp_path, capsys, monkeypatch):
    m = _script()
    from instructrl.world import tasks

    def exhausted(n, rng, **kw):  # what sample_examples raises when a draw keeps failing
        raise ValueError(f"cannot sample {n} distinct prompts from families [...]")

    monkeypatch.setattr(tasks, "sample_examples", exhausted)
    out = tmp_path / "more.jsonl"
    assert m.main(["--n", "200000", "--out", str(out)]) == 1
    assert "fewer than 200000 distinct prompts" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "more.jsonl.tmp").exists()
