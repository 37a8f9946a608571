"""Reward model (RM) training on K-wise rankings — step 2 of InstructGPT ([IG] §3.5, App. C.2).

One loop, top to bottom: turn the SFT model into a scalar-head RM, read and tokenize every ranking
(a bad record stops the run before anything is written), hold out some prompts for validation,
then for each step: take `batch_size` PROMPTS, flatten their K responses into one batch of
sum(K) sequences, run the model on it (exactly K forward passes per prompt, never
C(K,2)·2: one forward per chunk of `chunk_rows` of those sequences sorted by length, so little
of it is padding; with `share_prefix` the prompt's tokens run once and its K responses continue
from its cached keys and values), read each score at the EOS, and minimise the K-wise loss
`-1/C(K,2) · Σ_{w ranked above l} log σ(r_w - r_l)` per prompt, averaged over prompts.
After training, shift the score so the labelers' demonstrations have mean 0, and save a plain
`AutoModelForSequenceClassification` folder.

What follows the paper: the SFT model with the unembedding replaced by a scalar head (initialised
N(0, 1/sqrt(d+1)), [ST]/[NB]); all comparisons of a prompt are one batch element; one epoch by
default (more overfits); cosine decay to 10%, no warmup; bias normalisation on demonstrations.

Where we depart from it (or fill a gap):
* Ties are dropped from the loss and from accuracy, and a prompt's normaliser is then its number
  of non-tied pairs (see losses.kwise_ranking_loss).
* The validation split is by prompt (a prompt ranked twice never sits on both sides), chosen by a
  seeded shuffle; the paper's RM validation set is a separate prompt set.
* Reported accuracy counts an exact score tie as wrong; calibration bins are over every non-tied
  pair by the model's confidence max(σ(m), 1 - σ(m)), m = score margin, against how often the
  response it favoured was the labeler's choice ([N+] reports RMs to be under-confident).
* Dropout is off during RM training ([ZG], [N+]); the paper does not say.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from pathlib import Path
from types import SimpleNamespace

import torch

from instructrl import distributed, lora, losses
from instructrl.config import validate
from instructrl.data import render
from instructrl.data.collate import encode_demonstration, encode_ranking, pad_right
from instructrl.data.readers import read_demonstrations, read_rankings
from instructrl.errors import DataError
from instructrl.models import (
    add_score_bias,
    n_params,
    pick_device,
    chunked_sequence_scores,
    prefix_shared_scores,
    prefix_sharing_mismatch,
    reward_model_from_causal_lm,
    score_grouped_sequences,
    score_sequences,
)
from instructrl.run import Run, rng_state, set_rng_state
from instructrl.train_utils import (
    Timer,
    cosine_lr,
    fit_max_len,
    make_optimizer,
    progress,
    seed_everything,
    set_lr,
    warn_unknown_tokens,
)

log = logging.getLogger(__name__)

LOG_FIELDS = ["step", "epoch", "loss", "accuracy", "margin", "lr", "grad_norm", "prompts_per_s", "val_loss", "val_accuracy"]
CALIBRATION_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# ---------------------------------------------------------------------------------------------
# Plain helpers
# ---------------------------------------------------------------------------------------------


def read_rankings_for_training(path):
    """read_rankings, with a hint when the file holds responses nobody has ranked yet."""
    try:
        return read_rankings(path)
    except DataError as e:
        if e.field == "ranking" and e.message.startswith("missing"):
            raise DataError(e.path, e.line, e.field,
                            "missing field: this line has responses but no ranking (an unranked file, such as "
                            "`instructrl compare --labelers none` writes); add \"ranking\": [best..worst response "
                            "indices] to every line before training a reward model") from None
        raise


def encode_rankings(tokenizer, rankings, max_len: int, truncation: str, fmt=None) -> list[dict]:
    """Tokenize every ranking once: `{"seqs": K token lists (prompt + response + EOS), "rank": K ranks}`.

    Raises the reader's DataError (file, line, field) for a too-long sequence, before training.
    """
    out = []
    for r in rankings:
        enc = encode_ranking(tokenizer, r, max_len, truncation, fmt)  # rendered by `fmt` (instructrl.data.render)
        out.append({"seqs": [e["input_ids"] for e in enc], "rank": r.ranks()})
    return out


def collate_prompts(encoded: list[dict], pad_id: int):
    """Flatten the K responses of each prompt into one right-padded batch of sum(K) sequences.

    Returns `(input_ids (N,T), attention_mask (N,T) bool, group (N,), rank (N,))`: `group` is the
    prompt's position in `encoded`, `rank` 0 = best (ties share a rank).
    """
    seqs, group, rank = flatten_prompts(encoded)
    ids, attn = pad_right(seqs, pad_id)
    return ids, attn, group, rank


def split_by_prompt(rankings, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): a seeded share `val_fraction` of the distinct prompts goes to validation."""
    prompts = sorted({r.prompt for r in rankings})
    random.Random(seed).shuffle(prompts)
    n_val = 0
    if val_fraction > 0 and len(prompts) >= 2:
        n_val = min(len(prompts) - 1, max(1, round(val_fraction * len(prompts))))
    val_prompts = set(prompts[:n_val])
    train = [i for i, r in enumerate(rankings) if r.prompt not in val_prompts]
    val = [i for i, r in enumerate(rankings) if r.prompt in val_prompts]
    return train, val


