"""Reward-model size (and data) vs accuracy: train one RM per base model on the same comparisons.

Gao et al. 2022 (footnote 3) found proxy RMs under ~3M parameters near chance; the paper uses a 6B
RM for a 1.3B policy. This trains the RM stage (`instructrl rm`, the run's own config) from each
given model folder on a finished pipeline run's comparisons and reports its validation accuracy
and its accuracy on the held-out labelers' rankings, as a markdown table (and JSON with --json).

    python scripts/rm_size_curve.py --run runs/default \\
        --models small=runs/default/base_small large=runs/default/base_large

With ``--n-prompts 500 1000 2000`` each model is trained once per size on the first N ranked
prompts of the comparisons (the data curve: Gao et al. found fewer than ~2,000 comparisons little
better than chance); ``--data`` replaces the run's comparison files (e.g. to add rankings made with
``instructrl compare`` on more prompts). The held-out labelers' rankings stay the run's own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished pipeline run folder (its comparisons and world)")
    ap.add_argument("--models", nargs="+", required=True, help="NAME=FOLDER: the models to start RMs from")
    ap.add_argument("--out", default=None, help="where the RMs go (default: RUN/rm_sizes)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RM config overrides")
    ap.add_argument("--data", nargs="+", default=None,
                    help="comparison JSONL files read in order as one set (default: the run's, held-out excluded)")
    ap.add_argument("--n-prompts", nargs="+", type=int, default=None, metavar="N",
                    help="train on the first N ranked prompts, once per N (default: all of them)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    from instructrl import config as C
    from instructrl.models import load_policy, n_params
    from instructrl.rm import train_reward_model

    run = Path(a.run)
    pipe = C.from_dict(C.PipelineConfig, C.load_yaml(run / "config.yaml"))
    cfg = C.apply_overrides(pipe.rm, a.set)
    data = a.data or [str(p) for p in sorted(run.glob("comparisons*.jsonl")) if "heldout" not in p.name]
    out_root = Path(a.out) if a.out else run / "rm_sizes"
    lines = [ln for f in data for ln in Path(f).read_text().splitlines() if ln.strip()]
    sizes = a.n_prompts or [len(lines)]
    if any(n < 1 or n > len(lines) for n in sizes):
        raise SystemExit(f"--n-prompts: each N must lie in 1..{len(lines)} (the ranked prompts in {data})")
    train_data = {}  # N -> what the RM stage reads: the files themselves, or their first N ranked prompts
    for n in sizes:
        if n == len(lines):
            train_data[n] = data if len(data) > 1 else data[0]
        else:
            out_root.mkdir(parents=True, exist_ok=True)
            train_data[n] = str(out_root / f"comparisons_first{n}.jsonl")
            Path(train_data[n]).write_text("\n".join(lines[:n]) + "\n")
    rows = []
    for spec in a.models:
        name, folder = spec.split("=", 1)
        params = n_params(load_policy(folder)[0])
        for n in sizes:
            tag = name if a.n_prompts is None else f"{name}_n{n}"
            m = train_reward_model(cfg, folder, train_data[n], str(out_root / tag),
                                   demonstrations=str(run / "world" / "demonstrations.jsonl"),
                                   heldout_data=str(run / "comparisons_heldout.jsonl"), overwrite=True, verbose=False)
            rows.append({"model": name, "params": params, "n_prompts": n, "val_accuracy": m.get("val_accuracy"),
                         "heldout_labeler_accuracy": m.get("heldout_labeler_accuracy"), "time_s": m.get("time_s")})
            print(f"{tag}: {params / 1e6:.2f}M params, {n} ranked prompts, val {m.get('val_accuracy'):.3f}, "
                  f"held-out labelers {m.get('heldout_labeler_accuracy'):.3f}", flush=True)
    print("\n| RM initialised from | parameters | ranked prompts | validation accuracy | held-out labelers' accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['n_prompts']} | {r['val_accuracy']:.3f} | "
              f"{r['heldout_labeler_accuracy']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
