"""Diagnostic: PPO against the world's hidden gold judge (an oracle reward model), outside the method.

    python scripts/oracle_ppo.py --run runs/default --episodes 16384 --out runs/oracle_ppo

The method never lets PPO see the gold judge. This script does, on purpose, to separate the two
things that can stop RLHF from beating SFT in a pipeline run: the reward model (it cannot see what
the labelers rank by) and everything else (PPO, the policy's size, the evaluation). It reruns the
run's PPO stage (same SFT policy and reference, value model from the run's RM, the run's `ppo`
config) with the RM score replaced by ``scale * (gold - 0.5)``, then scores SFT and the oracle
policy on the run's held-out evaluation prompts with the gold judge, greedy (what `eval` reports)
and at T = 1 (the distribution PPO optimises). If the oracle policy gains where the pipeline's PPO
does not, the RM is what stands in the way; if it gains nothing either, no RM would help at this
scale. Writes ``<out>/oracle.json`` and the PPO folder ``<out>/policy``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="A finished `instructrl pipeline` output folder (world prompts).")
    ap.add_argument("--out", required=True, help="Output folder (the oracle policy and oracle.json).")
    ap.add_argument("--episodes", type=int, default=16384, help="PPO episodes (default 16384, 4x the default run's).")
    ap.add_argument("--lr", type=float, default=None, help="Policy learning rate (default: the run's ppo.lr).")
    ap.add_argument("--scale", type=float, default=4.0, help="Reward = scale * (gold - 0.5): gold in [0, 1] mapped "
                                                             "to about the RM's spread (default 4).")
    ap.add_argument("--n-prompts", type=int, default=1000, help="Held-out evaluation prompts (default 1000).")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    a = ap.parse_args(argv)

    import torch

    from instructrl import config as C
    from instructrl import ppo
    from instructrl.data.readers import read_prompts
    from instructrl.evaluate import gold_scores
    from instructrl.models import load_policy
    from instructrl.rollout import generate
    from instructrl.world.judge import gold_score, parse_prompt

    run, out = Path(a.run), Path(a.out)
    needed = [run / "sft", run / "rm", run / "ppo" / "config.yaml", run / "world" / "ppo_prompts.jsonl",
              run / "world" / "eval_prompts.jsonl"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"error: {a.run} is not a finished pipeline folder: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    if out.exists() and not a.overwrite:
        print(f"error: {out} exists (use --overwrite)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)

    # 1. The run's PPO config, with the oracle's episodes / lr; no TensorBoard.
    cfg = C.from_dict(C.PPOConfig, C.load_yaml(run / "ppo" / "config.yaml"))
    cfg = dataclasses.replace(cfg, total_episodes=a.episodes, lr=a.lr if a.lr is not None else cfg.lr,
                              report_to=["none"])

    def oracle(prompts, responses):
        return torch.tensor([a.scale * (gold_score(p, r) - 0.5) for p, r in zip(prompts, responses)])

    # 2. PPO against the gold judge (value model still initialised from the run's RM).
    m = ppo.train_ppo(cfg, policy=str(run / "sft"), reward=str(run / "rm"), prompts=str(run / "world" / "ppo_prompts.jsonl"),
                out=str(out / "policy"), gold_fn=gold_score, score_fn=oracle, overwrite=True)

    # 3. Gold of SFT and of the oracle policy on held-out prompts: greedy and T = 1, per family.
    prompts = [r.prompt for r in read_prompts(run / "world" / "eval_prompts.jsonl")][: a.n_prompts]
    families = [parse_prompt(p).family for p in prompts]
    result = {"episodes": a.episodes, "lr": cfg.lr, "scale": a.scale, "kl_coef": cfg.kl_coef,
              "final_kl": m.get("kl"), "n_prompts": len(prompts), "gold": {}, "gold_family": {}}
    for name, folder in (("sft", run / "sft"), ("oracle_ppo", out / "policy")):
        model, tok = load_policy(folder)
        for temp in (0.0, 1.0):
            golds = gold_scores(prompts, generate(model, tok, prompts, 48, temp, 64, 0))
            key = f"{name}.T{temp:g}"
            result["gold"][key] = sum(golds) / len(golds)
            if temp == 0.0:
                for fam in sorted(set(families)):
                    sel = [g for g, f in zip(golds, families) if f == fam]
                    result["gold_family"][f"{fam}.{name}"] = sum(sel) / len(sel)
    (out / "oracle.json").write_text(json.dumps(result, indent=2))
    g = result["gold"]
    print(f"held-out gold ({len(prompts)} prompts)   greedy   T = 1")
    for name in ("sft", "oracle_ppo"):
        print(f"  {name:12s}                 {g[f'{name}.T0']:.3f}    {g[f'{name}.T1']:.3f}")
    print(f"oracle PPO's final KL to SFT: {result['final_kl']}; details: {out / 'oracle.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