def ranking_metrics(scores: torch.Tensor, encoded: list[dict]) -> dict:
    """Pairwise accuracy, mean margin, K-wise loss and a calibration table over all non-tied pairs.

    `scores` is flat in the order of `encoded` (prompt by prompt, response by response).
    """
    correct, margins, conf, per_prompt_loss = [], [], [], []
    pos = 0
    for e in encoded:
        s = scores[pos:pos + len(e["seqs"])].tolist()
        pos += len(e["seqs"])
        r = e["rank"]
        pair_losses = []
        for w in range(len(s)):
            for l in range(len(s)):
                if r[w] < r[l]:
                    m = s[w] - s[l]
                    margins.append(m)
                    correct.append(m > 0)  # an exact tie counts as wrong, as in the loss's accuracy
                    p = 1.0 / (1.0 + math.exp(-m)) if m > -60 else 0.0
                    conf.append((max(p, 1.0 - p), m > 0))
                    pair_losses.append(math.log1p(math.exp(-m)) if m > -30 else -m)
        if pair_losses:
            per_prompt_loss.append(sum(pair_losses) / len(pair_losses))
    n = len(correct)
    table = []
    for lo, hi in zip(CALIBRATION_BINS[:-1], CALIBRATION_BINS[1:]):
        inside = [(c, ok) for c, ok in conf if lo <= c < hi or (hi == 1.0 and c == 1.0)]
        table.append({
            "bin": f"{lo:.1f}-{hi:.1f}",
            "count": len(inside),
            "mean_confidence": sum(c for c, _ in inside) / len(inside) if inside else None,
            "accuracy": sum(ok for _, ok in inside) / len(inside) if inside else None,
        })
    return {
        "accuracy": sum(correct) / n if n else None,
        "margin": sum(margins) / n if n else None,
        "loss": sum(per_prompt_loss) / len(per_prompt_loss) if per_prompt_loss else None,
        "pairs": n,
        "prompts": len(encoded),
        "calibration": table,
    }


def evaluate(model, encoded: list[dict], pad_id: int, batch_size: int) -> dict:
    seqs = [s for e in encoded for s in e["seqs"]]
    groups, start = [], 0  # each prompt's K responses share its tokens (models.SHARE_PREFIX_SCORING)
    for e in encoded:
        groups.append(list(range(start, start + len(e["seqs"]))))
        start += len(e["seqs"])
    return ranking_metrics(score_grouped_sequences(model, seqs, groups, pad_id, batch_size), encoded)


