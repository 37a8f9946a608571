"""Data-parallel SFT, RM and PPO under `accelerate launch` with 2 CPU processes (gloo).

SFT and RM: 2 processes with per-process batch B/2 give the same logged losses and final weights
as 1 process with batch B. PPO: a 2-process run completes and logs the mean over processes.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instructrl.models import reward_model_from_causal_lm, save_model_folder

from tiny_hf import PROMPTS, RANKINGS, make_model_folder, write_jsonl

HERE = Path(__file__).parent
CONFIG = HERE.parent / "src" / "instructrl" / "presets" / "accelerate" / "ddp_cpu.yaml"
DRIVER = HERE / "dist_driver.py"


def launch(n: int, *args) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if n == 1:
        cmd = [sys.executable, str(DRIVER), *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
               "--num_processes", str(n), str(DRIVER), *map(str, args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def rows(path) -> list[dict]:
    return list(csv.DictReader(open(Path(path) / "log.csv")))


def weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    base = make_model_folder("llama", root)
    demos = [{"prompt": f"Q: question {i}?\nA:", "response": f" answer {i}"} for i in range(8)]
    rm_init, tok = reward_model_from_causal_lm(base)
    return {"root": root, "base": base, "demos": write_jsonl(root / "demos.jsonl", demos),
            "rankings": write_jsonl(root / "rankings.jsonl", RANKINGS),
            "prompts": write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS]),
            "rm": save_model_folder(rm_init, tok, root / "rm_init")}


@pytest.mark.parametrize("stage, data", [("sft", "demos"), ("rm", "rankings")])
def test_two_processes_with_half_the_batch_equal_one_process(files, tmp_path, stage, data):
    one, two = tmp_path / "one", tmp_path / "two"
    launch(1, stage, files["base"], files[data], one, 4)
    launch(2, stage, files["base"], files[data], two, 2)
    a, b = rows(one), rows(two)
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        for k in ("loss", "grad_norm", "lr"):
            if ra.get(k):
                assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-4, abs=1e-5), (k, ra, rb)
    wa, wb = weights(one), weights(two)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no leftovers from other ranks


def test_two_process_ppo_logs_the_mean_over_processes(files, tmp_path):
    out = tmp_path / "ppo"
    # The driver's reward is 1 on rank 0 and 3 on rank 1: the logged score must be their mean, 2.
    launch(2, "ppo", files["base"], files["prompts"], out, 2, files["rm"])
    log = rows(out)
    assert [int(r["update"]) for r in log] == [1, 2]
    for r in log:
        assert float(r["score_raw"]) == pytest.approx(2.0)
        assert float(r["score"]) == pytest.approx(2.0)
    assert (out / "model.safetensors").exists() and (out / "value_model").is_dir()
    assert (tmp_path / "ppo.rank0.json").exists() and (tmp_path / "ppo.rank1.json").exists()


def test_adaptive_kl_counts_the_global_batch(files, tmp_path):
    """[ZG]'s controller moves beta by n_steps / horizon per update, n_steps = episodes in the batch:
    with 2 processes that is batch_size x 2. The first update's KL is exactly 0 (policy = reference),
    so the beta it leaves (logged at update 2) depends only on n_steps: 2 processes with batch 2 must
    equal 1 process with batch 4."""
    import json

    kl = json.dumps({"adaptive_kl": True, "kl_coef": 0.1, "kl_target": 1.0, "kl_horizon": 10})
    one, two = tmp_path / "one", tmp_path / "two"
    launch(1, "ppo", files["base"], files["prompts"], one, 4, files["rm"], json.dumps({**json.loads(kl), "total_episodes": 8}))
    launch(2, "ppo", files["base"], files["prompts"], two, 2, files["rm"], kl)
    a, b = rows(one), rows(two)
    assert float(a[0]["kl"]) == 0.0 and float(b[0]["kl"]) == 0.0
    expected = 0.1 * (1 - 0.2 * 4 / 10)  # error clipped to -0.2, n_steps = 4 episodes
    assert float(a[1]["kl_coef"]) == pytest.approx(expected)
    assert float(b[1]["kl_coef"]) == pytest.approx(expected)
