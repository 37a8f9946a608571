"""RM stage: K forward passes per prompt, bias normalisation, plain-HF loading, learning on world data, bad data."""

from __future__ import annotations

import csv
import dataclasses
import json
import random

import pytest
import torch

from instructrl import rm
from instructrl.config import RMConfig
from instructrl.data.readers import read_rankings
from instructrl.errors import DataError, InstructRLError
from instructrl.models import load_reward_model, sequence_scores

from tiny_hf import char_gpt2_folder, write_jsonl


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return char_gpt2_folder(tmp_path_factory.mktemp("base") / "model", n_embd=32, n_positions=256)


def toy_rankings(n: int, seed: int = 0) -> list[dict]:
    """Rankings with K from 2 to 5 (and one tie group), responses distinct."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = 2 + i % 4
        responses = [f" answer {i}-{j} " + "x" * rng.randint(0, 6) for j in range(k)]
        ranking = list(range(k))
        rng.shuffle(ranking)
        if k == 5 and i % 8 == 3:
            ranking = [ranking[0], [ranking[1], ranking[2]], ranking[3], ranking[4]]
        rows.append({"prompt": f"Q: question {i}?\nA:", "responses": responses, "ranking": ranking})
    return rows


DEMOS = [{"prompt": f"Q: question {i}?\nA:", "response": f" demo {i}"} for i in range(7)]


def count_grad_forwards(monkeypatch) -> list[int]:
    """Rows of every GPT2Model forward run with gradients (training), appended as they happen."""
    from transformers.models.gpt2.modeling_gpt2 import GPT2Model

    calls = []
    original = GPT2Model.forward

    def counting_forward(self, input_ids=None, **kw):
        if torch.is_grad_enabled():
            calls.append(input_ids.shape[0])
        return original(self, input_ids=input_ids, **kw)

    monkeypatch.setattr(GPT2Model, "forward", counting_forward)
    return calls


def test_exactly_k_forward_passes_per_prompt(tmp_path, base, monkeypatch):
    data = write_jsonl(tmp_path / "r.jsonl", toy_rankings(22))
    train_calls = count_grad_forwards(monkeypatch)
    cfg = RMConfig(batch_size=4, val_fraction=0.2, lr=1e-3, max_len=64, share_prefix=False)
    m = rm.train_reward_model(cfg, str(base), str(data), str(tmp_path / "rm"), verbose=False)

    rankings = read_rankings(data)
    train_idx, _ = rm.split_by_prompt(rankings, cfg.val_fraction, cfg.seed)
    # One model call per step, on exactly the sum of K of that step's prompts: K passes per prompt,
    # never 2 * C(K, 2).
    assert len(train_calls) == m["steps"] == -(-len(train_idx) // cfg.batch_size)
    assert sum(train_calls) == sum(rankings[i].k for i in train_idx)
    assert max(train_calls) <= cfg.batch_size * 5
    assert m["train_comparisons"] == sum(len(rankings[i].comparisons()) for i in train_idx)


def test_bias_normalisation_and_plain_hf_scores(tmp_path, base):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data = write_jsonl(tmp_path / "r.jsonl", toy_rankings(16))
    demos = write_jsonl(tmp_path / "demos.jsonl", DEMOS)
    out = tmp_path / "rm"
    m = rm.train_reward_model(RMConfig(batch_size=4, lr=3e-3, max_len=64), str(base), str(data), str(out),
               demonstrations=str(demos), verbose=False)
    assert abs(m["demo_score_mean"]) < 1e-4
    assert m["demo_score_mean_before"] == pytest.approx(-m["score_bias"])
    for name in ("config.yaml", "log.csv", "metrics.json", "model.safetensors", "tokenizer.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert {"step", "loss", "accuracy", "margin", "lr"} <= set(rows[0])
    saved = json.loads((out / "metrics.json").read_text())
    assert [row["bin"] for row in saved["calibration"]] == ["0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1.0"]

    # Our loader + sequence_scores: the demonstrations really have mean score 0 after reloading.
    ours, tok = load_reward_model(out)
    seqs = [tok(d["prompt"] + d["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for d in DEMOS]
    scores = rm.score_sequences(ours, seqs, tok.pad_token_id)
    assert abs(float(scores.mean())) < 1e-4

    # A plain transformers load gives the same scores on a right-padded batch of mixed lengths.
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    plain_tok = AutoTokenizer.from_pretrained(out)
    ids, attn = rm.pad_right(seqs, plain_tok.pad_token_id)
    with torch.no_grad():
        theirs = plain(input_ids=ids, attention_mask=attn.long()).logits.squeeze(-1)
        mine = sequence_scores(ours, ids, attn)
    assert torch.allclose(theirs, mine, atol=1e-5), (theirs, mine)
    assert torch.allclose(mine, scores, atol=1e-5)


def test_refuses_an_existing_different_output(tmp_path, base):
    data = write_jsonl(tmp_path / "r.jsonl", toy_rankings(8))
    out = tmp_path / "rm"
    rm.train_reward_model(RMConfig(batch_size=4, max_len=64), str(base), str(data), str(out), verbose=False)
    with pytest.raises(InstructRLError, match="different rm run"):
        rm.train_reward_model(RMConfig(batch_size=2, max_len=64), str(base), str(data), str(out), verbose=False)
    rm.train_reward_model(RMConfig(batch_size=2, max_len=64), str(base), str(data), str(out), overwrite=True, verbose=False)


def world_rankings(world_dir, pool: str, seed: int, families=("harmful", "unanswerable")):
    """Rank SFT-like responses to the world's RM prompts with its simulated labelers."""
    from instructrl.data.readers import read_prompts
    from instructrl.world.build import build_world
    from instructrl.world.judge import parse_prompt
    from instructrl.world.labelers import make_labeler_pool, sft_like_responses

    if not (world_dir / "rm_prompts.jsonl").exists():
        build_world(world_dir, seed=seed, n_sft=40, n_sft_val=5, n_rm=1400, n_ppo=0, n_eval=0,
                    corpus_chars=0, n_benchmark=0)
    train, heldout = make_labeler_pool(seed)
    people = train if pool == "train" else heldout
    rng = random.Random(seed if pool == "train" else seed + 1)
    rows = []
    for p in read_prompts(world_dir / "rm_prompts.jsonl"):
        if p.meta.get("family") not in families:
            continue
        responses = list(dict.fromkeys(sft_like_responses(parse_prompt(p.prompt), rng.randint(4, 6), rng)))
        if len(responses) < 2:
            continue
        person = rng.choice(people)
        rows.append({"prompt": p.prompt, "responses": responses,
                     "ranking": person.rank(p.prompt, responses, rng), "labeler": person.id})
    return rows


