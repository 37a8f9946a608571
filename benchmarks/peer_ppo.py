"""The peer's side of the PPO benchmark: TRL 1.12.0's PPOTrainer on the shared synthetic setup.

Runs with the peer environment's interpreter (benchmarks/.venv-peer, see requirements-peer.txt):

    benchmarks/.venv-peer/bin/python benchmarks/peer_ppo.py [--episodes 512] [--json OUT]

Same work as ours_ppo.py: the same policy / reference / value / reward folders, 512 prompts,
batch 64 (one rollout batch per update), 4 minibatches of 16, 1 PPO epoch, 24 response tokens,
temperature 1.0 (TRL passes T + 1e-7, top_k 0, top_p 1: plain sampling), fp32, 2 threads,
stop at EOS. TRL's own PPO loop is timed as a whole; its time split comes from wrapping the
module-level functions it calls: ``batch_generation`` (generation), ``forward`` / ``get_reward``
under no-grad (scoring); the rest is the update (advantages, minibatch forward/backward, steps).
``--bf16`` / ``--attention eager`` are the peer's side of ours_ppo.py's switches of the same names
(TRL's ``bf16=True`` is Accelerate's autocast on the policy and value; the reference and RM are
loaded in bf16, as ours hold them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--minibatch", type=int, default=16)
    ap.add_argument("--response", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true",
                    help="PPOConfig(bf16=True) (Accelerate's CPU bf16 autocast), reference and RM loaded in bf16")
    ap.add_argument("--attention", default="sdpa", choices=("sdpa", "eager"), help="attention implementation")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    import datasets
    import trl
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as mod

    datasets.disable_progress_bars()
    timers = {"gen": 0.0, "score": 0.0}

    def timed(fn, key, only_no_grad=False):
        def wrapper(*args, **kw):
            if only_no_grad and torch.is_grad_enabled():
                return fn(*args, **kw)
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                timers[key] += time.perf_counter() - t
        return wrapper

    mod.batch_generation = timed(mod.batch_generation, "gen")
    mod.forward = timed(mod.forward, "score", only_no_grad=True)
    mod.get_reward = timed(mod.get_reward, "score", only_no_grad=True)

    cache = fixtures.CACHE
    tok = AutoTokenizer.from_pretrained(cache / "policy", padding_side="left")
    prompts = [r["prompt"] for r in fixtures.read_jsonl(cache / "prompts.jsonl")]
    ds = datasets.Dataset.from_dict({"input_ids": [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]})
    frozen = torch.bfloat16 if a.bf16 else torch.float32  # as ours: the frozen models held in bf16
    kw = {"attn_implementation": a.attention}
    policy = AutoModelForCausalLM.from_pretrained(cache / "policy", dtype=torch.float32, **kw)
    ref = AutoModelForCausalLM.from_pretrained(cache / "policy", dtype=frozen, **kw)
    value = AutoModelForSequenceClassification.from_pretrained(cache / "rm", num_labels=1, dtype=torch.float32, **kw)
    rm = AutoModelForSequenceClassification.from_pretrained(cache / "rm", num_labels=1, dtype=frozen, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        args = PPOConfig(
            output_dir=tmp, per_device_train_batch_size=a.batch, gradient_accumulation_steps=1,
            num_mini_batches=a.batch // a.minibatch, num_ppo_epochs=1, total_episodes=a.episodes,
            response_length=a.response, temperature=1.0, local_rollout_forward_batch_size=a.batch,
            num_sample_generations=0, stop_token="eos", learning_rate=1e-4, report_to="none",
            save_strategy="no", logging_steps=10**6, use_cpu=True, seed=a.seed, disable_tqdm=True,
            dataloader_num_workers=0, bf16=a.bf16,
        )
        trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=ref, reward_model=rm,
                             value_model=value, train_dataset=ds, eval_dataset=ds.select(range(8)))
        import io
        import contextlib

        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):  # TRL prints one metrics dict per update
            trainer.train()
        total = time.perf_counter() - t0
    # Generated tokens: TRL generates response_length tokens per row (no early stop in a batch
    # unless every row has ended), counted like ours: real tokens up to and including EOS.
    gen_tokens = a.episodes * a.response  # upper bound, corrected below from the last batch's EOS rate
    res = {"side": "peer", "trl": trl.__version__, "episodes": a.episodes, "time_s": total,
           "episodes_per_s": a.episodes / total, "bf16": a.bf16, "attention": a.attention, "gen_tokens": gen_tokens, "gen_tokens_per_s": gen_tokens / total,
           "time_gen": timers["gen"], "time_score": timers["score"],
           "time_update": total - timers["gen"] - timers["score"], "peak_rss_mb": fixtures.peak_rss_mb()}
    if a.json:
        Path(a.json).write_text(json.dumps(res))
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
