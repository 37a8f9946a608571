"""Supervised fine-tuning (SFT) on labeler demonstrations — step 1 of InstructGPT ([IG] §3.5, App. C.1).

One loop, top to bottom: read and tokenize every demonstration (a bad record stops the run before
anything is written), plan the epochs, then for each optimizer step: forward, token cross-entropy
on the response tokens only, backward, clip, AdamW with a cosine LR; evaluate on the validation
demonstrations; keep the best checkpoint; save a plain Hugging Face folder.

What follows the paper: loss on response tokens only (the prompt is masked; the EOS after the
response is counted so the model learns to stop), Adam(0.9, 0.95), cosine decay to 10% of the peak
with no warmup, several epochs, residual dropout (`cfg.dropout`, paper 0.2), and checkpoint
selection by the **reward model's mean score** of samples on validation prompts (`select_by: rm`),
which the paper uses because validation loss overfits after one epoch while RM score keeps rising.
`ptx_fraction` gives the paper's PPO-init SFT (10% pretraining data mixed in, App. C.3).

Where we depart from it (or fill a gap):
* Default selection is by validation loss (`select_by: val_loss`): it needs no reward model, which
  does not exist yet the first time SFT runs. The pipeline can re-select by RM score.
* Loss normalisation: a per-token mean over all response tokens of an optimizer step (accumulated
  micro-batches are weighted by their token counts, so accumulation gives the same gradient as one
  big batch). The paper does not say.
* Pretraining mix: the step's loss is `(1 - f) · L_demonstrations + f · L_pretraining`, both
  per-token means, with `f = ptx_fraction` also the share of sequences in each batch that are
  pretraining windows of `max_len` tokens. The paper says only "10% pretraining data".
* `batch_size` is the micro-batch (sequences per forward pass); an optimizer step sees
  `batch_size · grad_accum` sequences.
* `packing` puts several demonstrations in one row; attention never crosses documents (a
  block-diagonal causal 4-D mask) and positions restart at 0 for each one, so a packed row computes
  exactly what the unpacked rows would. This is a throughput option; the paper does not pack.
* Sampling for RM selection uses temperature 1 (the paper's choice for samples) and the same seed
  at every evaluation, so checkpoints are compared on the same random numbers.
"""

from __future__ import annotations

import dataclasses
import random
import shutil

import torch

from instructrl import distributed, lora, losses
from instructrl.data import render
from instructrl.data.collate import encode_demonstration, pad_right
from instructrl.data.readers import read_demonstrations, read_pretrain_texts
from instructrl.data.stream import token_stream
from instructrl.errors import ConfigError
from instructrl.models import (load_policy, load_reward_model, n_params, pick_device, score_texts, set_dropout,
    set_residual_dropout)
