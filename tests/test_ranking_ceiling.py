"""scripts/ranking_ceiling.py: pair features, the logistic fit and tie-aware accuracy, by hand."""

import json

import numpy as np
import pytest

from tiny_hf import char_gpt2_folder, load_script, reward_folder, write_jsonl

PROMPT = "Q: Write a sentence about a river that uses the word stone.\nA:"


def _script():
    return load_script("ranking_ceiling")


def _good_and_padded():
    from instructrl.world import judge

    good = judge.gold_answer(PROMPT)
    padded = good + " I hope this helps!"
    assert judge.gold_details(PROMPT, padded)["padding"] and not judge.gold_details(PROMPT, good)["padding"]
    return good, padded


def test_accuracy_counts_ties_half():
    m = _script()
    assert m.accuracy(np.array([1.0, -1.0, 0.0, 2.0])) == pytest.approx((1 + 0 + 0.5 + 1) / 4)


def test_fit_logistic_is_the_optimum():
    m = _script()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    true_w = np.array([2.0, -1.0, 0.0])
    # winner - loser rows: flip each row whose Bernoulli draw says the "loser" won
    p = 1 / (1 + np.exp(-x @ true_w))
    x = np.where((rng.random(400) < p)[:, None], x, -x)
    w = m.fit_logistic(x, l2=1e-3)
    q = 1 / (1 + np.exp(-x @ w))
    assert np.abs(x.T @ (1 - q) - 1e-3 * w).max() < 1e-6  # the gradient of the objective vanishes
    assert w[0] > 1.0 and w[1] < -0.5 and abs(w[2]) < 0.5


def test_pair_features_by_hand(tmp_path):
    m = _script()
    good, padded = _good_and_padded()
    # three responses, the middle two tied: pairs (0 > 1), (0 > 2); 1 ~ 2 makes no pair
    f = write_jsonl(tmp_path / "r.jsonl", [{"prompt": PROMPT, "responses": [good, padded, padded + " I hope this helps!"],
                                           "ranking": [0, [1, 2]]}])
    x, gold, names, records, where = m.pair_features(str(f))
    assert where == [(0, 0, 1), (0, 0, 2)]
    pad = names.index("padding")
    assert list(x[:, pad]) == [-1.0, -1.0]  # winner without padding minus loser with it
    assert x[0, names.index("length")] == pytest.approx(-len(" I hope this helps!") / 100)
    assert (gold > 0).all() and len(records) == 1


def test_main_tables_and_rm_per_attribute(tmp_path, capsys):
    m = _script()
    good, padded = _good_and_padded()
    # training: the labeler always puts the unpadded answer first; held out: once first, once last
    train = write_jsonl(tmp_path / "t.jsonl", [{"prompt": PROMPT, "responses": [good, padded], "ranking": [0, 1]}] * 4)
    held = write_jsonl(tmp_path / "h.jsonl", [{"prompt": PROMPT, "responses": [good, padded], "ranking": [0, 1]},
                                              {"prompt": PROMPT, "responses": [good, padded], "ranking": [1, 0]}])
    rm = reward_folder(char_gpt2_folder(tmp_path / "lm"), tmp_path / "rm")
    out = tmp_path / "c.json"
    assert m.main([str(train), str(held), "--rm", str(rm), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["train_pairs"] == 4 and r["heldout_pairs"] == 2
    assert r["gold_judge"] == 0.5  # gold agrees with the first held-out labeler, not the second
    assert r["groups"]["every attribute"]["heldout_accuracy"] == 0.5
    row = r["rm"]["per_attribute"]["padding"]
    assert row["pairs"] == 2 and row["labeler"] == 0.5 and row["gold"] == 1.0
    assert row["rm"] in (0.0, 1.0)  # one RM orders the same two texts the same way in both pairs...
    assert r["rm"]["heldout_accuracy"] == 0.5  # ...so it agrees with exactly one of the two labelers
    assert "| padding | 2 |" in capsys.readouterr().out


def test_missing_file_is_an_error(tmp_path):
    m = _script()
    with pytest.raises(SystemExit):
        m.main([str(tmp_path / "no.jsonl"), str(tmp_path / "no2.jsonl")])


def test_write_pairs_in_the_labelers_order(tmp_path, capsys):
    m = _script()
    good, padded = _good_and_padded()
    train = write_jsonl(tmp_path / "t.jsonl", [{"prompt": PROMPT, "responses": [good, padded], "ranking": [1, 0]},
                                               {"prompt": PROMPT, "responses": [good, good + " Yes"], "ranking": [0, 1]}])
    out = tmp_path / "pairs.jsonl"
    assert m.main([str(train), str(train), "--write-pairs", "padding", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    # only the first ranking's pair differs in padding; the labeler chose the padded answer
    assert rows == [{"prompt": PROMPT, "chosen": padded, "rejected": good}]
    assert "chosen in 0.000" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        m.main([str(train), str(train), "--write-pairs", "no_such", str(out)])
