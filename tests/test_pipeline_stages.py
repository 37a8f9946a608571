"""The pipeline's stage bookkeeping: cached by hash, and copied from another place in the run folder
where the very same stage already lies (`Stages.run(..., reuse=...)`)."""

import json

from instructrl.pipeline import STAGE_FILE, Stages, _done, _mark


def _finished(d, h, payload="w"):
    d.mkdir(parents=True)
    (d / "model.bin").write_text(payload)
    _mark(d, h, {"acc": 0.5}, 12.0)


def test_a_finished_stage_elsewhere_is_copied_not_recomputed(tmp_path, capsys):
    _finished(tmp_path / "rm", "h1", "one-round rm")
    calls = []
    st = Stages(3)
    m = st.run("round1/rm", tmp_path / "round1" / "rm", "h1", lambda: calls.append(1),
               reuse=(tmp_path / "rm", tmp_path / "round1" / "rm"))
    assert calls == [] and m == {"acc": 0.5} and st.times["round1/rm"] == 0.0
    assert (tmp_path / "round1" / "rm" / "model.bin").read_text() == "one-round rm"
    assert _done(tmp_path / "round1" / "rm", "h1") is not None
    assert (tmp_path / "rm" / "model.bin").exists()  # the source stays
    assert "round1/rm: copied from" in capsys.readouterr().out
    assert not list(tmp_path.rglob(".*.copying"))


def test_another_hash_elsewhere_is_not_reused(tmp_path):
    _finished(tmp_path / "rm", "h_round2")
    out = tmp_path / "round1" / "rm"

    def train():
        out.mkdir(parents=True)
        (out / "model.bin").write_text("trained")
        return {"acc": 0.6}

    m = Stages(1).run("round1/rm", out, "h1", train, reuse=(tmp_path / "rm",))
    assert m == {"acc": 0.6} and (out / "model.bin").read_text() == "trained"
    assert json.loads((out / STAGE_FILE).read_text())["hash"] == "h1"


def test_a_copy_replaces_a_stale_output_and_a_leftover_partial_copy(tmp_path):
    _finished(tmp_path / "round1" / "rm", "h1", "round 1")
    _finished(tmp_path / "rm", "h2", "round 2")  # what a two-round run left in rm/
    (tmp_path / ".rm.copying").mkdir()  # an interrupted earlier copy
    (tmp_path / ".rm.copying" / "junk").write_text("x")
    Stages(1).run("rm", tmp_path / "rm", "h1", lambda: 1 / 0, reuse=(tmp_path / "rm", tmp_path / "round1" / "rm"))
    assert (tmp_path / "rm" / "model.bin").read_text() == "round 1"
    assert json.loads((tmp_path / "rm" / STAGE_FILE).read_text())["hash"] == "h1"
    assert not (tmp_path / ".rm.copying").exists() and not (tmp_path / "rm" / "junk").exists()


def test_a_file_stage_is_copied_with_its_marker_last(tmp_path):
    src, dest = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    src.write_text('{"x": 1}\n')
    _mark(src, "hc", {"n": 1}, 3.0)
    m = Stages(1).run("b", dest, "hc", lambda: 1 / 0, reuse=(src,))
    assert m == {"n": 1} and dest.read_text() == '{"x": 1}\n' and _done(dest, "hc") is not None


def test_a_folder_whose_marker_lies_beside_it_gets_its_marker_there(tmp_path):
    """A folder name with a dot (sweeps/ppo_beta_0.02) keeps its marker beside it, not inside."""
    _finished(tmp_path / "ppo", "hp", "policy")
    dest = tmp_path / "sweeps" / "ppo_beta_0.02"
    m = Stages(1).run("sweep", dest, "hp", lambda: 1 / 0, reuse=(tmp_path / "ppo",))
    assert m == {"acc": 0.5} and (dest / "model.bin").read_text() == "policy"
    assert (tmp_path / "sweeps" / "ppo_beta_0.02.stage.json").exists() and _done(dest, "hp") is not None