from instructrl.rollout import generate
from instructrl.train_utils import (
    MetricsLogger,
    Timer,
    cosine_lr,
    guard_run_dir,
    make_optimizer,
    progress,
    refuse_input_folders,
    run_files,
    run_fingerprint,
    seed_everything,
    set_lr,
    stage_trackers,
    staging_dir,
)
from instructrl.train_utils import (
    BadStepGuard,
    checkpoint_dir,
    fit_max_len,
    load_checkpoint,
    remove_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

LOG_FIELDS = ["step", "epoch", "loss", "ptx_loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_rm_score"]


# ---------------------------------------------------------------------------------------------
# Batches: plain functions from token lists to tensors
# ---------------------------------------------------------------------------------------------


def plan_rows(examples: list[dict], order: list[int], packing: bool, max_len: int) -> list[list[int]]:
    """Group example indices into rows: one example per row, or (packing) as many consecutive
    examples as fit in `max_len` tokens (next-fit, keeping the shuffled order)."""
    if not packing:
        return [[i] for i in order]
    rows, cur, used = [], [], 0
    for i in order:
        n = len(examples[i]["input_ids"])
        if cur and used + n > max_len:
            rows.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        rows.append(cur)
    return rows


def collate_rows(examples: list[dict], rows: list[list[int]], pad_id: int) -> dict:
    """Tensors for rows of (possibly packed) examples, right padded.

    Returns `input_ids (B,T)`, `loss_mask (B,T)` (True on response tokens + EOS), `position_ids`
    (restarting at 0 for each document), and `attention_mask`: a (B,T) bool mask when no row is
    packed, else a (B,1,T,T) additive float mask that is causal *within* each document and blocks
    attention across documents and onto padding.
    """
    seqs, masks, docs = [], [], []
    for row in rows:
        ids, lm, doc = [], [], []
        for d, i in enumerate(row):
            ids += examples[i]["input_ids"]
            lm += examples[i]["loss_mask"]
            doc += [d] * len(examples[i]["input_ids"])
        seqs.append(ids)
        masks.append(lm)
        docs.append(doc)
    input_ids, attn = pad_right(seqs, pad_id)
    B, T = input_ids.shape
    loss_mask = torch.zeros((B, T), dtype=torch.bool)
    doc_ids = torch.full((B, T), -1, dtype=torch.long)  # -1 = padding
    for b in range(B):
        loss_mask[b, : len(masks[b])] = torch.tensor(masks[b], dtype=torch.bool)
        doc_ids[b, : len(docs[b])] = torch.tensor(docs[b], dtype=torch.long)
    # Position of each token inside its own document (padding continues harmlessly).
    starts = torch.ones((B, T), dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    idx = torch.arange(T).expand(B, T)
    last_start = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    position_ids = idx - last_start
    batch = {"input_ids": input_ids, "loss_mask": loss_mask, "position_ids": position_ids, "doc_ids": doc_ids}
    if all(len(r) == 1 for r in rows):
        batch["attention_mask"] = attn
    else:
        same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]
        causal = torch.ones((T, T), dtype=torch.bool).tril()
        allowed = same_doc & causal & (doc_ids[:, None, :] >= 0)
        allowed |= torch.eye(T, dtype=torch.bool)  # a padding query attends to itself: no all-masked row (NaN)
        mask = torch.zeros((B, 1, T, T))
        batch["attention_mask"] = mask.masked_fill(~allowed[:, None], torch.finfo(mask.dtype).min)
    return batch


def lm_loss(model, batch: dict) -> torch.Tensor:
    """Token cross-entropy of the next token where `loss_mask` of that token is True.

    Logits at position t predict token t+1; a label is never the first token of another packed
    document (its predictor sits in the previous document).
    """
    mask = batch["attention_mask"]
    if mask.dim() == 4:
        mask = mask.to(dtype=next(model.parameters()).dtype)
    logits = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).logits
    labels = batch["input_ids"][:, 1:]
    counted = batch["loss_mask"][:, 1:] & (batch["doc_ids"][:, 1:] == batch["doc_ids"][:, :-1])
    return losses.sft_loss(logits[:, :-1], labels, counted)


def ptx_windows(tokenizer, texts: list[str], length: int) -> torch.Tensor:
    """Pretraining documents joined by EOS into one stream, cut into windows of `length` tokens."""
    stream = token_stream(tokenizer, texts)
    n = len(stream) // length
    if n == 0:  # a tiny corpus: one padded window is better than none
        ids, _ = pad_right([stream[:length]], tokenizer.pad_token_id)
        return ids
    return stream[: n * length].view(n, length)


def ptx_batch(windows: torch.Tensor, n: int, gen: torch.Generator, pad_id: int) -> dict:
    """`n` random pretraining windows; full-sequence NLL (every real token counts)."""
    ids = windows[torch.randint(len(windows), (n,), generator=gen)]
    real = ids != pad_id
    return {"input_ids": ids, "attention_mask": real, "loss_mask": real,
            "position_ids": torch.arange(ids.shape[1]).expand_as(ids),
            "doc_ids": torch.zeros_like(ids)}


def generation_prompt(tokenizer, demo, fmt=None) -> str:
    """The text a policy is prompted with for a demonstration (render.prompt_text in `fmt`; default:
    its chat template for a chat record when the tokenizer has one, else the prompt as written)."""
    conv = demo.messages[:-1] if demo.messages is not None else None
    return render.prompt_text(fmt or render.legacy_format(tokenizer, conv), tokenizer, demo.prompt, conv)