def test_learns_the_world_labelers_preferences(tmp_path, base):
    # Families whose quality shows in the text (refuse a harmful request, say "I don't know" to an
    # unanswerable question, stop cleanly): a tiny randomly initialised RM can learn them from a
    # thousand comparisons. Labelers agree with the gold judge ~79% of the time here (the ceiling).
    world = tmp_path / "world"
    train = world_rankings(world, "train", seed=1)
    held = world_rankings(world, "heldout", seed=1)[-40:]
    data = write_jsonl(tmp_path / "rankings.jsonl", train)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", held)
    assert len(train) >= 120
    m = rm.train_reward_model(RMConfig(lr=3e-3, batch_size=8, val_fraction=0.2, max_len=256, seed=1), str(base), str(data),
               str(tmp_path / "rm"), demonstrations=str(world / "demonstrations.jsonl"),
               heldout_data=str(heldout), verbose=False)
    assert m["train_comparisons"] > 800
    assert m["val_pairs"] > 200
    assert m["val_accuracy"] > 0.62, m
    assert m["heldout_labeler_accuracy"] > 0.58, m
    assert m["val_margin"] > 0
    assert abs(m["demo_score_mean"]) < 1e-4


GOOD = json.dumps({"prompt": "Q: hi\nA:", "responses": [" a", " b", " c"], "ranking": [2, 0, 1]})


