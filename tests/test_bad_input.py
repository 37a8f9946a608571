"""Bad input, one test per kind, through the CLI (`instructrl.cli.main`): exit code 2, exactly one
`error:` line naming the file, line and field where they apply, no traceback, and an existing
output folder left byte for byte as it was."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from instructrl.cli import main
from instructrl.models import build_gpt2, save_model_folder
from instructrl.tokenizer import build_char_tokenizer

from tiny_hf import char_gpt2_folder, reward_folder

GOOD_DEMO = {"prompt": "Q: Reverse the word 'cat'.\nA:", "response": " tac"}
GOOD_RANK = {"prompt": "Q: Reverse the word 'cat'.\nA:", "responses": [" tac", " cat", " act"], "ranking": [0, 2, 1]}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    base = char_gpt2_folder(root / "base")
    rm_dir = reward_folder(base, root / "rm", seed=1)
    demos = root / "demos.jsonl"
    demos.write_text(json.dumps(GOOD_DEMO) + "\n" + json.dumps({"prompt": "Q: hi\nA:", "response": " hello"}) + "\n")
    ranks = root / "ranks.jsonl"
    ranks.write_text(json.dumps(GOOD_RANK) + "\n" + json.dumps({**GOOD_RANK, "prompt": "Q: dog\nA:"}) + "\n")
    prompts = root / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Q: hi\nA:"}) + "\n")
    # An existing output folder: a previous run's files, which no failure may touch.
    prev = root / "previous_run"
    prev.mkdir()
    (prev / "config.json").write_text('{"old": true}')
    (prev / "notes.txt").write_text("results of last week")
    return {"root": root, "base": str(base), "rm": str(rm_dir), "demos": str(demos), "ranks": str(ranks),
            "prompts": str(prompts), "prev": prev}


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(env, name, lines, binary=False):
    p = env["root"] / name
    if binary:
        p.write_bytes(lines)
    else:
        p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(p)


def fails(capsys, env, argv, *needles):
    """Run the CLI; check exit 2, one `error:` line holding every needle, no traceback, outputs untouched."""
    before = _snapshot(env["prev"])
    siblings = sorted(p.name for p in env["root"].iterdir())
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    assert _snapshot(env["prev"]) == before  # the existing output folder is untouched
    assert sorted(p.name for p in env["root"].iterdir()) == siblings  # and nothing new (no half-written folder)
    return errors[0]


def sft(env, data, *extra, out=None, overwrite=True):
    return ["sft", "--model", env["base"], "--data", data, "--out", str(out or env["prev"]),
            *(["--overwrite"] if overwrite else []), *extra]


def rm(env, data, *extra, model=None):
    return ["rm", "--model", model or env["base"], "--data", data, "--out", str(env["prev"]), "--overwrite", *extra]


def ppo(env, *extra, policy=None, reward=None, prompts=None):
    return ["ppo", "--policy", policy or env["base"], "--reward", reward or env["rm"], "--prompts",
            prompts or env["prompts"], "--out", str(env["prev"]), "--overwrite", "--set", "total_episodes=8",
            "--set", "batch_size=4", "--set", "minibatch_size=2", *extra]


# ------------------------------------------------------------------------------ data files


def test_malformed_json(capsys, env):
    f = _write(env, "d1.jsonl", [GOOD_DEMO, '{"prompt": "Q: x\\nA:", "response": " y"'])
    fails(capsys, env, sft(env, f), "d1.jsonl:2", "malformed JSON")


def test_missing_field(capsys, env):
    f = _write(env, "d2.jsonl", [GOOD_DEMO, GOOD_DEMO, {"prompt": "Q: x\nA:"}])
    fails(capsys, env, sft(env, f), "d2.jsonl:3", "field 'response'", "missing field")


def test_mistyped_field(capsys, env):
    f = _write(env, "d3.jsonl", [{"prompt": 5, "response": " y"}])
    fails(capsys, env, sft(env, f), "d3.jsonl:1", "field 'prompt'", "expected a string, got number")


def test_empty_prompt(capsys, env):
    f = _write(env, "d4.jsonl", [GOOD_DEMO, {"prompt": "   ", "response": " y"}])
    fails(capsys, env, sft(env, f), "d4.jsonl:2", "field 'prompt'", "empty")


def test_empty_response(capsys, env):
    f = _write(env, "d5.jsonl", [{"prompt": "Q: x\nA:", "response": ""}])
    fails(capsys, env, sft(env, f), "d5.jsonl:1", "field 'response'", "empty")


def test_not_an_object(capsys, env):
    f = _write(env, "d6.jsonl", [GOOD_DEMO, '["prompt", "response"]'])
    fails(capsys, env, sft(env, f), "d6.jsonl:2", "expected a JSON object")


def test_non_utf8_bytes(capsys, env):
    f = _write(env, "d7.jsonl", json.dumps(GOOD_DEMO).encode() + b'\n{"prompt": "Q: \xff\xfe\nA:", "response": " y"}\n',
               binary=True)
    fails(capsys, env, sft(env, f), "d7.jsonl:2", "not valid UTF-8")


def test_empty_file(capsys, env):
    f = _write(env, "d8.jsonl", b"\n\n", binary=True)
    fails(capsys, env, sft(env, f), "d8.jsonl", "no records")


def test_file_not_found(capsys, env):
    fails(capsys, env, sft(env, str(env["root"] / "nope.jsonl")), "nope.jsonl", "file not found")


def test_sequence_longer_than_context_is_an_error(capsys, env):
    # The tiny model's context is 128 tokens: max_len (256 by default) is cut to it, and a longer
    # record is an error naming its line (truncation=error, the default).
    f = _write(env, "d9.jsonl", [GOOD_DEMO, {"prompt": "Q: " + "x" * 200 + "\nA:", "response": " y"}])
    fails(capsys, env, sft(env, f), "d9.jsonl:2", "longer than max_len=128", "truncate_prompt_left")


def test_sequence_longer_than_context_truncated_when_configured(env, tmp_path, caplog):
    f = _write(env, "d10.jsonl", [GOOD_DEMO, {"prompt": "Q: " + "x" * 200 + "\nA:", "response": " y"}])
    with caplog.at_level(logging.WARNING):
        code = main(sft(env, f, "--set", "truncation=truncate_prompt_left", "--set", "epochs=1", out=tmp_path / "o", overwrite=False))
    assert code == 0
    assert "d10.jsonl:2: prompt truncated from the left" in caplog.text


def test_ranking_not_a_permutation(capsys, env):
    f = _write(env, "r1.jsonl", [GOOD_RANK, {**GOOD_RANK, "ranking": [0, 1]}])
    fails(capsys, env, rm(env, f), "r1.jsonl:2", "field 'ranking'", "not a permutation", "missing [2]")


def test_ranking_duplicate_indices(capsys, env):
    f = _write(env, "r2.jsonl", [{**GOOD_RANK, "ranking": [0, 1, 1]}])
    fails(capsys, env, rm(env, f), "r2.jsonl:1", "field 'ranking'", "appears more than once")


def test_ranking_index_out_of_range(capsys, env):
    f = _write(env, "r3.jsonl", [{**GOOD_RANK, "ranking": [0, 1, 5]}])
    fails(capsys, env, rm(env, f), "r3.jsonl:1", "field 'ranking'", "out of range")


def test_k_less_than_2(capsys, env):
    f = _write(env, "r4.jsonl", [GOOD_RANK, {"prompt": "Q: x\nA:", "responses": [" a"], "ranking": [0]}])
    fails(capsys, env, rm(env, f), "r4.jsonl:2", "field 'responses'", "at least 2 responses")


def test_responses_all_tied(capsys, env):
    f = _write(env, "r5.jsonl", [{**GOOD_RANK, "ranking": [[0, 1, 2]]}])
    fails(capsys, env, rm(env, f), "r5.jsonl:1", "field 'ranking'", "all responses are tied")


def test_identical_responses(capsys, env):
    f = _write(env, "r6.jsonl", [{"prompt": "Q: x\nA:", "chosen": " a", "rejected": " a"}])
    fails(capsys, env, rm(env, f), "r6.jsonl:1", "field 'rejected'", "identical")


def test_unranked_file_given_to_rm(capsys, env):
    f = _write(env, "r7.jsonl", [{"prompt": "Q: x\nA:", "responses": [" a", " b"]}])
    fails(capsys, env, rm(env, f), "r7.jsonl:1", "field 'ranking'", "no ranking")


def test_bad_prompts_file_never_costs_an_existing_ppo_output(capsys, env):
    f = _write(env, "p1.jsonl", [{"prompt": "Q: x\nA:"}, {"prompt": ""}])
    fails(capsys, env, ppo(env, prompts=f), "p1.jsonl:2", "field 'prompt'", "empty")


def test_data_check_reports_the_line(capsys, env):
    f = _write(env, "c1.jsonl", [GOOD_RANK, {**GOOD_RANK, "responses": [" a", 7, " c"]}])
    fails(capsys, env, ["data", "check", f], "c1.jsonl:2", "field 'responses[1]'", "expected a string")


def test_pretraining_text_not_utf8(capsys, env, tmp_path):
    f = _write(env, "t1.txt", b"hello\n\xc3\x28 world\n", binary=True)
    fails(capsys, env, ["pretrain", "--data", f, "--out", str(env["prev"]), "--overwrite", "--set", "max_steps=1"],
          "t1.txt:2", "not valid UTF-8")


# ------------------------------------------------------------------------------ model folders


def test_model_folder_missing_weights(capsys, env):
    bad = env["root"] / "no_weights"
    bad.mkdir(exist_ok=True)
    (bad / "config.json").write_text((env["root"] / "base" / "config.json").read_text())
    fails(capsys, env, ["sft", "--model", str(bad), "--data", env["demos"], "--out", str(env["prev"]), "--overwrite"],
          "no_weights", "no weights found")


def test_model_folder_missing_config(capsys, env):
    bad = env["root"] / "no_config"
    bad.mkdir(exist_ok=True)
    (bad / "model.safetensors").write_bytes((env["root"] / "base" / "model.safetensors").read_bytes())
    fails(capsys, env, ["sft", "--model", str(bad), "--data", env["demos"], "--out", str(env["prev"]), "--overwrite"],
          "no_config", "no config.json")


def test_model_folder_that_does_not_exist(capsys, env):
    fails(capsys, env, sft(env, env["demos"])[:2] + [str(env["root"] / "ghost")] + sft(env, env["demos"])[3:],
          "ghost", "not found")


def test_tokenizer_vocabulary_does_not_match_the_model(capsys, env):
    tok = build_char_tokenizer()
    model = build_gpt2(tok, 1, 16, 2, 128, seed=0)
    tok.add_tokens(["<extra1>", "<extra2>", "<extra3>"])
    bad = save_model_folder(model, tok, env["root"] / "mismatch")
    fails(capsys, env, ["sft", "--model", str(bad), "--data", env["demos"], "--out", str(env["prev"]), "--overwrite"],
          "mismatch", "tokenizer has", "do not belong together")


def test_rm_folder_given_as_policy(capsys, env):
    fails(capsys, env, ["sft", "--model", env["rm"], "--data", env["demos"], "--out", str(env["prev"]), "--overwrite"],
          env["rm"], "reward/value model", "policy")
    fails(capsys, env, ppo(env, policy=env["rm"]), env["rm"], "reward/value model")


def test_policy_folder_given_as_reward_model(capsys, env):
    fails(capsys, env, ppo(env, reward=env["base"]), env["base"], "causal LM", "reward model folder")


# ------------------------------------------------------------------------------ config and CLI


def test_unknown_config_key(capsys, env):
    fails(capsys, env, sft(env, env["demos"], "--set", "learning_rate=1e-3"), "unknown config key 'learning_rate'",
          "Valid keys", "lr")


def test_negative_learning_rate(capsys, env):
    fails(capsys, env, sft(env, env["demos"], "--set", "lr=-1e-4"), "lr must be > 0")
    fails(capsys, env, ppo(env, "--set", "value_lr=-1"), "value_lr must be > 0")


def test_out_of_range_reliability_settings(capsys, env):
    fails(capsys, env, sft(env, env["demos"], "--set", "checkpoint_every=-5"), "checkpoint_every must be >= 0")
    fails(capsys, env, rm(env, env["ranks"], "--set", "max_bad_steps=0"), "max_bad_steps must be >= 1")


def test_mistyped_config_value(capsys, env):
    fails(capsys, env, rm(env, env["ranks"], "--set", "epochs=two"), "epochs", "expected an integer")


def test_config_file_not_yaml_and_unknown_key_in_file(capsys, env):
    bad = env["root"] / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    fails(capsys, env, sft(env, env["demos"], "--config", str(bad)), "bad.yaml", "not valid YAML")
    unk = env["root"] / "unknown.yaml"
    unk.write_text("lr: 0.001\nwarmup: 3\n")
    fails(capsys, env, sft(env, env["demos"], "--config", str(unk)), "unknown config key 'warmup'")


def test_unknown_preset(capsys, env):
    fails(capsys, env, sft(env, env["demos"], "--preset", "fastest"), "unknown preset 'fastest'", "quick")


def test_ptx_without_pretraining_data(capsys, env):
    fails(capsys, env, ppo(env, "--set", "ptx_coef=1.0"), "ptx_coef > 0", "ptx_data")


def test_output_folder_holding_a_different_run(capsys, env, tmp_path):
    out = tmp_path / "sft_out"
    assert main(sft(env, env["demos"], "--set", "epochs=1", out=out, overwrite=False)) == 0
    capsys.readouterr()
    env = {**env, "prev": out}  # the finished run is the output that must survive
    argv = sft(env, env["demos"], "--set", "epochs=2", out=out, overwrite=False)
    fails(capsys, env, argv, str(out), "already holds a different sft run", "--overwrite")
    assert main(argv + ["--overwrite"]) == 0  # with --overwrite it is replaced


def test_output_folder_is_an_input(capsys, env):
    fails(capsys, env, ["sft", "--model", env["base"], "--data", env["demos"], "--out", env["base"], "--overwrite"],
          "would overwrite the input")


def test_resume_with_nothing_to_resume(capsys, env, tmp_path):
    env = {**env, "root": tmp_path, "prev": tmp_path}
    fails(capsys, env, ["rm", "--model", env["base"], "--data", env["ranks"], "--out", str(tmp_path / "r"), "--resume"],
          "nothing to resume", "r.checkpoint")


def test_second_run_into_the_same_out_folder_is_refused(tmp_path):
    """Two runs writing one output folder at once would delete each other's logs mid-run."""
    import subprocess
    import sys

    from instructrl.errors import InstructRLError
    from instructrl.run import staging_dir

    out = tmp_path / "sft"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        d = out.parent / f".{out.name}.running"
        d.mkdir()
        (d / "owner.pid").write_text(str(other.pid))
        (d / "log.csv").write_text("step\n")
        with pytest.raises(InstructRLError, match=f"process {other.pid}.*is writing"):
            staging_dir(out)
        assert (d / "log.csv").exists()  # the other run's files are left alone
    finally:
        other.kill()
        other.wait()
    # Once that process is gone, the stale folder is replaced; the lock never reaches the output.
    d = staging_dir(out)
    assert not (d / "log.csv").exists() and (d / "owner.pid").exists()
    from instructrl.config import PretrainConfig
    from instructrl.pretrain import pretrain_base

    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 20)
    pretrain_base(PretrainConfig(n_layer=1, n_embd=16, n_head=2, n_positions=32, max_steps=1, batch_size=2, seq_len=8,
                                 report_to=["none"]), str(text), str(out), quiet=True)
    assert (out / "config.json").exists() and not (out / "owner.pid").exists() and not d.exists()


@pytest.mark.parametrize("setting, message", [("rlhf_rounds=0", "rlhf_rounds must be >= 1"),
                                              ("rm_init=foo", "rm_init must be 'sft' or 'base_large'"),
                                              ("align_large=true", "align_large=true needs train_large=true")])
def test_pipeline_rejects_bad_settings_before_any_work(capsys, tmp_path, setting, message):
    rc = main(["pipeline", "--preset", "quick", "--set", setting, "--out", str(tmp_path / "run")])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was built first
