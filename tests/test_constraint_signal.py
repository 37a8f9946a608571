"""scripts/constraint_signal.py: constraint pairs and the labelers' agreement with them, by hand."""

import json

from tiny_hf import load_script



def _script():
    return load_script("constraint_signal")


def _follows(prompt, response):  # "ok" follows, "no" does not, anything else has no constraint
    return {"ok": True, "no": False}.get(response.split()[0])


def test_count_by_hand():
    m = _script()
    recs = [
        # pairs (ok a, no b), (ok a, none), (no b, none): one constraint pair, follower ranked first
        {"prompt": "p", "responses": ["ok a", "no b", "x"], "ranking": [0, 2, 1]},
        # two constraint pairs: (ok 0, no 1) ranked follower last, (ok 0, no 2) tied -> not counted
        {"prompt": "p", "responses": ["ok c", "no d", "no e"], "ranking": [1, [0, 2]]},
    ]
    assert m.constraint_pairs(recs[1], _follows) == [(0, 1), (0, 2)]
    r = m.count(recs, _follows)
    # strictly ranked pairs: 3 in the first, 2 in the second (0-2 tied)
    assert r == {"ranked_pairs": 5, "constraint_pairs": 2, "share": 0.4, "ranked_follower_first": 0.5}


def test_pairs_are_good_over_ignored_constraint(tmp_path):
    m = _script()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Q: Write a sentence about a river that uses the word stone.\nA:"}) + "\n")
    out = tmp_path / "pairs.jsonl"
    m.main(["pairs", str(prompts), "--draws", "3", "--out", str(out)])
    from instructrl.world import judge

    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs and all(len(r["responses"]) == 2 for r in recs)
    for r in recs:
        best, worst = (r["responses"][i] for i in r["ranking"])
        assert judge.follows_constraint(r["prompt"], best) and not judge.follows_constraint(r["prompt"], worst)
    flipped = tmp_path / "flipped.jsonl"
    m.main(["pairs", str(prompts), "--draws", "3", "--out", str(flipped), "--flip", "1.0", "--n", "2"])
    f = [json.loads(x) for x in flipped.read_text().splitlines()]
    assert len(f) == 2 and all(r["ranking"] == recs[i]["ranking"][::-1] for i, r in enumerate(f))


def test_count_without_constraint_pairs_and_bad_flip(tmp_path, capsys):
    m = _script()
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"prompt": "Q: Reverse the word 'cat'.\nA:", "responses": [" tac", " cat"], "ranking": [0, 1]}) + "\n")
    m.main(["count", str(f)])
    assert "0 (0.000) differ" in capsys.readouterr().out
    import pytest

    with pytest.raises(SystemExit):
        m.main(["pairs", str(f), "--out", str(tmp_path / "x.jsonl"), "--flip", "1.5"])