def format_calibration(table: list[dict]) -> str:
    lines = ["  confidence  pairs  mean_conf  accuracy"]
    for row in table:
        mc = "-" if row["mean_confidence"] is None else f"{row['mean_confidence']:.3f}"
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        lines.append(f"  {row['bin']:>10}  {row['count']:>5}  {mc:>9}  {acc:>8}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Setup and step pieces
# ---------------------------------------------------------------------------------------------


def read_data(cfg, tok, data, demonstrations, heldout_data, fmt=None) -> SimpleNamespace:
    """Read and tokenize everything now, so that a bad line fails before any training: the
    rankings (one file or several, in order, as one set), the demonstrations (for the bias shift)
    and the held-out labelers' rankings; every prompt rendered by `fmt` (instructrl.data.render)."""
    files = [data] if isinstance(data, (str, Path)) else list(data)
    rankings = [r for path in files for r in read_rankings_for_training(path)]
    render.announce("rm", fmt or render.legacy_format(tok, None), tok, rankings[0])
    encoded = encode_rankings(tok, rankings, cfg.max_len, cfg.truncation, fmt)
    warn_unknown_tokens(tok, [(f"{r.source}:{r.line}", ids) for r, e in zip(rankings, encoded) for ids in e["seqs"]],
                        "ranked responses")
    demo_seqs = [encode_demonstration(tok, x, cfg.max_len, cfg.truncation, fmt)["input_ids"]
                 for x in read_demonstrations(demonstrations)] if demonstrations else []
    heldout = (encode_rankings(tok, read_rankings_for_training(heldout_data), cfg.max_len, cfg.truncation, fmt)
               if heldout_data else [])
    return SimpleNamespace(rankings=rankings, encoded=encoded,
                           demo_seqs=demo_seqs, heldout=heldout)


def flatten_prompts(encoded: list[dict]) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """The K responses of each prompt as one list of sum(K) sequences, with `group` (N,), the
    prompt's position in `encoded`, and `rank` (N,), 0 = best (ties share a rank)."""
    seqs, group, rank = [], [], []
    for g, e in enumerate(encoded):
        seqs += e["seqs"]
        group += [g] * len(e["seqs"])
        rank += e["rank"]
    return seqs, torch.tensor(group, dtype=torch.long), torch.tensor(rank, dtype=torch.long)


def kwise_step(train_rm, batch: list[dict], w: float, pad: int, dev, dist, chunk_rows: int = 0,
               share_prefix: bool = False):
    """Score every response of `batch`'s prompts (exactly K per prompt; the score read at the EOS)
    and take the K-wise loss over all their C(K,2) pairs, each prompt one batch element ([IG] Eq. 1).
    The sum(K) sequences go through the model in chunks of `chunk_rows` sorted by length
    (`models.chunked_sequence_scores`; 0 = one forward over all of them, right padded to the
    longest): the same scores and loss to float rounding, one backward either way. `share_prefix`:
    each prompt's tokens run once for its K responses (`models.prefix_shared_scores`), the same
    again to float rounding.
    Distributed: the loss is reweighted so DDP's gradient mean is the mean over all
    processes' prompts; the statistics are over all processes' pairs."""
    seqs, group, rank = flatten_prompts(batch)
    if share_prefix:
        scores = prefix_shared_scores(train_rm, [e["seqs"] for e in batch], pad, chunk_rows, dev)
    else:
        scores = chunked_sequence_scores(train_rm, seqs, pad, chunk_rows, dev)
    loss, stats = losses.kwise_ranking_loss(scores, group.to(dev), rank.to(dev))
    if dist.distributed:
        n_local = w * float(stats["num_groups"])
        loss = loss * (n_local * dist.world_size / max(dist.sum(n_local), 1.0))
        pairs = w * float(stats["num_pairs"])
        n_pairs = max(dist.sum(pairs), 1.0)
        stats = {"accuracy": dist.sum(float(stats["accuracy"]) * pairs) / n_pairs,
                 "margin": dist.sum(float(stats["margin"]) * pairs) / n_pairs}
    return loss, stats


def check_prefix_sharing(rm, cfg, batch: list[dict], pad: int, dev, dist) -> tuple[bool, str]:
    """Whether `rm.share_prefix` can be used for this run: asked for, a single process (the DDP /
    FSDP wrappers take whole sequences), no gradient checkpointing (it turns the KV cache off), and
    on the run's first batch the shared-prefix scores equal the whole-sequence ones (no gradients)
    within 1e-4 + 1e-4 x the largest score. Returns (use it, why not)."""
    if not cfg.share_prefix:
        return False, "off"
    if dist.distributed:
        return False, "distributed run"
    if cfg.gradient_checkpointing or getattr(rm, "is_activation_checkpointing", False):
        return False, "gradient checkpointing"
    why = prefix_sharing_mismatch(rm, [e["seqs"] for e in batch], pad, cfg.chunk_rows, dev)
    return (False, f"{why} on the first batch") if why else (True, "")


def normalise_bias(rm, demo_seqs, pad: int, batch_size: int) -> dict:
    """Shift the score so the demonstrations have mean 0 ([IG] §3.5; the loss is shift-invariant)."""
    if not demo_seqs:
        return {}
    before = float(score_sequences(rm, demo_seqs, pad, batch_size).mean())
    add_score_bias(rm, -before)
    after_scores = score_sequences(rm, demo_seqs, pad, batch_size)
    after = float(after_scores.mean())
    if abs(after) > 1e-3 * max(1.0, abs(before)):
        raise RuntimeError(f"bias normalisation failed: demonstrations score mean {after} after shifting by {-before}")
    return {"demo_score_mean_before": before, "demo_score_mean": after,
            "demo_score_std": float(after_scores.std()) if len(demo_seqs) > 1 else 0.0,
            "score_bias": -before, "n_demonstrations": len(demo_seqs)}


def restore(state: dict, rm, optimizer, guard) -> int:
    """Put a checkpoint back (weights, optimizer, RNGs, bad-step streak); returns its step."""
    rm.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    guard.streak = state["bad_streak"]
    return state["step"]


def final_metrics(epoch_stats, val, held, demo, train_set, total_steps, rm, timer) -> dict:
    last = epoch_stats[-1] if epoch_stats else {}
    return {
        "train_loss": sum(r["loss"] for r in epoch_stats) / max(len(epoch_stats), 1),
        "train_accuracy": sum(r["accuracy"] for r in epoch_stats) / max(len(epoch_stats), 1),
        "final_train_step_loss": last.get("loss"),
        "val_accuracy": val["accuracy"] if val else None,
        "val_loss": val["loss"] if val else None,
        "val_margin": val["margin"] if val else None,
        "val_pairs": val["pairs"] if val else 0,
        "val_prompts": val["prompts"] if val else 0,
        "calibration": val["calibration"] if val else [],
        "heldout_labeler_accuracy": held["accuracy"] if held else None,
        "heldout_margin": held["margin"] if held else None,
        "heldout_pairs": held["pairs"] if held else 0,
        "heldout_calibration": held["calibration"] if held else [],
        **demo,
        "train_prompts": len(train_set),
        "train_comparisons": sum(sum(1 for a in e["rank"] for b in e["rank"] if a < b) for e in train_set),
        "steps": total_steps,
        "n_params": n_params(rm),
        "time_s": timer.elapsed,
    }


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def train_reward_model(cfg, model: str, data: str | list[str], out: str, demonstrations: str | None = None,
                       heldout_data: str | None = None, overwrite: bool = False, *, device: str | None = None,
                       verbose: bool = True, resume: bool | str = False) -> dict:
    """Train a reward model from the causal LM in folder `model` on the rankings in `data` (one file or
    several, read in order as one set: e.g. the comparisons of each round of iterated RLHF); write it to `out`.

    Every `cfg.checkpoint_every` steps the full training state goes to `<out>.checkpoint/`;
    `resume=True` continues from it (an error if there is none or it is another run's), "auto"
    continues when a matching one exists. The result equals an uninterrupted run bit for bit.

    Returns the metrics also written to `out/metrics.json`.
    """
    timer = Timer()
    # 0. Check the config, the inputs and the output folder before any model loads.
    validate(cfg)
    # accelerate launch / torchrun: DDP, FSDP or DeepSpeed through Accelerate; otherwise a no-op.
    dist = distributed.setup(cfg.mixed_precision)
    inputs = {"model": model, "data": data, "demonstrations": demonstrations, "heldout_data": heldout_data}
    run = Run.start("rm", cfg, out, inputs, overwrite, resume, dist=dist, max_bad_steps=cfg.max_bad_steps)
    with run:
        seed_everything(cfg.seed)
        dev = dist.device(pick_device(device or "auto"))

        # 1. The RM: the (SFT) model with its unembedding replaced by a fresh scalar head; dropout off.
        rm, tok = reward_model_from_causal_lm(model, seed=cfg.seed)
        rm = lora.prepare(rm, cfg, model, task="SEQ_CLS").to(dev).train()  # gradient checkpointing, LoRA (head in full)
        cfg = fit_max_len(cfg, rm)  # a record longer than the context: DataError (file, line) or truncation
        pad = tok.pad_token_id
        # How prompts read to the model: as the SFT model was trained (its prompt_format.json) unless asked
        # otherwise, which is an error when it differs from that record. Saved with the RM for PPO.
        files = [data] if isinstance(data, (str, Path)) else list(data)
        fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, model, files + [demonstrations, heldout_data])
        render.check_matches(fmt, model, "the model")
        cfg = run.cfg = dataclasses.replace(cfg, prompt_format=fmt.kind, plain_template=fmt.plain_template)

        # 2. Read and tokenize everything now: a bad line fails here, before any output exists.
        d = read_data(cfg, tok, data, demonstrations, heldout_data, fmt)
        render.write_record(run.staging, fmt, tok, d.rankings[0])

        # 3. Hold out whole prompts for validation (seeded); optimizer; resume.
        train_idx, val_idx = split_by_prompt(d.rankings, cfg.val_fraction, cfg.seed)
        train_set = [d.encoded[i] for i in train_idx]
        val_set = [d.encoded[i] for i in val_idx]
        order_rng = random.Random(cfg.seed)
        global_batch = cfg.batch_size * dist.world_size  # batch_size is per process
        total_steps = math.ceil(len(train_set) / global_batch) * cfg.epochs
        optimizer = make_optimizer(rm, cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay, fused=cfg.fused_adamw)
        train_rm, optimizer = dist.prepare_scorer(rm, optimizer)  # the DDP/FSDP view trains; `rm` evaluates and saves
        # The prompt order is replayed from the seeded order_rng (one shuffle per epoch), so the
        # position in the rankings is the step count.
        resumed = run.resume_state()  # weights, optimizer, RNGs, log rows
        logger = run.logger(LOG_FIELDS, rows=resumed["log"] if resumed else ())
        start_step = restore(resumed, rm, optimizer, run.guard) if resumed else 0

        # 4. The loop. Each prompt's tokens once for its K responses, where the model allows it (checked).
        share_prefix, why_not = check_prefix_sharing(rm, cfg, train_set[:global_batch], pad, dev, dist)
        if cfg.share_prefix and not share_prefix:
            log.warning("rm: share_prefix off for this run (%s); each response is scored with its whole prompt", why_not)
        bar = progress(total_steps, "rm")
        step, epoch_stats = 0, []
        for epoch in range(1, cfg.epochs + 1):
            order = list(range(len(train_set)))
            order_rng.shuffle(order)
            epoch_stats = []
            for b0 in range(0, len(order), global_batch):
                if step < start_step:  # done before the checkpoint we resumed from
                    step += 1
                    bar.update(1)
                    if step == start_step:
                        epoch_stats = list(resumed["epoch_stats"])
                    continue
                t0 = Timer()
                lr = cosine_lr(step, total_steps, cfg.lr, cfg.min_lr_ratio)  # no warmup, cosine to 10%
                set_lr(optimizer, lr)
                # 4a. batch_size prompts -> sum(K) sequences scored in length-sorted chunks of chunk_rows (K passes per prompt, never C(K,2)·2);
                #     all C(K,2) comparisons of a prompt form one batch element ([IG] Eq. 1).
                #     Distributed: each process takes its share of the global batch of prompts.
                batch, w = dist.shard([train_set[i] for i in order[b0:b0 + global_batch]])
                loss, stats = kwise_step(train_rm, batch, w, pad, dev, dist, cfg.chunk_rows, share_prefix)
                # 4b. Backward, clip, step; a NaN/inf loss or gradient skips the step (and stops after N).
                dist.backward(loss)
                grad_norm = dist.clip_grad_norm_(rm.parameters(), cfg.grad_clip)
                step += 1
                loss_value = dist.sum(float(loss.detach()) / dist.world_size if dist.distributed else float(loss.detach()))
                good = run.guard.ok(step, loss_value, grad_norm)
                if good:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                # 4c. Log.
                row = {"step": step, "epoch": epoch, "loss": loss_value, "accuracy": float(stats["accuracy"]),
                       "margin": float(stats["margin"]), "lr": lr, "grad_norm": float(grad_norm),
                       "prompts_per_s": len(batch) / max(t0.elapsed, 1e-9)}
                if good:
                    epoch_stats.append(row)
                logger.log(**row)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}", lr=f"{lr:.2e}")
                # 4d. Checkpoint the full state (atomically), only after a good step.
                run.checkpoint(step, total_steps, good, lambda: {
                    "step": step, "model": rm.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
                    "epoch_stats": epoch_stats, "bad_streak": run.guard.streak, "log": logger.rows})
            if step < start_step:
                continue  # this epoch's validation is in the checkpoint too
            # 4e. Validation accuracy at the end of each epoch (the paper saw overfitting after one).
            if val_set:
                v = evaluate(rm, val_set, pad, 4 * cfg.batch_size)
                logger.log(step=step, epoch=epoch, val_loss=v["loss"], val_accuracy=v["accuracy"])
                bar.write(f"rm epoch {epoch}/{cfg.epochs}: val_accuracy={v['accuracy']:.4f}  val_loss={v['loss']:.4f}")
        bar.close()
        rm = lora.for_saving(rm, cfg.lora_merge)  # LoRA: merge now (same scores), or keep the adapter
        rm.eval()

        # 5. Final evaluation: held-out comparisons, and comparisons by held-out labelers.
        val = evaluate(rm, val_set, pad, 4 * cfg.batch_size) if val_set else None
        held = evaluate(rm, d.heldout, pad, 4 * cfg.batch_size) if d.heldout else None

        # 6. Bias normalisation ([IG] §3.5): demonstrations score mean 0; then save.
        demo = normalise_bias(rm, d.demo_seqs, pad, 4 * cfg.batch_size)
        metrics = final_metrics(epoch_stats, val, held, demo, train_set, total_steps, rm, timer)
        metrics["share_prefix"] = share_prefix
        if verbose:
            print(summary(metrics))
        rm.to("cpu")
        run.finish(metrics, [("", rm, tok)], merge=cfg.lora_merge)
    return metrics


def summary(m: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    lines = [f"rm: {m['train_prompts']} training prompts ({m['train_comparisons']} comparisons), {m['steps']} steps, {m['time_s']:.1f}s",
             f"  val accuracy {fmt(m['val_accuracy'])} over {m['val_pairs']} pairs, mean margin {fmt(m['val_margin'])}, loss {fmt(m['val_loss'])}"]
    if m.get("heldout_labeler_accuracy") is not None:
        lines.append(f"  held-out labelers: accuracy {fmt(m['heldout_labeler_accuracy'])} over {m['heldout_pairs']} pairs")
    if "demo_score_mean" in m:
        lines.append(f"  demonstrations: mean score {m['demo_score_mean_before']:.4f} -> {m['demo_score_mean']:.2e} after bias shift")
    if m["calibration"]:
        lines.append("  calibration (validation pairs):\n" + format_calibration(m["calibration"]))
    return "\n".join(lines)


__all__ = ["train_reward_model", "encode_rankings", "kwise_step", "normalise_bias", "collate_prompts", "split_by_prompt",
           "ranking_metrics", "evaluate", "summary"]
