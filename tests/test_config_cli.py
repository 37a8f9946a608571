"""Config strictness, CLI help and user-error handling, and a tiny pretraining run."""

import json
import subprocess
import sys

import pytest

from instructrl import config as C
from instructrl.cli import build_parser, main
from instructrl.errors import ConfigError


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        C.apply_overrides(C.PipelineConfig(), ["ppo.klcoef=0.1"])
    assert "ppo.klcoef" in str(e.value) and "kl_coef" in str(e.value)


def test_override_types_are_checked():
    cfg = C.apply_overrides(C.PipelineConfig(), ["ppo.kl_coef=0.05", "sft.epochs=3", "ppo.eos_penalty=-1"])
    assert cfg.ppo.kl_coef == 0.05 and cfg.sft.epochs == 3 and cfg.ppo.eos_penalty == -1.0
    with pytest.raises(ConfigError):
        C.apply_overrides(cfg, ["sft.epochs=many"])
    with pytest.raises(ConfigError):
        C.apply_overrides(cfg, ["ppo.lr=-1e-4"])
    with pytest.raises(ConfigError):
        C.apply_overrides(cfg, ["ppo.batch_size=60"])  # not a multiple of minibatch_size


@pytest.mark.parametrize("preset", ["quick", "default", "paper"])
def test_presets_load(preset):
    cfg = C.load_config(C.PipelineConfig, preset=preset)
    assert cfg.ppo.kl_coef >= 0


def test_config_roundtrip(tmp_path):
    cfg = C.apply_overrides(C.PipelineConfig(), ["rm.lr=1e-3"])
    p = C.save_config(cfg, tmp_path)
    again = C.load_config(C.PipelineConfig, config_file=p)
    assert again == cfg


def test_every_subcommand_has_help(capsys):
    for cmd in (["pipeline"], ["world", "build"], ["pretrain"], ["sft"], ["compare"], ["rm"], ["ppo"], ["eval"],
                ["generate"], ["data", "check"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(cmd + ["--help"])
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "kl_coef" in out and "ptx_coef" in out  # config fields are documented in --help


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    rc = main(["sft", "--model", str(tmp_path / "nope"), "--data", "x.jsonl", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "Traceback" not in err
    rc = main(["pipeline", "--set", "nonsense=1", "--out", str(tmp_path / "p")])
    assert rc == 2 and "unknown config key" in capsys.readouterr().err


def test_pretrain_tiny_and_load_with_plain_transformers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": f"Q: What is {i} plus {i}?\nA: {2 * i}"}) + "\n" for i in range(200)))
    out = tmp_path / "base"
    rc = main(["pretrain", "--data", str(data), "--val-data", str(data), "--out", str(out),
               "--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--set", "max_steps=30",
               "--set", "seq_len=32", "--set", "batch_size=8", "--set", "eval_every=15", "--set", "warmup_steps=5"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 30 and m["val_loss"] < 4.6  # below uniform over ~99 characters
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id
    ids = tok("Q: What is", return_tensors="pt")["input_ids"]
    gen = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] == ids.shape[1] + 5 or tok.eos_token_id in gen[0].tolist()
    # an existing model folder is not silently replaced
    assert main(["pretrain", "--data", str(data), "--out", str(out), "--set", "max_steps=1"]) == 2


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "instructrl.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "pipeline" in r.stdout


def test_pipeline_help_shows_what_runs_without_a_preset(capsys):
    """`instructrl pipeline` runs the default preset: its --help shows those values, not the bare dataclass's."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pipeline", "--help"])
    out = capsys.readouterr().out
    default = C.load_config(C.PipelineConfig, preset="default")
    assert default.sft.epochs != C.PipelineConfig().sft.epochs  # the check below means something
    assert f"  sft.epochs = {default.sft.epochs}\n" in out and f"  rlhf_rounds = {default.rlhf_rounds}\n" in out
    assert "values of the 'default' preset" in out


def test_sweeps_are_typed_lists_of_numbers():
    cfg = C.load_config(C.PipelineConfig, preset="paper")
    assert cfg.sweeps.kl_coef == [0.0, 0.01, 0.05, 0.2] and cfg.sweeps.ptx_coef == [0.3, 3.0]
    assert cfg.sweeps.runs()[0] == ("kl_coef", 0.0) and cfg.sweeps.runs()[-1] == ("ptx_coef", 3.0)
    cfg = C.apply_overrides(C.PipelineConfig(), ["sweeps.kl_coef=[0, 1e-2]"])
    assert cfg.sweeps.kl_coef == [0.0, 0.01] and all(isinstance(v, float) for v in cfg.sweeps.kl_coef)
    for bad, words in (("sweeps.beta=[1]", "unknown config key 'sweeps.beta'"),
                       ("sweeps.kl_coef=[-1]", "sweeps.kl_coef[0] must be >= 0"),
                       ("sweeps.ptx_coef=[.nan]", "sweeps.ptx_coef[0] must be a finite number"),
                       ("sweeps.kl_coef=[x]", "sweeps.kl_coef[0]: expected a number"),
                       ("sweeps.kl_coef=0.1", "sweeps.kl_coef: expected a list")):
        with pytest.raises(C.ConfigError) as e:
            C.apply_overrides(C.PipelineConfig(), [bad])
        assert words in str(e.value), (bad, str(e.value))


def test_a_yaml_boolean_word_for_a_string_field_says_to_quote_it():
    from instructrl.config import PipelineConfig, apply_overrides

    with pytest.raises(ConfigError, match=r"ppo\.mixed_precision: expected a string, got False .*quote the word"):
        apply_overrides(PipelineConfig(), ["ppo.mixed_precision=no"])
    assert apply_overrides(PipelineConfig(), ["ppo.mixed_precision='no'"]).ppo.mixed_precision == "no"


def test_speed_switches_off_leave_the_stage_hash_as_before_they_existed():
    """A stage cached before a speed switch existed stays cached while the switch is off (its off value
    computes what the old code did); switched on, the hash changes, so the stage recomputes."""
    import dataclasses
    import hashlib
    import json

    from instructrl.config import PPOConfig, config_hash, to_dict

    off = {"fused_adamw": False, "reuse_sample_logprobs": False, "trim_padding": False, "score_chunk": 0,
           "side_by_side_backward": False, "side_by_side_scoring": False,
           "side_by_side_sampling": False}
    cfg = dataclasses.replace(PPOConfig(), **off)
    old = {k: v for k, v in to_dict(cfg).items() if k != "report_to" and k not in off}
    before = hashlib.sha256(json.dumps([old], sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert config_hash(cfg) == before
    for on in ({"fused_adamw": True}, {"reuse_sample_logprobs": True}, {"trim_padding": True}, {"score_chunk": 16},
               {"side_by_side_backward": True}, {"side_by_side_scoring": True},
               {"side_by_side_sampling": True}):
        assert config_hash(dataclasses.replace(cfg, **on)) != before, on
    assert config_hash(dataclasses.replace(cfg, kl_coef=0.1)) != before  # any other field is hashed as ever
    # PPO has them on by default (a default stage cached before that recomputes once); SFT and RM
    # keep fused_adamw off, so their cached stages stay.
    assert all(getattr(PPOConfig(), k) != off[k] for k in ("fused_adamw", "reuse_sample_logprobs", "trim_padding",
                                                            "score_chunk"))
    assert config_hash(PPOConfig()) != before
    from instructrl.config import RMConfig, SFTConfig
    assert not SFTConfig().fused_adamw and not RMConfig().fused_adamw
