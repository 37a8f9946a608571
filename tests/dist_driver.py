"""Run one stage in this process (launched by tests/test_distributed.py, 1 or 2 processes)."""

import json
import os
import sys

import torch

torch.set_num_threads(1)

from instructrl import ppo, rm, sft  # noqa: E402
from instructrl.config import PPOConfig, RMConfig, SFTConfig  # noqa: E402

stage, model, data, out, bs = sys.argv[1:6]
if stage == "sft":
    sft.train_sft(SFTConfig(epochs=2, batch_size=int(bs), lr=1e-2, max_len=64, seed=0), model, data, out)
elif stage == "rm":
    # chunk_rows=2: several forwards before the one backward of each step, under DDP too
    rm.train_reward_model(RMConfig(epochs=2, batch_size=int(bs), lr=1e-2, max_len=64, val_fraction=0.0, seed=0, chunk_rows=2),
                          model, data, out, verbose=False)
else:
    rank = int(os.environ.get("RANK", "0"))

    def score_fn(prompts, responses):  # a known, rank-dependent reward: the log shows the rank mean
        return torch.full((len(prompts),), 1.0 + 2.0 * rank)

    reward = sys.argv[6]
    extra = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}  # more PPOConfig fields
    m = ppo.train_ppo(PPOConfig(**{**dict(total_episodes=4, batch_size=int(bs), minibatch_size=1, max_new_tokens=5,
                                    warmup_updates=1, seed=0), **extra}),
                model, reward, data, out, score_fn=score_fn, progress=False)
    with open(f"{out}.rank{rank}.json", "w") as fh:
        json.dump({"responses_seen": m.get("response_length")}, fh)
