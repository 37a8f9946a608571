"""Issue 17, as a hostile user would probe it: no code runs from a checkpoint, no finished output is
lost, every bad value is one clear `error:` line (exit 2, no traceback), and a fuzz of `--set`
values over every stage's config finds nothing but clean errors."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from instructrl import config as C
from instructrl.cli import main
from instructrl.models import load_policy, save_model_folder

from tiny_hf import char_gpt2_folder, reward_folder, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard")
    base = char_gpt2_folder(root / "base")
    rm_dir = reward_folder(base, root / "rm", seed=1)
    demos = write_jsonl(root / "demos.jsonl", [{"prompt": f"Q: word {w}?\nA:", "response": f" {w[::-1]}"}
                                                for w in ("cat", "dog", "sun", "map", "owl", "fig")])
    ranks = write_jsonl(root / "ranks.jsonl", [{"prompt": f"Q: {w}\nA:", "responses": [f" {w}", " no", " idk"],
                                                "ranking": [0, 2, 1]} for w in ("cat", "dog", "sun", "map")])
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": "Q: hi\nA:"}, {"prompt": "Q: yo\nA:"}])
    return {"root": root, "base": str(base), "rm": str(rm_dir), "demos": str(demos), "ranks": str(ranks),
            "prompts": str(prompts)}


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(capsys, argv, *needles) -> str:
    """Run the CLI: exit 2, exactly one `error:` line holding every needle, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err[-2000:])
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ 17.1 no pickle


def test_nothing_calls_torch_load_with_weights_only_false():
    needle = "weights_only=" + "False"  # (spelled apart so that this file does not match itself)
    # Our files only: not the peer benchmarks' virtual environments or caches (benchmarks/.venv-peer/...).
    ours = [p for d in ("src", "tests", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py")
            if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in ours
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert hits == []
    src = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py"))
    assert "torch.load(" not in src and "pickle.load" not in src


class _Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.write_text, (Path(self.sentinel), "pwned"))


def _plant_pickle(ckpt: Path, sentinel: Path) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    with open(ckpt / "state.pt", "wb") as fh:
        pickle.dump({"stage": "sft", "x": _Payload(sentinel)}, fh)
    with open(ckpt / "tensors.safetensors", "wb") as fh:  # a pickle where tensors should be
        pickle.dump(_Payload(sentinel), fh)


def test_a_planted_pickle_checkpoint_never_runs(env, tmp_path, capsys):
    sentinel = tmp_path / "SENTINEL"
    _plant_pickle(tmp_path / "o.checkpoint", sentinel)
    one_error(capsys, ["sft", "--model", env["base"], "--data", env["demos"], "--out", str(tmp_path / "o"), "--resume"],
              "nothing to resume", "never loaded")
    assert not sentinel.exists()
    # A state.json naming this very run, beside a pickle in place of the tensors: refused by safetensors.
    (tmp_path / "o.checkpoint" / "state.json").write_text(json.dumps({"stage": "sft", "fingerprint": "0" * 16}))
    one_error(capsys, ["sft", "--model", env["base"], "--data", env["demos"], "--out", str(tmp_path / "o"), "--resume"],
              "different sft run")
    assert not sentinel.exists()


def test_the_pipeline_cache_checkpoint_is_never_unpickled(env, tmp_path, monkeypatch):
    """The pipeline resumes pretraining from `cache/base/<hash>.checkpoint` automatically."""
    from instructrl.pretrain import pretrain_base

    sentinel = tmp_path / "SENTINEL"
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 40)
    _plant_pickle(tmp_path / "cache" / "base.checkpoint", sentinel)
    cfg = C.PretrainConfig(n_layer=1, n_embd=16, n_head=2, n_positions=32, max_steps=2, batch_size=2, seq_len=8,
                           report_to=["none"])
    pretrain_base(cfg, str(text), str(tmp_path / "cache" / "base"), overwrite=True, resume="auto", quiet=True)
    assert not sentinel.exists() and (tmp_path / "cache" / "base" / "config.json").exists()


# ------------------------------------------------------------------------------ 17.2 outputs survive