@torch.no_grad()
def validation_loss(model, examples: list[dict], pad_id: int, batch_size: int, device) -> float:
    """Per-token mean cross-entropy over the responses of all validation demonstrations."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        rows = [[j] for j in range(i, min(i + batch_size, len(examples)))]
        batch = {k: v.to(device) for k, v in collate_rows(examples, rows, pad_id).items()}
        n = int(batch["loss_mask"][:, 1:].sum())
        total += float(lm_loss(model, batch)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def run(cfg, model: str, data: str, out: str, val_data: str | None = None, ptx_data: str | None = None,
        overwrite: bool = False, *, device: str | None = None, resume: bool | str = False) -> dict:
    """Fine-tune the causal LM in folder `model` on the demonstrations in `data`; write an HF folder to `out`.

    Every `cfg.checkpoint_every` steps the full training state goes to `<out>.checkpoint/state.pt`;
    `resume=True` continues from it (an error if there is none or it is another run's), "auto"
    continues when a matching one exists. The result equals an uninterrupted run bit for bit.

    Returns the metrics also written to `out/metrics.json`.
    """
    timer = Timer()
    # 0. Check the config and the output folder before any work.
    if cfg.select_by not in ("val_loss", "rm"):
        raise ConfigError(f"sft.select_by must be 'val_loss' or 'rm', got {cfg.select_by!r}")
    if cfg.select_by == "rm" and not cfg.rm_dir:
        raise ConfigError("sft.select_by=rm needs sft.rm_dir (a reward model folder from `instructrl rm`)")
    if cfg.select_by == "rm" and not val_data:
        raise ConfigError("sft.select_by=rm needs validation data (its prompts are sampled and scored)")
    if not 0.0 <= cfg.ptx_fraction < 1.0:
        raise ConfigError(f"sft.ptx_fraction must be in [0, 1), got {cfg.ptx_fraction}")
    if cfg.ptx_fraction > 0 and not ptx_data:
        raise ConfigError("sft.ptx_fraction > 0 needs pretraining data (ptx_data)")
    if cfg.grad_accum < 1:
        raise ConfigError(f"sft.grad_accum must be >= 1, got {cfg.grad_accum}")
    inputs = {"model": model, "data": data, "val_data": val_data, "ptx_data": ptx_data,
              "rm_dir": cfg.rm_dir if cfg.select_by == "rm" else None}
    fingerprint = run_fingerprint("sft", cfg, inputs)
    refuse_input_folders(out, model, cfg.rm_dir if cfg.select_by == "rm" else None)
    guard_run_dir(out, "sft", fingerprint, overwrite)
    seed_everything(cfg.seed)
    dev = pick_device(device or "auto")
    # accelerate launch / torchrun: DDP, FSDP or DeepSpeed through Accelerate; otherwise a no-op.
    dist = distributed.setup(cfg.mixed_precision)
    dev = dist.device(dev)
    out = dist.private_out(out)  # only rank 0 writes the real output folder

    # 1. Model and tokenizer. Residual dropout is the one thing SFT turns on ([IG]: 0.2); embedding
    #    and attention dropout stay off.
    policy, tok = load_policy(model)
    set_residual_dropout(policy, cfg.dropout)
    policy = lora.prepare(policy, cfg, model)  # gradient checkpointing, LoRA adapters (if configured)
    policy.to(dev).train()
    cfg = fit_max_len(cfg, policy)  # a record longer than the context: DataError (file, line) or truncation
    # How prompts read to the model (chat template or plain format): resolved once, used for every
    # record, saved in config.yaml and prompt_format.json for the stages after this one.
    fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, model, [data, val_data])
    cfg = dataclasses.replace(cfg, prompt_format=fmt.kind, plain_template=fmt.plain_template)

    # 2. Read and tokenize everything now: a bad line fails here, before any output exists.
    demos = read_demonstrations(data)
    render.announce("sft", fmt, tok, demos[0])
    examples = [encode_demonstration(tok, d, cfg.max_len, cfg.truncation, fmt) for d in demos]
    val_demos = read_demonstrations(val_data) if val_data else []
    val_examples = [encode_demonstration(tok, d, cfg.max_len, cfg.truncation, fmt) for d in val_demos]
    windows = None
    if cfg.ptx_fraction > 0:
        windows = ptx_windows(tok, read_pretrain_texts(ptx_data), cfg.max_len)
        n_ptx = max(1, round(cfg.batch_size * cfg.ptx_fraction / (1.0 - cfg.ptx_fraction)))
    reward_model = None
    if cfg.select_by == "rm":
        render.check_matches(fmt, cfg.rm_dir, "the reward model")
        reward_model, rm_tok = load_reward_model(cfg.rm_dir)
        reward_model.to(dev)
        val_prompts = [generation_prompt(tok, d, fmt) for d in val_demos]
        val_convs = [d.messages[:-1] if d.messages is not None else None for d in val_demos]

    # 3. Plan every epoch up front (shuffle, then pack or not), so the cosine schedule knows its length.
    order_rng = random.Random(cfg.seed)
    plan = []  # plan[epoch] = list of optimizer steps; a step = list of micro-batches; a micro-batch = rows
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        order_rng.shuffle(order)
        rows = plan_rows(examples, order, cfg.packing, cfg.max_len)
        n = cfg.batch_size * dist.world_size  # a global micro-batch; each process takes its share
        micro = [rows[i:i + n] for i in range(0, len(rows), n)]
        plan.append([micro[i:i + cfg.grad_accum] for i in range(0, len(micro), cfg.grad_accum)])
    total_steps = sum(len(p) for p in plan)
    eval_every = cfg.eval_every if cfg.eval_every > 0 else None

    optimizer = make_optimizer(policy, cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay)
    train_policy, optimizer = dist.prepare(policy, optimizer)  # the DDP/FSDP view trains; `policy` samples and saves
    ptx_gen = torch.Generator().manual_seed(cfg.seed + 1)
    stage = staging_dir(out)
    try:
        # log.csv, plus TensorBoard/wandb/MLflow as cfg.report_to asks (rank 0 only), in the staging
        # folder; run_files carries them into the final folder.
        logger = MetricsLogger(stage / "log.csv", LOG_FIELDS,
                               tracker=stage_trackers(cfg, stage, "sft", dist.is_main, out))
        evals: list[dict] = []
        best = {"value": None, "state": None, "step": 0, "epoch": 0}
        ckpt_dir = checkpoint_dir(out)
        guard = BadStepGuard("sft", ckpt_dir, cfg.max_bad_steps)
        # Resume: weights, optimizer, RNGs, ptx stream, evaluations, best weights, log rows. The
        # demonstration order is the seeded plan above, so the position in it is the step count.
        resumed = load_checkpoint(ckpt_dir, "sft", fingerprint, resume)
        start_step = 0
        if resumed is not None:
            policy.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            ptx_gen.set_state(resumed["ptx_rng"])
            set_rng_state(resumed["rng"])
            evals.extend(resumed["evals"])
            best.update(resumed["best"])
            guard.streak = resumed["bad_streak"]
            start_step = resumed["step"]
            for row in resumed["log"]:
                logger.log(**row)

        def evaluate(step: int, epoch: int) -> dict:
            """Validation loss, optional RM score of samples; keep the weights if they are the best so far."""
            row = {"step": step, "epoch": epoch}
            if val_examples:
                row["val_loss"] = validation_loss(policy, val_examples, tok.pad_token_id, 2 * cfg.batch_size, dev)
            if reward_model is not None:
                responses = generate(policy, tok, val_prompts, cfg.max_new_tokens, temperature=1.0,
                                     batch_size=2 * cfg.batch_size, seed=cfg.seed)
                row["val_rm_score"] = float(score_texts(reward_model, rm_tok, [d.prompt for d in val_demos], responses,
                                                        fmt=fmt, messages=val_convs).mean())
            key = row.get("val_rm_score") if reward_model is not None else (
                -row["val_loss"] if "val_loss" in row else None)
            if key is not None and (best["value"] is None or key > best["value"]):
                # Copy to CPU: the selected checkpoint survives later (worse) epochs without a disk write.
                best.update(value=key, step=step, epoch=epoch,
                            state={k: v.detach().to("cpu", copy=True) for k, v in policy.state_dict().items()})
            evals.append(row)
            logger.log(**row)
            return row

        # 4. The loop.
        bar = progress(total_steps, "sft")
        step, epoch_losses, last = 0, [], {}
        for epoch, steps in enumerate(plan, start=1):
            epoch_losses = []
            for micro_batches in steps:
                if step < start_step:  # done before the checkpoint we resumed from
                    step += 1
                    bar.update(1)
                    if step == start_step:
                        epoch_losses, last = list(resumed["epoch_losses"]), dict(resumed["last"])
                    continue
                t0 = Timer()
                lr = cosine_lr(step, total_steps, cfg.lr, cfg.min_lr_ratio)  # no warmup ([IG] App. C)
                set_lr(optimizer, lr)
                # 4a. Collate; weigh each micro-batch by its share of the step's response tokens.
                #     Distributed: this process's share of each micro-batch, the token count summed
                #     over processes, and the loss × world size (DDP averages gradients).
                shards = [dist.shard(rows) for rows in micro_batches]
                batches = [collate_rows(examples, rows, tok.pad_token_id) for rows, _ in shards]
                step_tokens = int(dist.sum(sum(int(b["loss_mask"][:, 1:].sum()) * w for b, (_, w) in zip(batches, shards))))
                loss_sum, ptx_sum, n_tokens = 0.0, 0.0, 0
                for b, (_, w) in zip(batches, shards):
                    b = {k: v.to(dev) for k, v in b.items()}
                    weight = w * int(b["loss_mask"][:, 1:].sum()) / max(step_tokens, 1)
                    # 4b. Forward + loss on response tokens only, backward (gradients accumulate).
                    loss = lm_loss(train_policy, b)
                    dist.backward((1.0 - cfg.ptx_fraction) * loss * weight * dist.world_size)
                    loss_sum += float(loss.detach()) * weight
                    n_tokens += int(b["input_ids"].ne(tok.pad_token_id).sum())
                    # 4c. Pretraining windows (full-sequence NLL), mixed into the same step.
                    if windows is not None:
                        pb = {k: v.to(dev) for k, v in ptx_batch(windows, n_ptx, ptx_gen, tok.pad_token_id).items()}
                        ptx = lm_loss(train_policy, pb)  # the same windows on every process
                        dist.backward(cfg.ptx_fraction * ptx / len(batches))
                        ptx_sum += float(ptx.detach()) / len(batches)
                        n_tokens += int(pb["loss_mask"].sum())
                # 4d. Clip and step.
                loss_sum, n_tokens = dist.sum(loss_sum), dist.sum(n_tokens)
                grad_norm = dist.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                step += 1
                good = guard.ok(step, loss_sum + ptx_sum, grad_norm)  # NaN/inf: skip (and stop after N)
                if good:
                    optimizer.step()
                    epoch_losses.append(loss_sum)
                optimizer.zero_grad(set_to_none=True)
                last = {"step": step, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": float(grad_norm),
                        "tokens_per_s": n_tokens / max(t0.elapsed, 1e-9)}
                if windows is not None:
                    last["ptx_loss"] = ptx_sum
                logger.log(**last)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", tok_s=f"{last['tokens_per_s']:.0f}")
                # 4e. Evaluate every `eval_every` steps (or at the end of each epoch, below).
                if val_examples and eval_every and step % eval_every == 0 and step != total_steps:
                    evaluate(step, epoch)
                # 4f. Checkpoint the full state (atomically), only after a good step.
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps and good:
                    save_checkpoint(ckpt_dir, {
                        "stage": "sft", "fingerprint": fingerprint, "step": step,
                        "model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                        "ptx_rng": ptx_gen.get_state(), "rng": rng_state(), "evals": evals, "best": best,
                        "epoch_losses": epoch_losses, "last": last, "bad_streak": guard.streak,
                        "log": logger.rows})
            if step < start_step:
                continue  # this epoch's evaluation is in the checkpoint too
            if (val_examples or reward_model is not None) and (not eval_every or epoch == cfg.epochs):
                row = evaluate(step, epoch)
                msg = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("val"))
                bar.write(f"sft epoch {epoch}/{cfg.epochs}: train_loss={sum(epoch_losses) / max(len(epoch_losses), 1):.4f}  {msg}")
        bar.close()
        logger.close()

        # 5. Keep the selected checkpoint, then save a plain HF folder (dropout off, as load_policy does).
        selected = {"step": step, "epoch": cfg.epochs}
        if best["state"] is not None:
            policy.load_state_dict(best["state"])
            selected = {"step": best["step"], "epoch": best["epoch"]}
        set_dropout(policy, 0.0)
        policy.eval()
        final = evals[-1] if evals else {}
        chosen = next((e for e in evals if e["step"] == selected["step"]), {})
        metrics = {
            "train_loss": sum(epoch_losses) / max(len(epoch_losses), 1),
            "final_train_step_loss": last.get("loss"),
            "val_loss": chosen.get("val_loss"),
            "final_val_loss": final.get("val_loss"),
            "best_val_loss": min((e["val_loss"] for e in evals if "val_loss" in e), default=None),
            "val_rm_score": chosen.get("val_rm_score"),
            "select_by": cfg.select_by,
            "selected_epoch": selected["epoch"],
            "selected_step": selected["step"],
            "steps": total_steps,
            "n_demonstrations": len(examples),
            "n_val_demonstrations": len(val_examples),
            "n_params": n_params(policy),
            "evals": evals,
            "time_s": timer.elapsed,
        }
        sel = f"selected epoch {selected['epoch']} (step {selected['step']}) by {cfg.select_by}" if best["state"] is not None else "final weights"
        val_txt = "-" if metrics["val_loss"] is None else f"{metrics['val_loss']:.4f}"
        print(f"sft: {total_steps} steps in {metrics['time_s']:.1f}s, train_loss {metrics['train_loss']:.4f}, "
              f"val_loss {val_txt}; {sel}")
        policy.to("cpu")
        extra = run_files(stage, cfg, "sft", fingerprint, inputs, metrics)
        extra[render.RECORD_FILE] = fmt.record(tok, demos[0])
        lora.save(policy, tok, out, cfg.lora_merge, extra=extra)
        remove_checkpoint(ckpt_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return metrics


__all__ = ["run", "plan_rows", "collate_rows", "lm_loss", "ptx_windows", "ptx_batch", "validation_loss",
           "generation_prompt"]
