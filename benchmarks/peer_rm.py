"""The peer's side of the RM benchmark: TRL 1.16's RewardTrainer on the same comparisons, expanded
to chosen/rejected pairs (each of a prompt's C(K,2) ranked pairs is one example: two forwards).

    benchmarks/.venv-peer-rm/bin/python benchmarks/peer_rm.py --k 4 [--seqs 72] [--json OUT]

Batch: seqs / 2 pairs (= `--seqs` sequences, as ours), one epoch, fp32, 2 threads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seqs", type=int, default=72)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    import datasets
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    datasets.disable_progress_bars()
    cache = fixtures.CACHE
    rows = fixtures.read_jsonl(cache / f"rank_k{a.k}.jsonl")
    pairs = {"prompt": [], "chosen": [], "rejected": []}
    for r in rows:
        order = r["ranking"]  # best .. worst response indices
        for i, j in itertools.combinations(range(len(order)), 2):
            pairs["prompt"].append(r["prompt"])
            pairs["chosen"].append(r["responses"][order[i]])
            pairs["rejected"].append(r["responses"][order[j]])
    ds = datasets.Dataset.from_dict(pairs)
    tok = AutoTokenizer.from_pretrained(cache / "rm")
    model = AutoModelForSequenceClassification.from_pretrained(cache / "rm", num_labels=1, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        args = RewardConfig(output_dir=tmp, per_device_train_batch_size=a.seqs // 2, num_train_epochs=1,
                            learning_rate=1e-5, report_to="none", save_strategy="no", logging_steps=10**6,
                            use_cpu=True, disable_tqdm=True, max_length=256, dataloader_num_workers=0, seed=0,
                            # TRL's RewardConfig defaults both to True; ours trains in fp32 without
                            # checkpointing. bf16 autocast is emulated (~9x slower) on a CPU without
                            # AVX512-BF16/AMX, and would be a faster other precision on one with it.
                            bf16=False, gradient_checkpointing=False)
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            trainer.train()
        total = time.perf_counter() - t0
    n = len(ds)
    res = {"side": "peer", "trl": trl.__version__, "k": a.k, "comparisons": n, "time_s": total,
           "comparisons_per_s": n / total, "peak_rss_mb": fixtures.peak_rss_mb()}
    if a.json:
        Path(a.json).write_text(json.dumps(res))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
