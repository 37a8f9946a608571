"""scripts/copy_probe.py: the copy gain of a model that copies, of one that cannot, by hand."""

import math

import pytest
import torch

from tiny_hf import load_script

V = 10


def _script():
    return load_script("copy_probe")


def _uniform(ids):
    return torch.zeros(ids.shape[0], ids.shape[1], V)


def _copier(ids):
    """Knows the length L of the copied half: predicts ids[t - L + 1] at position t (>= L - 1), with
    logit 10 against 0 elsewhere; uniform before."""
    L = ids.shape[1] // 2
    out = torch.zeros(ids.shape[0], ids.shape[1], V)
    for t in range(L - 1, 2 * L - 1):
        out[0, t, ids[0, t - L + 1]] = 10.0
    return out


def test_uniform_model_has_no_copy_gain():
    m = _script()
    r = m.copy_losses(_uniform, [[1, 2, 3, 4], [5, 6, 7]])
    assert r["first"] == pytest.approx(math.log(V)) and r["second"] == pytest.approx(math.log(V))
    assert r["gain"] == pytest.approx(0.0, abs=1e-6)


def test_perfect_copier_by_hand():
    m = _script()
    r = m.copy_losses(_copier, [[1, 2, 3, 4], [5, 6, 7]])
    # second copy: each token gets logit 10 against 9 zeros -> loss log(1 + 9 e^-10)
    right = math.log(1 + 9 * math.exp(-10))
    assert r["second"] == pytest.approx(right, rel=1e-3)  # float32 softmax
    # first copy: uniform except position L-1, which already predicts the second copy's first token
    # (= a[0]), so the first copy's positions 1..L-1 are all uniform
    assert r["first"] == pytest.approx(math.log(V), rel=1e-5)
    assert r["gain"] == pytest.approx(math.log(V) - right, rel=1e-4)
    assert r["top1_second"] == 1.0 and r["top1_first"] == 0.0  # uniform logits: argmax is token 0, never in a


def test_too_short_sequence_is_refused():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        _script().copy_losses(_uniform, [[3]])


def test_word_sequences_are_deterministic_and_sized():
    m = _script()
    tok = lambda s: [len(w) for w in s.split()]  # one "token" per word
    a = m.world_word_sequences(tok, 3, 5, seed=0)
    assert a == m.world_word_sequences(tok, 3, 5, seed=0) and len(a) == 3 and all(len(x) == 5 for x in a)


def test_word_logprob_by_hand():
    m = _script()

    def fn(ids):  # every position: logit 2 on token 3, 0 elsewhere
        out = torch.zeros(1, ids.shape[1], V)
        out[0, :, 3] = 2.0
        return out

    lp3 = 2.0 - math.log(math.exp(2.0) + V - 1)
    lp_other = -math.log(math.exp(2.0) + V - 1)
    assert m.word_logprob(fn, [1, 2], [3, 4]) == pytest.approx(lp3 + lp_other, rel=1e-5)
    cases = m.lookup_cases(5, seed=0)
    assert len(cases) == 5 and all(w in c and o != w for c, w, o in cases)