@pytest.mark.parametrize("bad_line, field", [
    ('{"prompt": "Q: hi\\nA:", "responses": [" a", " b"], "ranking": [0, 1]', None),  # malformed JSON
    (json.dumps({"prompt": "Q: hi\nA:", "responses": [" a", " b"]}), "ranking"),  # missing field (unranked)
    (json.dumps({"prompt": "Q: hi\nA:", "responses": [" a", " b", " c"], "ranking": [0, 0, 1]}), "ranking"),
    (json.dumps({"prompt": "Q: hi\nA:", "responses": [" a"], "ranking": [0]}), "responses"),  # K < 2
    (json.dumps({"prompt": "Q: hi\nA:", "responses": [" a", " a"], "ranking": [0, 1]}), "responses[1]"),
    (json.dumps({"prompt": "", "responses": [" a", " b"], "ranking": [0, 1]}), "prompt"),  # empty prompt
    (json.dumps({"prompt": "Q: hi\nA:", "responses": [" a", " " + "b" * 80], "ranking": [0, 1]}), None),  # too long
])
def test_bad_data_names_file_line_field_and_writes_nothing(tmp_path, base, bad_line, field):
    data = write_jsonl(tmp_path / "r.jsonl", [GOOD, GOOD, bad_line])
    with pytest.raises(DataError) as e:
        rm.train_reward_model(RMConfig(max_len=64), str(base), str(data), str(tmp_path / "out"), verbose=False)
    assert e.value.path == str(data) and e.value.line == 3 and e.value.field == field
    assert f"{data}:3" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # no output, no staging folder


def test_bad_demonstrations_fail_before_training(tmp_path, base, monkeypatch):
    data = write_jsonl(tmp_path / "r.jsonl", [GOOD] * 4)
    demos = write_jsonl(tmp_path / "d.jsonl", [json.dumps(DEMOS[0]), json.dumps({"prompt": "Q: x\nA:"})])
    monkeypatch.setattr(rm.losses, "kwise_ranking_loss", lambda *a: pytest.fail("trained before checking all input"))
    with pytest.raises(DataError) as e:
        rm.train_reward_model(RMConfig(max_len=64), str(base), str(data), str(tmp_path / "out"), demonstrations=str(demos), verbose=False)
    assert e.value.line == 2 and e.value.field == "response"
    assert not (tmp_path / "out").exists()


def test_ranking_metrics_by_hand():
    # One prompt, K=3, ranks best..worst 0,1,2; scores 3, 1, 2 -> pairs (0>1 ok, 0>2 ok, 1>2 wrong).
    enc = [{"seqs": [[1], [1], [1]], "rank": [0, 1, 2]}]
    m = rm.ranking_metrics(torch.tensor([3.0, 1.0, 2.0]), enc)
    assert m["pairs"] == 3 and m["accuracy"] == pytest.approx(2 / 3)
    assert m["margin"] == pytest.approx((2 + 1 - 1) / 3)
    sp = torch.nn.functional.softplus
    assert m["loss"] == pytest.approx(float((sp(torch.tensor(-2.0)) + sp(torch.tensor(-1.0)) + sp(torch.tensor(1.0))) / 3))
    assert sum(b["count"] for b in m["calibration"]) == 3


def test_several_data_files_train_as_one_set(tmp_path, base):
    """Iterated RLHF passes every round's comparisons: two files give the model one concatenated file gives."""
    from safetensors.torch import load_file

    rows = toy_rankings(16)
    a = write_jsonl(tmp_path / "a.jsonl", rows[:9])
    b = write_jsonl(tmp_path / "b.jsonl", rows[9:])
    both = write_jsonl(tmp_path / "both.jsonl", rows)
    cfg = RMConfig(batch_size=4, lr=3e-3, max_len=64)
    m2 = rm.train_reward_model(cfg, str(base), [str(a), str(b)], str(tmp_path / "two"), verbose=False)
    m1 = rm.train_reward_model(cfg, str(base), str(both), str(tmp_path / "one"), verbose=False)
    assert m2["val_accuracy"] == m1["val_accuracy"] and m2["train_loss"] == m1["train_loss"]
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    with pytest.raises(DataError, match="b.jsonl"):  # a bad line in the second file names that file
        bad = write_jsonl(tmp_path / "b.jsonl", rows[9:] + [{"prompt": "Q: x?\nA:", "responses": [" a"], "ranking": [0]}])
        rm.train_reward_model(cfg, str(base), [str(a), str(bad)], str(tmp_path / "bad"), verbose=False)
    assert not (tmp_path / "bad").exists()


def test_length_sorted_chunks_by_hand():
    from instructrl.models import length_sorted_chunks

    assert length_sorted_chunks([5, 2, 9, 2, 7], 0) == [[0, 1, 2, 3, 4]]  # 0: one chunk, input order
    assert length_sorted_chunks([5, 2, 9, 2, 7], 5) == [[0, 1, 2, 3, 4]]  # no more rows than a chunk
    assert length_sorted_chunks([5, 2, 9, 2, 7], 2) == [[1, 3], [0, 4], [2]]  # stable sort by length
    assert length_sorted_chunks([], 3) == []