def test_a_killed_ppo_rerun_keeps_the_finished_output(env, tmp_path):
    args = [sys.executable, "-m", "instructrl.cli", "ppo", "--policy", env["base"], "--reward", env["rm"],
            "--prompts", env["prompts"], "--out", str(tmp_path / "ppo"), "--set", "batch_size=4",
            "--set", "minibatch_size=2", "--set", "max_new_tokens=4", "--set", "report_to=[none]"]
    r = subprocess.run(args + ["--set", "total_episodes=8"], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    before = _snapshot(tmp_path / "ppo")
    # The same command again is refused without --overwrite (it would replace a finished output).
    r = subprocess.run(args + ["--set", "total_episodes=8"], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already holds a finished ppo run" in r.stderr
    # With --overwrite, a longer run killed mid-way: the old output is still whole.
    p = subprocess.Popen(args + ["--set", "total_episodes=4000", "--set", "checkpoint_every=1", "--overwrite"], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (tmp_path / "ppo.checkpoint" / "state.json").exists():
        assert p.poll() is None and time.time() - t0 < 240
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert _snapshot(tmp_path / "ppo") == before
    load_policy(tmp_path / "ppo")
    # A bad value found before anything is loaded costs nothing either.
    r = subprocess.run(args + ["--set", "lr=nan", "--overwrite"], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "lr must be a finite number > 0, got nan" in r.stderr
    assert _snapshot(tmp_path / "ppo") == before


def test_world_build_never_overwrites_a_users_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "demonstrations.jsonl").write_text("my own data\n")
    argv = ["world", "build", "--out", str(out), "--set", "n_sft=4", "--set", "n_sft_val=2", "--set", "n_rm=2",
            "--set", "n_ppo=2", "--set", "n_eval=2", "--set", "corpus_chars=2000", "--set", "n_benchmark=2"]
    one_error(capsys, argv, "already holds files that are not from an instructrl run", "--overwrite")
    assert (out / "demonstrations.jsonl").read_text() == "my own data\n"
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "world.json").exists() and (out / "demonstrations.jsonl").read_text() != "my own data\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------ 17.3 / 17.6 one line each

BAD_VALUES = [
    ("sft", "lr=inf", "lr must be a finite number > 0, got inf"),
    ("sft", "lr=nan", "lr must be a finite number > 0, got nan"),
    ("sft", "beta1=2", "beta1 must be in [0, 1), got 2.0"),
    ("sft", "dropout=1.5", "dropout must be in [0, 1), got 1.5"),
    ("sft", "mixed_precision=bogus", "mixed_precision must be '', 'no', 'bf16' or 'fp16', got 'bogus'"),
    ("sft", "min_lr_ratio=-1", "min_lr_ratio must be in [0, 1], got -1.0"),
    ("sft", "eval_every=-5", "eval_every must be in [0, 16777216], got -5"),
    ("sft", "truncation=middle", "truncation must be 'error' or 'truncate_prompt_left'"),
    ("sft", "report_to=[tensorbored]", "unknown tracker 'tensorbored'"),
    ("sft", "seed=-3", "seed must be in [0, 2147483647], got -3"),
    ("rm", "val_fraction=-0.5", "val_fraction must be in [0, 1), got -0.5"),
    ("rm", "batch_size=0", "batch_size must be in [1, 16777216], got 0"),
    ("ppo", "kl_coef=nan", "kl_coef must be a finite number >= 0, got nan"),
    ("ppo", "gamma=nan", "gamma must be a finite number in [0, 1], got nan"),
    ("ppo", "eos_penalty=nan", "eos_penalty must be a finite number, got nan"),
    ("ppo", "max_kl=nan", "max_kl must be a finite number >= 0, got nan"),
    ("ppo", "temperature=nan", "temperature must be a finite number > 0, got nan"),
    ("ppo", "temperature=0", "temperature must be > 0, got 0.0"),
    ("ppo", "clip_eps=-1", "clip_eps must be in (0, 10], got -1.0"),
    ("ppo", "ppo_epochs=0", "ppo_epochs must be in [1, 10000], got 0"),
    ("ppo", "kl_estimator=bogus", "kl_estimator must be 'k1', 'k2' or 'k3', got 'bogus'"),
    ("ppo", "save_every=5", "unknown config key 'save_every'"),
    ("ppo", "minibatch_size=3", "batch_size (4) must be a multiple of minibatch_size (3)"),
    ("pretrain", "lr=-0.1", "lr must be > 0, got -0.1"),
]


def _stage_argv(env, stage, out):
    return {"sft": ["sft", "--model", env["base"], "--data", env["demos"]],
            "rm": ["rm", "--model", env["base"], "--data", env["ranks"]],
            "ppo": ["ppo", "--policy", env["base"], "--reward", env["rm"], "--prompts", env["prompts"],
                    "--set", "batch_size=4", "--set", "minibatch_size=2", "--set", "total_episodes=8"],
            "pretrain": ["pretrain", "--data", env["demos"]]}[stage] + ["--out", str(out)]


@pytest.mark.parametrize("stage, setting, message", BAD_VALUES)
def test_a_bad_value_is_one_line_naming_field_and_domain(env, tmp_path, capsys, monkeypatch, stage, setting, message):
    import transformers

    loaded = []
    for cls in (transformers.AutoModelForCausalLM, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", lambda *a, **k: loaded.append(a) or pytest.fail("a model was loaded"))
    one_error(capsys, _stage_argv(env, stage, tmp_path / "o") + ["--set", setting], message)
    assert not loaded and sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, nothing loaded


def test_a_yaml_alias_bomb_fails_within_a_second(env, tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    t0 = time.perf_counter()
    one_error(capsys, _stage_argv(env, "sft", tmp_path / "o") + ["--config", str(bomb)], "bomb.yaml", "aliases")
    assert time.perf_counter() - t0 < 1.0
    one_error(capsys, _stage_argv(env, "sft", tmp_path / "o") + ["--set", "lora_target_modules=&a [*a, *a]"], "aliases")


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "quick.yaml", "a/b", ".quick"])
def test_a_preset_is_a_name_not_a_path(env, tmp_path, capsys, name):
    one_error(capsys, _stage_argv(env, "sft", tmp_path / "o") + ["--preset", name], "unknown preset", "quick")


def test_a_changed_input_refuses_resume_and_names_it(env, tmp_path, capsys, monkeypatch):
    from instructrl import sft

    data = tmp_path / "demos.jsonl"
    data.write_bytes(Path(env["demos"]).read_bytes())
    argv = ["sft", "--model", env["base"], "--data", str(data), "--out", str(tmp_path / "o"), "--set", "epochs=4",
            "--set", "batch_size=2", "--set", "checkpoint_every=2", "--set", "report_to=[none]"]
    real, calls = sft.accumulate_step, {"n": 0}

    def die_at_5(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sft, "accumulate_step", die_at_5)
    assert main(argv) == 130
    monkeypatch.setattr(sft, "accumulate_step", real)
    assert (tmp_path / "o.checkpoint" / "state.json").exists()
    data.write_text("".join(json.dumps({"prompt": "Q: x\nA:", "response": " WRONG"}) + "\n" for _ in range(300)))
    one_error(capsys, argv + ["--resume"], "different sft run", "input data (contents changed)")
    one_error(capsys, argv + ["--resume", "--set", "lr=0.002"], "lr 0.001 -> 0.002")


def test_the_same_input_file_twice_is_an_error(env, tmp_path, capsys):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(Path(env["ranks"]).read_bytes())
    for second in (env["ranks"], str(copy)):  # the same path, or the same contents under another name
        one_error(capsys, ["rm", "--model", env["base"], "--data", env["ranks"], second, "--out", str(tmp_path / "o")],
                  "are the same file", "count twice")


def test_a_symlink_loop_as_data(env, tmp_path, capsys):
    loop = tmp_path / "loop.jsonl"
    os.symlink(loop, loop)
    one_error(capsys, ["sft", "--model", env["base"], "--data", str(loop), "--out", str(tmp_path / "o")],
              "loop.jsonl", "symbolic links")


@pytest.mark.parametrize("extra, message", [
    (["-n", "0"], "-n must be in [1, 4096], got 0"),
    (["-n", "-1"], "-n must be in [1, 4096], got -1"),
    (["--max-new-tokens", "-5"], "--max-new-tokens must be >= 1, got -5"),
    (["--temperature", "-1"], "--temperature must be a finite number >= 0"),
    (["--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["--prompt", "   "], "--prompt is empty"),
    (["--prompt", "x" * 500], "longer than the model's context of 128 tokens"),
])
def test_generate_bad_arguments(env, capsys, extra, message):
    argv = ["generate", "--model", env["base"], "--prompt", "Q: hi\nA:"] + extra
    one_error(capsys, argv, message)


def test_unknown_characters_are_named(env, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        assert main(["generate", "--model", env["base"], "--prompt", "Q: café ☕?\nA:", "--max-new-tokens", "2"]) == 0
    assert "characters this tokenizer does not know" in caplog.text and "<unk>" in caplog.text


def test_a_nan_policy_is_refused_at_load(env, tmp_path, capsys):
    model, tok = load_policy(env["base"])
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    bad = save_model_folder(model, tok, tmp_path / "nan_policy")
    one_error(capsys, ["ppo", "--policy", str(bad), "--reward", env["rm"], "--prompts", env["prompts"], "--out",
                       str(tmp_path / "o"), "--set", "batch_size=4", "--set", "minibatch_size=2",
                       "--set", "total_episodes=8"], "NaN/inf", "diverged")
    one_error(capsys, ["compare", "--model", str(bad), "--prompts", env["prompts"], "--out", str(tmp_path / "c.jsonl"),
                       "--labelers", "none"], "NaN/inf")  # (not world prompts: the world's labelers are refused first)
    assert not (tmp_path / "o").exists() and not (tmp_path / "c.jsonl").exists()


def test_eval_out_must_not_be_a_model_folder(env, tmp_path, capsys):
    before = _snapshot(Path(env["base"]))
    one_error(capsys, ["eval", "--models", f"base={env['base']}", "--prompts", env["prompts"], "--out", env["base"]],
              "would overwrite the input")
    assert _snapshot(Path(env["base"])) == before


# ------------------------------------------------------------------------------ full disk


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["model", "checkpoint", "log"])
def test_a_full_disk_is_one_line_and_leaves_only_the_old_output(env, tmp_path, capsys, monkeypatch, where):
    from instructrl import models, run, train_utils

    out = tmp_path / "o"
    assert main(["sft", "--model", env["base"], "--data", env["demos"], "--out", str(out), "--set", "epochs=1",
                 "--set", "report_to=[none]"]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    if where == "model":
        monkeypatch.setattr(models, "write_model_files", _enospc)
    elif where == "checkpoint":
        monkeypatch.setattr(run, "save_file", _enospc)  # the checkpoint's safetensors writer
    else:
        monkeypatch.setattr(train_utils.MetricsLogger, "log", _enospc)
    line = one_error(capsys, ["sft", "--model", env["base"], "--data", env["demos"], "--out", str(out), "--overwrite",
                              "--set", "epochs=3", "--set", "batch_size=2", "--set", "checkpoint_every=1",
                              "--set", "report_to=[none]"], "no space left on device: ")
    assert str(tmp_path) in line
    assert _snapshot(out) == before
    # No staging folder, no half checkpoint; a whole one (written before the disk filled) stays for --resume.
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == (["o", "o.checkpoint"] if where == "model" else ["o"]), left
    if where == "model":
        assert "rerun with --resume" in line and sorted(p.name for p in (tmp_path / "o.checkpoint").iterdir()) == \
            ["state.json", "tensors.safetensors"]


def _can_mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_a_really_full_disk(env, tmp_path):
    """On a real 1 MiB tmpfs (root only): the old output survives and nothing else is left."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here")
    try:
        # The old output: a tiny model folder. Then fill what is left but ~40 kB.
        save_model_folder(*load_policy(env["base"]), mnt / "o")
        before = _snapshot(mnt / "o")
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 40_000))
        r = subprocess.run([sys.executable, "-m", "instructrl.cli", "sft", "--model", env["base"], "--data", env["demos"],
                            "--out", str(mnt / "o"), "--overwrite", "--set", "epochs=1", "--set", "report_to=[none]"],
                           env=ENV, capture_output=True, text=True, timeout=300)
        errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
        assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "no space left on device: " in errors[0]
        assert _snapshot(mnt / "o") == before
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "o"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# ------------------------------------------------------------------------------ fuzz of --set

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SPECIAL = [".nan", ".inf", "-.inf", "nan", "inf", "1e400", "-0", "0x10", "1_000", "~", "null", "[]", "{}", "[1, [2]]",
           "{a: 1}", "&a [*a]", "*a", "!!binary AAAA", "!!python/object/apply:os.system [echo hi]", "[[[[[[", "'",
           "\"", "true", "no", "2020-01-01", "- a", "a: b: c", "\t", "é", "\x00", "9" * 40, "-" + "9" * 40,
           "[" * 2000 + "]" * 2000, "x" * 20_000]


def _leaf_paths(cls, prefix=""):
    out = []
    for fl in C.dataclasses.fields(cls):
        tp = C._field_types(cls)[fl.name]
        if C.dataclasses.is_dataclass(tp):
            out += _leaf_paths(tp, f"{prefix}{fl.name}.")
        out.append(prefix + fl.name)
    return out


def _value_text():
    return st.one_of(
        st.sampled_from(SPECIAL),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=40),
        st.lists(st.one_of(st.integers(), st.text(max_size=8), st.floats()), max_size=5).map(json.dumps),
        st.booleans().map(str),
    )


#: Each stage command with its entry replaced by its own config checks (what runs before a model loads).
def _stubs(monkeypatch):
    from instructrl import compare, evaluate, pipeline, ppo, pretrain, rm, sft
    from instructrl import models as models_mod

    def stub(check):
        return lambda cfg, *a, **k: (check(cfg, *a, **k), {})[1]

    monkeypatch.setattr(sft, "train_sft", stub(lambda cfg, *a, **k: sft.check_config(cfg, k.get("val_data"), k.get("ptx_data"))))
    monkeypatch.setattr(ppo, "train_ppo", stub(lambda cfg, *a, **k: ppo.check_config(cfg, k.get("ptx_data"))))
    for mod, name in ((rm, "train_reward_model"), (pretrain, "pretrain_base"), (compare, "run"), (evaluate, "run"),
                      (pipeline, "run")):
        monkeypatch.setattr(mod, name, stub(lambda cfg, *a, **k: C.validate(cfg)))
    monkeypatch.setattr(models_mod, "atomic_folder", lambda out, fill: None)  # world build writes nothing


FUZZ_ARGV = {
    "world": ["world", "build", "--out", "{tmp}/w"],
    "pretrain": ["pretrain", "--data", "x.txt", "--out", "{tmp}/o"],
    "sft": ["sft", "--model", "m", "--data", "d", "--out", "{tmp}/o"],
    "compare": ["compare", "--model", "m", "--prompts", "p", "--out", "{tmp}/c.jsonl"],
    "rm": ["rm", "--model", "m", "--data", "d", "--out", "{tmp}/o"],
    "ppo": ["ppo", "--policy", "p", "--reward", "r", "--prompts", "q", "--out", "{tmp}/o"],
    "eval": ["eval", "--models", "a=b", "--prompts", "p", "--out", "{tmp}/e"],
    "pipeline": ["pipeline", "--out", "{tmp}/run"],
}


@pytest.mark.parametrize("stage", list(FUZZ_ARGV))
def test_fuzz_set_values_give_clean_errors_only(stage, tmp_path, monkeypatch, capsys):
    cls = C.STAGES[stage]
    keys = _leaf_paths(cls) + ["nope", "lr.x", "a..b", ""]
    _stubs(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in FUZZ_ARGV[stage]]

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(keys), _value_text()), min_size=1, max_size=3))
    def check(pairs):
        sets = [x for k, v in pairs for x in ("--set", f"{k}={v}")]
        code = main(argv + sets)  # anything but a clean error would raise here (a traceback)
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err
        if code == 2:
            assert len([x for x in err.splitlines() if x.startswith("error:")]) == 1, err

    check()


def test_fuzz_finds_the_bad_values_it_should(tmp_path, capsys):
    """The domains themselves: every float field refuses NaN and inf, every choice field a non-choice."""
    for cls in (C.PretrainConfig, C.SFTConfig, C.RMConfig, C.PPOConfig, C.CompareConfig, C.EvalConfig, C.WorldConfig):
        for fl in C.dataclasses.fields(cls):
            tp = C._field_types(cls)[fl.name]
            domain = fl.metadata.get("domain")
            if tp is float or (domain is not None and not domain.choices and tp is not str and "float" in str(tp)):
                for bad in ("nan", "inf", "-inf"):
                    with pytest.raises(C.ConfigError, match=re.escape(fl.name)):
                        C.apply_overrides(cls(), [f"{fl.name}={bad}"])
            if domain is not None and domain.choices:
                with pytest.raises(C.ConfigError, match="must be"):
                    C.apply_overrides(cls(), [f"{fl.name}=surely-not-a-choice"])


def test_nan_weights_are_never_saved_as_a_finished_output(env, tmp_path):
    from instructrl.errors import TrainingStopped
    from instructrl.run import Run

    model, tok = load_policy(env["base"])
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    cfg = C.SFTConfig(report_to=["none"])
    run = Run.start("sft", cfg, tmp_path / "o", {"model": env["base"]})
    with pytest.raises(TrainingStopped, match="NaN/inf"):
        with run:
            run.finish({}, [("", model, tok)])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
