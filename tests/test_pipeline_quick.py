"""The quick pipeline end to end, as a new user runs it: files exist, metrics.json keys and ranges."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

REQUIRED = [
    "winrate.sft_vs_base", "winrate.ppo_vs_sft", "winrate.ppo_ptx_vs_sft",
    "gold.base", "gold.sft", "gold.ppo", "gold.ppo_ptx",
    "labelers.agreement", "rm.val_accuracy", "rm.heldout_labeler_accuracy",
    "kl.ppo", "kl.ppo_ptx",
    "tax.benchmark.base", "tax.benchmark.sft", "tax.benchmark.ppo", "tax.benchmark.ppo_ptx",
    "tax.pretrain_nll.base", "tax.pretrain_nll.sft", "tax.pretrain_nll.ppo", "tax.pretrain_nll.ppo_ptx",
    "hhh.refusal_harmful.base", "hhh.idk_unanswerable.sft", "hhh.over_refusal.ppo_ptx",
    "time_s.total",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "run"
    env = dict(os.environ, INSTRUCTRL_CACHE_DIR=str(out.parent / "cache"))
    r = subprocess.run([sys.executable, "-m", "instructrl.cli", "pipeline", "--preset", "quick", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r.stdout


def test_quick_pipeline_files_and_metrics(quick_run):
    out, stdout = quick_run
    for name in ("world/world.json", "base_small/config.json", "sft/config.json", "comparisons.jsonl", "rm/config.json",
                 "ppo/config.json", "ppo_ptx/config.json", "metrics.json", "report.html", "config.yaml",
                 "round1/rm/config.json", "round1/ppo/config.json", "comparisons_round2.jsonl"):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())
    for k in REQUIRED + ["round1.rm.val_accuracy", "winrate.ppo_round1_vs_sft", "gold.ppo_round1",
                         "bon.gold", "bon.gold_sampled", "bon.gold_oracle", "rm_family.all.rm", "rm_family.all.gold",
                         "gold_family.harmful.sft", "gold_family.harmful.ppo_ptx"]:
        assert k in m, k
    assert m["bon.n"] == 4 and m["bon.gold_sampled"] - 1e-9 <= m["bon.gold_oracle"] and m["bon.gold"] <= m["bon.gold_oracle"] + 1e-9
    assert 'id="families"' in (out / "report.html").read_text()
    # Round 2's RM learns from the SFT comparisons and from round 1's PPO samples ranked by the labelers.
    n1 = sum(1 for _ in open(out / "comparisons.jsonl"))
    n2 = sum(1 for _ in open(out / "comparisons_round2.jsonl"))
    assert n1 > 0 and n2 > 0
    rm_run = json.loads((out / "rm" / "run.json").read_text())
    assert [os.path.basename(p) for p in rm_run["inputs"]["data"]] == ["comparisons.jsonl", "comparisons_round2.jsonl"]
    assert "round 1 RM" in (out / "report.html").read_text()
    for k, v in m.items():
        if k.startswith(("winrate.", "hhh.", "gold.", "rm.", "gold_family.", "rm_family.", "bon.gold")) or k == "labelers.agreement":
            assert 0.0 <= v <= 1.0, (k, v)
        if k.startswith("winrate."):
            lo, hi = m["winrate_ci95." + k[len("winrate."):]]
            assert 0.0 <= lo <= v <= hi <= 1.0, k
    # k1 (the headline kl.*) is an unbiased estimate that can come out slightly negative on 200
    # prompts of a policy near SFT (it does at this preset: -0.013); k3 never is (docs/metrics.md).
    assert m["kl_k3.ppo"] >= 0 and m["kl_k3.ppo_ptx"] >= 0
    assert m["kl.ppo"] > -0.1 and m["kl.ppo_ptx"] > -0.1
    assert m["time_s.total"] > 0
    html = (out / "report.html").read_text()
    assert "<img" in html and "win rate" in html.lower()
    # outputs are plain HF folders
    AutoModelForCausalLM.from_pretrained(out / "ppo_ptx")
    AutoModelForSequenceClassification.from_pretrained(out / "rm")


def test_quick_pipeline_rerun_is_cached(quick_run):
    out, _ = quick_run
    env = dict(os.environ, INSTRUCTRL_CACHE_DIR=str(out.parent / "cache"))
    r = subprocess.run([sys.executable, "-m", "instructrl.cli", "pipeline", "--preset", "quick", "--out", str(out),
                        "--set", "eval.n_prompts=50"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("world", "base_small", "sft", "compare", "round1/rm", "round1/ppo", "compare_round2", "rm", "ppo",
                  "ppo_ptx"):
        assert f"{stage}: cached" in r.stdout, (stage, r.stdout[-2000:])


def _one_round(quick_run, name, drop_round1: bool):
    out, _ = quick_run
    env = dict(os.environ, INSTRUCTRL_CACHE_DIR=str(out.parent / "cache"))
    one = out.parent / name
    shutil.copytree(out, one)  # the shared stages (world ... comparisons) come from cache
    if drop_round1:
        shutil.rmtree(one / "round1")
    r = subprocess.run([sys.executable, "-m", "instructrl.cli", "pipeline", "--preset", "quick", "--out", str(one),
                        "--set", "rlhf_rounds=1", "--set", "eval.n_prompts=50"], capture_output=True, text=True,
                       env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "compare: cached" in r.stdout and "compare_round2" not in r.stdout
    m = json.loads((one / "metrics.json").read_text())
    assert "winrate.ppo_round1_vs_sft" not in m and "round1.rm.val_accuracy" not in m
    # what the 2-round run left there is gone: nothing in the folder belongs to another run
    assert not (one / "round1").exists() and not (one / "comparisons_round2.jsonl").exists()
    stage = lambda d: json.loads((d / "stage.json").read_text())["hash"]  # noqa: E731
    assert stage(one / "rm") == stage(out / "round1" / "rm") and stage(one / "ppo") == stage(out / "round1" / "ppo")
    return out, one, r.stdout


def test_quick_pipeline_one_round_is_round_one_of_two(quick_run):
    """rlhf_rounds=1 is the paper's single round: its RM and PPO, trained afresh, are exactly round 1
    of the 2-round run."""
    out, one, stdout = _one_round(quick_run, "one_round", drop_round1=True)
    assert "rm: cached" not in stdout and "ppo: cached" not in stdout and "copied from" not in stdout
    a = (one / "rm" / "model.safetensors").read_bytes()
    assert a == (out / "round1" / "rm" / "model.safetensors").read_bytes()


def test_quick_pipeline_reuses_round_one_of_a_two_round_folder(quick_run):
    """The same command in a folder that still holds the 2-round run copies round 1's RM and PPO into
    rm/ and ppo/ instead of training them again (and the other way round, README's `cp -r runs/default
    runs/rounds2`: rm/ and ppo/ become round1/)."""
    out, one, stdout = _one_round(quick_run, "one_round_reused", drop_round1=False)
    assert "] rm: copied from" in stdout and "] ppo: copied from" in stdout, stdout[-2000:]
    for f in ("rm/model.safetensors", "ppo/model.safetensors"):
        assert (one / f).read_bytes() == (out / "round1" / f).read_bytes(), f
    # back to two rounds: round 1 is copied from rm/ and ppo/; round 2 is recomputed
    env = dict(os.environ, INSTRUCTRL_CACHE_DIR=str(out.parent / "cache"))
    r = subprocess.run([sys.executable, "-m", "instructrl.cli", "pipeline", "--preset", "quick", "--out", str(one),
                        "--set", "eval.n_prompts=50"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "round1/rm: copied from" in r.stdout and "round1/ppo: copied from" in r.stdout, r.stdout[-2000:]
    assert (one / "round1" / "rm" / "model.safetensors").read_bytes() == \
        (out / "round1" / "rm" / "model.safetensors").read_bytes()
    # round 2 was recomputed from the same inputs: the same models as the original 2-round run's
    assert (one / "rm" / "model.safetensors").read_bytes() == (out / "rm" / "model.safetensors").read_bytes()


def test_quick_pipeline_sweep_of_the_runs_own_beta_is_copied(quick_run):
    """A beta sweep that lists the run's own beta (as the README's does) copies ppo/ for that value."""
    from instructrl.config import PPOConfig

    out, _ = quick_run
    env = dict(os.environ, INSTRUCTRL_CACHE_DIR=str(out.parent / "cache"))
    run = out.parent / "sweep_own_beta"
    shutil.copytree(out, run)
    beta = PPOConfig().kl_coef
    r = subprocess.run([sys.executable, "-m", "instructrl.cli", "pipeline", "--preset", "quick", "--out", str(run),
                        "--set", "eval.n_prompts=50", "--set", f"sweeps.kl_coef=[{beta}]"], capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"sweeps/ppo_beta_{beta}: copied from" in r.stdout, r.stdout[-2000:]
    assert (run / f"sweeps/ppo_beta_{beta}/model.safetensors").read_bytes() == (run / "ppo/model.safetensors").read_bytes()