def test_chunked_scores_equal_one_forward_and_so_do_the_gradients(tmp_path, base):
    """The RM step in length-sorted chunks (rm.chunk_rows): the scores of one padded forward over all
    rows, in the input order, and the same gradient of the K-wise loss, to float rounding."""
    from instructrl import losses
    from instructrl.models import chunked_sequence_scores, reward_model_from_causal_lm

    model, tok = reward_model_from_causal_lm(str(base), seed=0)
    model.train()
    enc = rm.encode_rankings(tok, read_rankings(write_jsonl(tmp_path / "r.jsonl", toy_rankings(9))), 64, "error")
    seqs, group, rank = rm.flatten_prompts(enc)
    assert len({len(s) for s in seqs}) > 3  # lengths differ, so the chunks really reorder the rows

    def loss_and_grads(chunk_rows):
        model.zero_grad()
        scores = chunked_sequence_scores(model, seqs, tok.pad_token_id, chunk_rows)
        loss, _ = losses.kwise_ranking_loss(scores, group, rank)
        loss.backward()
        return scores.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    s0, l0, g0 = loss_and_grads(0)
    ids, attn, _, _ = rm.collate_prompts(enc, tok.pad_token_id)
    with torch.no_grad():
        assert torch.equal(s0, sequence_scores(model, ids, attn))  # chunk_rows 0 is the one forward, exactly
    for chunk in (1, 4, 7):
        s, l, g = loss_and_grads(chunk)
        assert torch.allclose(s, s0, atol=1e-5), chunk
        assert float(l) == pytest.approx(float(l0), abs=1e-6)
        for n in g0:
            assert torch.allclose(g[n], g0[n], atol=1e-6, rtol=1e-4), (chunk, n)
    # Scoring without gradients (models.score_sequences) sorts too, when there is more than one batch.
    import instructrl.models as models

    was = models.SORT_SCORING
    try:
        models.SORT_SCORING = False
        plain = models.score_sequences(model, seqs, tok.pad_token_id, batch_size=5)
        models.SORT_SCORING = True
        sorted_ = models.score_sequences(model, seqs, tok.pad_token_id, batch_size=5)
    finally:
        models.SORT_SCORING = was
    assert torch.allclose(plain, sorted_, atol=1e-5) and torch.allclose(plain, s0, atol=1e-5)


