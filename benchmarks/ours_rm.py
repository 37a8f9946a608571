"""Our side of the RM benchmark: instructrl's K-wise reward-model step (rm.run's inner loop).

One epoch over the ranking file: batches of `--seqs` sequences (seqs / K prompts), ONE forward
per response (`models.chunked_sequence_scores`, in length-sorted chunks of `--chunk-rows` rows as
`rm.chunk_rows` does; 0 = the whole batch in one forward; and with `rm.share_prefix`, the default,
each prompt once for its K responses, `models.prefix_shared_scores`), `losses.kwise_ranking_loss`
over all C(K,2) comparisons of each prompt, AdamW step. Figure: comparisons/s.

    python benchmarks/ours_rm.py --k 4 [--seqs 72] [--chunk-rows N] [--no-share-prefix] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seqs", type=int, default=72, help="sequences per batch (prompts = seqs // K)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-rows", type=int, default=None, help="rows per forward (default: RMConfig's chunk_rows)")
    ap.add_argument("--no-share-prefix", action="store_true", help="every response with its whole prompt")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from instructrl import losses
    from instructrl.data.readers import read_rankings
    from instructrl.config import RMConfig
    from instructrl.models import chunked_sequence_scores, load_reward_model, prefix_shared_scores
    from instructrl.rm import encode_rankings, flatten_prompts
    from instructrl.train_utils import make_optimizer

    cache = fixtures.build()
    rm, tok = load_reward_model(cache / "rm")
    rm.train()
    enc = encode_rankings(tok, read_rankings(cache / f"rank_k{a.k}.jsonl"), 256, "error")
    opt = make_optimizer(rm, 1e-5, 0.9, 0.95, weight_decay=0.0, eps=1e-8)
    per = max(1, a.seqs // a.k)
    chunk_rows = RMConfig().chunk_rows if a.chunk_rows is None else a.chunk_rows
    share = RMConfig().share_prefix and not a.no_share_prefix
    comps = 0
    t0 = time.perf_counter()
    for b0 in range(0, len(enc), per):
        seqs, group, rank = flatten_prompts(enc[b0:b0 + per])
        if share:
            scores = prefix_shared_scores(rm, [e["seqs"] for e in enc[b0:b0 + per]], tok.pad_token_id, chunk_rows)
        else:
            scores = chunked_sequence_scores(rm, seqs, tok.pad_token_id, chunk_rows)
        loss, stats = losses.kwise_ranking_loss(scores, group, rank)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        comps += int(stats["num_pairs"])
    total = time.perf_counter() - t0
    res = {"side": "ours", "k": a.k, "chunk_rows": chunk_rows, "share_prefix": share, "comparisons": comps, "time_s": total, "comparisons_per_s": comps / total,
           "peak_rss_mb": fixtures.peak_rss_mb()}
    if a.json:
        Path(a.json).write_text(json.dumps(res))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
