"""Per family and rubric attribute: how often a model's answers fail, greedy and at T = 1.

World v2 asks this of the SFT model before any PPO run: where does it fail, and along which lines
a verifier can see (DESIGN.md, "The embedded world"). Prints a markdown table (rows: families,
then categories and "all"; columns: mean gold and each attribute's rate) per temperature, and
writes the same numbers as JSON with ``--json``.

    python scripts/rubric_table.py --model runs/default/sft --prompts runs/default/world/eval_prompts.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

COLUMNS = ("fails_attempt", "fails_constraint", "hallucination", "inappropriate", "incorrect",
           "padding", "exploit", "over_refusal", "runs_on")


def table(prompts, responses) -> dict[str, dict[str, float]]:
    from instructrl.evaluate import rubric_details, rubric_rates
    from instructrl.world.spec import FAMILY_CATEGORY

    details = rubric_details(prompts, responses)
    groups: dict[str, list[dict]] = defaultdict(list)
    for d in details:
        groups[d["family"]].append(d)
        groups["[" + FAMILY_CATEGORY[d["family"]] + "]"].append(d)
        groups["[all]"].append(d)
    out = {}
    for name, ds in groups.items():
        row = {"n": len(ds), "gold": float(np.mean([d["score"] for d in ds]))}
        row.update(rubric_rates(ds))
        out[name] = row
    return out


def markdown(rows: dict[str, dict[str, float]]) -> str:
    head = "| family | n | gold | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (3 + len(COLUMNS))]
    order = sorted((k for k in rows if not k.startswith("[")), key=lambda k: -rows[k]["n"])
    order += sorted(k for k in rows if k.startswith("[") and k != "[all]") + ["[all]"]
    for k in order:
        r = rows[k]
        cells = [f"{r[c]:.2f}" if c in r else "" for c in COLUMNS]
        lines.append(f"| {k} | {r['n']} | {r['gold']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="policy folder (e.g. runs/default/sft)")
    ap.add_argument("--prompts", required=True, help="world prompts JSONL (e.g. world/eval_prompts.jsonl)")
    ap.add_argument("--n", type=int, default=1000, help="first N prompts")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the tables here")
    ap.add_argument("--samples", type=int, default=0, help="print this many answers per temperature")
    a = ap.parse_args(argv)

    from instructrl.data.readers import read_prompts
    from instructrl.models import load_policy
    from instructrl.rollout import generate

    prompts = [r.prompt for r in read_prompts(a.prompts)][: a.n]
    model, tok = load_policy(a.model)
    n_pos = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024)
    result = {}
    for t in a.temperatures:
        answers = generate(model, tok, prompts, a.max_new_tokens, t, 128, a.seed,
                           max_prompt_len=n_pos - a.max_new_tokens)
        rows = table(prompts, answers)
        result[str(t)] = rows
        print(f"\n## {a.model}, T = {t:g} ({len(prompts)} prompts)\n")
        print(markdown(rows))
        for p, r in list(zip(prompts, answers))[: a.samples]:
            print(f"  {p!r} -> {r!r}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