def test_chunked_rm_step_still_runs_k_passes_per_prompt(tmp_path, base, monkeypatch):
    """With rm.chunk_rows the model runs several times per step, on chunk_rows rows at most, and the
    step's rows still sum to its prompts' K: K forward passes per prompt, never C(K,2)."""
    data = write_jsonl(tmp_path / "r.jsonl", toy_rankings(22))
    calls = count_grad_forwards(monkeypatch)
    cfg = RMConfig(batch_size=4, val_fraction=0.2, lr=1e-3, max_len=64, chunk_rows=3, share_prefix=False)
    m = rm.train_reward_model(cfg, str(base), str(data), str(tmp_path / "rm"), verbose=False)
    rankings = read_rankings(data)
    train_idx, _ = rm.split_by_prompt(rankings, cfg.val_fraction, cfg.seed)
    assert max(calls) <= 3 and len(calls) > m["steps"]
    assert sum(calls) == sum(rankings[i].k for i in train_idx)
    ref = rm.train_reward_model(dataclasses.replace(cfg, chunk_rows=0), str(base), str(data), str(tmp_path / "rm0"),
                                verbose=False)
    assert m["val_accuracy"] == pytest.approx(ref["val_accuracy"], abs=0.02)
    assert m["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-4)



def test_common_prefix_length_by_hand():
    from instructrl.models import common_prefix_length

    assert common_prefix_length([[1, 2, 3, 9], [1, 2, 4], [1, 2, 3, 5, 6]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shortest keeps its last token
    assert common_prefix_length([[7, 1], [8, 1]]) == 0


@pytest.mark.parametrize("arch", ["gpt2_char", "llama", "gpt_neox"])
def test_prefix_shared_scores_equal_whole_sequences_and_so_do_the_gradients(tmp_path, base, arch):
    """rm.share_prefix: each prompt once for its K responses, over a copy of its KV cache; the scores
    and the K-wise loss's gradients of the whole sequences, to float rounding, on three families."""
    from instructrl import losses
    from instructrl.models import chunked_sequence_scores, prefix_shared_scores, reward_model_from_causal_lm

    from tiny_hf import make_model_folder

    folder = base if arch == "gpt2_char" else make_model_folder(arch, tmp_path)
    model, tok = reward_model_from_causal_lm(str(folder), seed=0)
    model.train()
    enc = rm.encode_rankings(tok, read_rankings(write_jsonl(tmp_path / "r.jsonl", toy_rankings(9))), 128, "error")
    seqs, group, rank = rm.flatten_prompts(enc)

    def loss_and_grads(fn):
        model.zero_grad()
        scores = fn()
        loss, _ = losses.kwise_ranking_loss(scores, group, rank)
        loss.backward()
        return scores.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    s0, g0 = loss_and_grads(lambda: chunked_sequence_scores(model, seqs, tok.pad_token_id, 0))
    for chunk in (0, 4):
        s1, g1 = loss_and_grads(lambda: prefix_shared_scores(model, [e["seqs"] for e in enc], tok.pad_token_id, chunk))
        assert torch.allclose(s1, s0, atol=1e-5), (arch, chunk, (s1 - s0).abs().max())
        assert g1.keys() == g0.keys()
        for n in g0:
            assert torch.allclose(g1[n], g0[n], atol=1e-5, rtol=1e-4), (arch, chunk, n)


def test_rm_stage_shares_the_prompt_once_per_prompt(tmp_path, base, monkeypatch):
    """The RM stage with share_prefix (the default): per step one forward over its prompts' shared
    prefixes and forwards over the K continuations (K per prompt in all); the run equals one without
    it to rounding; gradient checkpointing turns it off (logged in metrics)."""
    data = write_jsonl(tmp_path / "r.jsonl", toy_rankings(22))
    calls = count_grad_forwards(monkeypatch)
    cfg = RMConfig(batch_size=4, val_fraction=0.2, lr=1e-3, max_len=64)
    assert cfg.share_prefix
    m = rm.train_reward_model(cfg, str(base), str(data), str(tmp_path / "rm"), verbose=False)
    monkeypatch.undo()  # count only this run's forwards
    assert m["share_prefix"] is True
    rankings = read_rankings(data)
    train_idx, _ = rm.split_by_prompt(rankings, cfg.val_fraction, cfg.seed)
    assert len(calls) == 2 * m["steps"]  # prefixes, then the continuations (one chunk of <= 20 rows)
    assert sum(calls[0::2]) == len(train_idx)  # each prompt once
    assert sum(calls[1::2]) == sum(rankings[i].k for i in train_idx)  # K continuations per prompt
    ref = rm.train_reward_model(dataclasses.replace(cfg, share_prefix=False), str(base), str(data),
                                str(tmp_path / "rm0"), verbose=False)
    assert ref["share_prefix"] is False
    assert m["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-5)
    assert m["val_accuracy"] == pytest.approx(ref["val_accuracy"], abs=0.02)
    gc = rm.train_reward_model(dataclasses.replace(cfg, gradient_checkpointing=True), str(base), str(data),
                               str(tmp_path / "rm_gc"), verbose=False)
    assert gc["share_prefix"] is False


def test_prefix_shared_gradients_are_bit_reproducible_on_two_threads(tmp_path):
    """The prompt's keys and values are copied to its K rows by a one-hot matmul: an index with
    repeats (k[group]) accumulates its backward in a thread-dependent order on the CPU, which made
    two runs at one seed differ in the 9th decimal of the loss."""
    from instructrl import losses
    from instructrl.models import prefix_shared_scores, reward_model_from_causal_lm

    from instructrl.models import build_gpt2, save_model_folder
    from instructrl.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()  # the default's large base's shape: the parallel accumulation shows there
    folder = save_model_folder(build_gpt2(tok, n_layer=3, n_embd=256, n_head=4, n_positions=256, seed=0), tok, tmp_path / "m")
    model, tok = reward_model_from_causal_lm(str(folder), seed=0)
    model.train()
    rows = []
    for i in range(64):
        k = 4 + i % 6
        rows.append({"prompt": f"Q: please tell me about question number {i} at some length?\nA:",
                     "responses": [f" answer {i}-{j} " + "y" * (3 * j) for j in range(k)], "ranking": list(range(k))})
    enc = rm.encode_rankings(tok, read_rankings(write_jsonl(tmp_path / "r.jsonl", rows)), 256, "error")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            model.zero_grad()
            for b0 in range(0, len(enc), 16):
                b = enc[b0:b0 + 16]
                _, group, rank = rm.flatten_prompts(b)
                scores = prefix_shared_scores(model, [e["seqs"] for e in b], tok.pad_token_id, 32)
                losses.kwise_ranking_loss(scores, group, rank)[0].backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.parametrize("arch", ["gpt2_char", "llama"])
def test_scoring_rows_of_one_prompt_shares_it_and_equals_whole_rows(tmp_path, base, arch, monkeypatch):
    """models.SHARE_PREFIX_SCORING (no-grad scoring: best-of-n, RM validation, held-out rankings):
    rows of one prompt are scored over its tokens run once; the scores equal scoring every row whole
    to float rounding, in the input order, with rows of other prompts, a lone row and a row whose
    prompt is cut by the context in the same call; the shared path really ran, in several calls."""
    from instructrl import models
    from instructrl.models import reward_model_from_causal_lm, score_token_pairs

    from tiny_hf import make_model_folder

    folder = base if arch == "gpt2_char" else make_model_folder(arch, tmp_path)
    model, tok = reward_model_from_causal_lm(str(folder), seed=0)
    rnd = random.Random(0)
    limit = models.context_length(model, 10**9)
    prompts = [[rnd.randrange(3, 40) for _ in range(rnd.randrange(3, 12))] for _ in range(7)]
    pairs = [(p, [rnd.randrange(3, 40) for _ in range(rnd.randrange(0, 9))]) for p in prompts for _ in range(5)]
    pairs.insert(3, ([5, 6, 7], [8, 9]))  # a prompt with one row
    pairs.append((prompts[0] * (limit // len(prompts[0]) + 1), [10, 11]))  # cut to fit the context
    rnd.shuffle(pairs)
    P, R = [p for p, _ in pairs], [r for _, r in pairs]
    calls, real = [], models.prefix_shared_scores
    monkeypatch.setattr(models, "prefix_shared_scores", lambda m, groups, *a, **k: calls.append(len(groups)) or real(m, groups, *a, **k))
    monkeypatch.setattr(models, "SHARE_PREFIX_SCORING", False)
    whole = score_token_pairs(model, P, R, tok.eos_token_id, tok.pad_token_id, batch_size=4)
    assert calls == []
    monkeypatch.setattr(models, "SHARE_PREFIX_SCORING", True)
    shared = score_token_pairs(model, P, R, tok.eos_token_id, tok.pad_token_id, batch_size=4)
    assert torch.allclose(shared, whole, atol=1e-5), (shared - whole).abs().max()
    # the first group's check, then calls of >= 16 rows (4 x batch_size), 7 groups of 5 in all
    assert calls[0] == 1 and len(calls) >= 3 and sum(calls[1:]) == 7, calls
    assert not model.training


def test_shared_prompt_scoring_falls_back_where_the_backbone_does_not_suit(tmp_path, base, monkeypatch, caplog):
    """A backbone whose shared-prefix scores cannot be computed (or differ) is scored row by row,
    with one warning; the scores are the whole rows'. rm.evaluate's figures are the same either way."""
    import logging

    from instructrl import models
    from instructrl.models import reward_model_from_causal_lm

    model, tok = reward_model_from_causal_lm(str(base), seed=0)
    enc = rm.encode_rankings(tok, read_rankings(write_jsonl(tmp_path / "r.jsonl", toy_rankings(9))), 128, "error")
    monkeypatch.setattr(models, "SHARE_PREFIX_SCORING", False)
    before = rm.evaluate(model, enc, tok.pad_token_id, 8)
    monkeypatch.setattr(models, "SHARE_PREFIX_SCORING", True)
    shared = rm.evaluate(model, enc, tok.pad_token_id, 8)
    assert shared["pairs"] == before["pairs"] and abs(shared["accuracy"] - before["accuracy"]) < 1e-9
    assert abs(shared["loss"] - before["loss"]) < 1e-5

    def broken(*a, **k):
        raise ValueError("no KV cache")

    monkeypatch.setattr(models, "prefix_shared_scores", broken)
    monkeypatch.setattr(models, "_PREFIX_SCORING_REFUSED", set())
    with caplog.at_level(logging.WARNING, logger="instructrl.models"):
        again = rm.evaluate(model, enc, tok.pad_token_id, 8)
        rm.evaluate(model, enc, tok.pad_token_id, 8)
    assert again["loss"] == before["loss"] and again["accuracy"] == before["accuracy"]
    said = [r.getMessage() for r in caplog.records if "scoring each row whole" in r.getMessage()]
    assert len(said) == 1 and "no KV cache" in said[0]
