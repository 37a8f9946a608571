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
from types import SimpleNamespace

import torch

from instructrl import distributed, lora, losses
from instructrl.config import validate
from instructrl.data import render
from instructrl.data.collate import encode_demonstration, pad_right
from instructrl.data.readers import read_demonstrations, read_pretrain_texts
from instructrl.data.stream import token_stream
from instructrl.errors import ConfigError
from instructrl.models import (
    load_policy,
    load_reward_model,
    n_params,
    pick_device,
    score_texts,
    set_dropout,
    set_residual_dropout,
)
from instructrl.rollout import generate
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
# Setup pieces
# ---------------------------------------------------------------------------------------------


def check_config(cfg, val_data, ptx_data) -> None:
    """Every rule SFT's settings must meet, before any model loads (field domains: config.validate)."""
    validate(cfg)
    if cfg.select_by == "rm" and not val_data:
        raise ConfigError("sft.select_by=rm needs validation data (its prompts are sampled and scored)")
    if cfg.ptx_fraction > 0 and not ptx_data:
        raise ConfigError("sft.ptx_fraction > 0 needs pretraining data (ptx_data)")


def read_data(cfg, tok, data, val_data, ptx_data, fmt=None) -> SimpleNamespace:
    """Read and tokenize everything now, so that a bad line fails before any training: the
    demonstrations, the validation ones (and their prompts), the pretraining windows; every
    prompt rendered by `fmt` (instructrl.data.render)."""
    demos = read_demonstrations(data)
    val_demos = read_demonstrations(val_data) if val_data else []
    render.announce("sft", fmt or render.legacy_format(tok, None), tok, demos[0])
    d = SimpleNamespace(
        examples=[encode_demonstration(tok, x, cfg.max_len, cfg.truncation, fmt) for x in demos],
        val_examples=[encode_demonstration(tok, x, cfg.max_len, cfg.truncation, fmt) for x in val_demos],
        val_prompts=[generation_prompt(tok, x, fmt) for x in val_demos], windows=None, n_ptx=0, fmt=fmt,
        val_raw=[render.prompt_of(x) for x in val_demos], first=demos[0])
    warn_unknown_tokens(tok, [(f"{x.source}:{x.line}", e["input_ids"]) for x, e in zip(demos, d.examples)],
                        "demonstrations")
    if cfg.ptx_fraction > 0:
        d.windows = ptx_windows(tok, read_pretrain_texts(ptx_data), cfg.max_len)
        d.n_ptx = max(1, round(cfg.batch_size * cfg.ptx_fraction / (1.0 - cfg.ptx_fraction)))
    return d


def plan_epochs(examples, cfg, world_size: int) -> list:
    """Every epoch up front (shuffle, then pack or not), so the cosine schedule knows its length:
    plan[epoch] = optimizer steps; a step = micro-batches; a micro-batch = rows (global: each
    process takes its share)."""
    order_rng = random.Random(cfg.seed)
    plan = []
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        order_rng.shuffle(order)
        rows = plan_rows(examples, order, cfg.packing, cfg.max_len)
        n = cfg.batch_size * world_size
        micro = [rows[i:i + n] for i in range(0, len(rows), n)]
        plan.append([micro[i:i + cfg.grad_accum] for i in range(0, len(micro), cfg.grad_accum)])
    return plan


def accumulate_step(train_policy, micro_batches, d, cfg, dist, dev, pad_id: int, ptx_gen) -> tuple[float, float, int]:
    """Forward and backward of one optimizer step's micro-batches (gradients accumulate); returns
    (loss, ptx loss, tokens). Each micro-batch weighs by its share of the step's response tokens;
    distributed, this process takes its share of each micro-batch, the token count is summed over
    processes and the loss scaled by the world size (DDP averages gradients)."""
    shards = [dist.shard(rows) for rows in micro_batches]
    batches = [collate_rows(d.examples, rows, pad_id) for rows, _ in shards]
    step_tokens = int(dist.sum(sum(int(b["loss_mask"][:, 1:].sum()) * w for b, (_, w) in zip(batches, shards))))
    loss_sum, ptx_sum, n_tokens = 0.0, 0.0, 0
    for b, (_, w) in zip(batches, shards):
        b = {k: v.to(dev) for k, v in b.items()}
        weight = w * int(b["loss_mask"][:, 1:].sum()) / max(step_tokens, 1)
        # Loss on response tokens only (the prompt is masked), backward.
        loss = lm_loss(train_policy, b)
        dist.backward((1.0 - cfg.ptx_fraction) * loss * weight * dist.world_size)
        loss_sum += float(loss.detach()) * weight
        n_tokens += int(b["input_ids"].ne(pad_id).sum())
        # Pretraining windows (full-sequence NLL), mixed into the same step.
        if d.windows is not None:
            pb = {k: v.to(dev) for k, v in ptx_batch(d.windows, d.n_ptx, ptx_gen, pad_id).items()}
            ptx = lm_loss(train_policy, pb)  # the same windows on every process
            dist.backward(cfg.ptx_fraction * ptx / len(batches))
            ptx_sum += float(ptx.detach()) / len(batches)
            n_tokens += int(pb["loss_mask"].sum())
    return dist.sum(loss_sum), ptx_sum, dist.sum(n_tokens)


class Selection:
    """Validation (loss, and the RM's mean score of samples when `reward_model` is given) and the
    checkpoint it selects: the best weights so far, kept on the CPU ([IG] App. C.1 selects by RM
    score). Samples for the RM score use temperature 1 and the same seed at every evaluation."""

    def __init__(self, policy, tok, d, cfg, dev, logger, reward_model=None, rm_tok=None):
        self.policy, self.tok, self.d, self.cfg, self.dev, self.logger = policy, tok, d, cfg, dev, logger
        self.reward_model, self.rm_tok = reward_model, rm_tok
        self.evals: list[dict] = []
        self.best = {"value": None, "state": None, "step": 0, "epoch": 0}

    def __call__(self, step: int, epoch: int) -> dict:
        row = {"step": step, "epoch": epoch}
        if self.d.val_examples:
            row["val_loss"] = validation_loss(self.policy, self.d.val_examples, self.tok.pad_token_id,
                                              2 * self.cfg.batch_size, self.dev)
        if self.reward_model is not None:
            responses = generate(self.policy, self.tok, self.d.val_prompts, self.cfg.max_new_tokens, temperature=1.0,
                                 batch_size=2 * self.cfg.batch_size, seed=self.cfg.seed)
            prompts, convs = zip(*self.d.val_raw)  # scored as the RM reads them (its format = SFT's, checked)
            row["val_rm_score"] = float(score_texts(self.reward_model, self.rm_tok, list(prompts), responses,
                                                    fmt=self.d.fmt, messages=list(convs)).mean())
        key = row.get("val_rm_score") if self.reward_model is not None else (
            -row["val_loss"] if "val_loss" in row else None)
        if key is not None and (self.best["value"] is None or key > self.best["value"]):
            # Copy to CPU: the selected checkpoint survives later (worse) epochs without a disk write.
            self.best.update(value=key, step=step, epoch=epoch,
                             state={k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()})
        self.evals.append(row)
        self.logger.log(**row)
        return row


def restore(state: dict, policy, optimizer, ptx_gen, select: Selection, guard) -> int:
    """Put a checkpoint back: weights, optimizer, RNGs, the ptx stream, evaluations and the best
    weights so far, the bad-step streak. Returns the step to continue after."""
    policy.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    ptx_gen.set_state(state["ptx_rng"])
    set_rng_state(state["rng"])
    select.evals.extend(state["evals"])
    select.best.update(state["best"])
    guard.streak = state["bad_streak"]
    return state["step"]


def final_metrics(sel: Selection, d, cfg, total_steps: int, step: int, epoch_losses, last: dict, policy, timer) -> dict:
    """metrics.json of a finished run (the selected checkpoint's validation numbers, and the last)."""
    selected = {"step": sel.best["step"], "epoch": sel.best["epoch"]} if sel.best["state"] is not None \
        else {"step": step, "epoch": cfg.epochs}
    evals = sel.evals
    final = evals[-1] if evals else {}
    chosen = next((e for e in evals if e["step"] == selected["step"]), {})
    return {
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
        "n_demonstrations": len(d.examples),
        "n_val_demonstrations": len(d.val_examples),
        "n_params": n_params(policy),
        "evals": evals,
        "time_s": timer.elapsed,
    }


def summary(m: dict, selected: bool, select_by: str) -> str:
    sel = f"selected epoch {m['selected_epoch']} (step {m['selected_step']}) by {select_by}" if selected else "final weights"
    val_txt = "-" if m["val_loss"] is None else f"{m['val_loss']:.4f}"
    return f"sft: {m['steps']} steps in {m['time_s']:.1f}s, train_loss {m['train_loss']:.4f}, val_loss {val_txt}; {sel}"


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def train_sft(cfg, model: str, data: str, out: str, val_data: str | None = None, ptx_data: str | None = None,
              overwrite: bool = False, *, device: str | None = None, resume: bool | str = False) -> dict:
    """Fine-tune the causal LM in folder `model` on the demonstrations in `data`; write an HF folder to `out`.

    Every `cfg.checkpoint_every` steps the full training state goes to `<out>.checkpoint/`;
    `resume=True` continues from it (an error if there is none or it is another run's), "auto"
    continues when a matching one exists. The result equals an uninterrupted run bit for bit.

    Returns the metrics also written to `out/metrics.json`.
    """
    timer = Timer()
    # 0. Check the config, the inputs and the output folder before any model loads.
    check_config(cfg, val_data, ptx_data)
    rm_dir = cfg.rm_dir if cfg.select_by == "rm" else None
    # accelerate launch / torchrun: DDP, FSDP or DeepSpeed through Accelerate; otherwise a no-op.
    dist = distributed.setup(cfg.mixed_precision)
    inputs = {"model": model, "data": data, "val_data": val_data, "ptx_data": ptx_data, "rm_dir": rm_dir}
    run = Run.start("sft", cfg, out, inputs, overwrite, resume, dist=dist, max_bad_steps=cfg.max_bad_steps)
    with run:
        seed_everything(cfg.seed)
        dev = dist.device(pick_device(device or "auto"))

        # 1. Model and tokenizer. Residual dropout is the one thing SFT turns on ([IG]: 0.2); embedding
        #    and attention dropout stay off. Gradient checkpointing and LoRA adapters if configured.
        policy, tok = load_policy(model)
        set_residual_dropout(policy, cfg.dropout)
        policy = lora.prepare(policy, cfg, model).to(dev).train()
        cfg = fit_max_len(cfg, policy)  # a record longer than the context: DataError (file, line) or truncation
        # How prompts read to the model (chat template or plain format): resolved once, used for every
        # record, saved in config.yaml and prompt_format.json for the stages after this one.
        fmt = render.resolve(tok, cfg.prompt_format, cfg.plain_template, model, [data, val_data])
        if rm_dir:
            render.check_matches(fmt, rm_dir, "the reward model")
        cfg = run.cfg = dataclasses.replace(cfg, prompt_format=fmt.kind, plain_template=fmt.plain_template)

        # 2. Read and tokenize everything now: a bad line fails here, before any output exists.
        d = read_data(cfg, tok, data, val_data, ptx_data, fmt)
        render.write_record(run.staging, fmt, tok, d.first)
        reward_model, rm_tok = load_reward_model(rm_dir) if rm_dir else (None, None)
        if reward_model is not None:
            reward_model.to(dev)

        # 3. Plan every epoch (the cosine schedule knows its length); optimizer; resume.
        plan = plan_epochs(d.examples, cfg, dist.world_size)
        total_steps = sum(len(p) for p in plan)
        eval_every = cfg.eval_every if cfg.eval_every > 0 else None
        optimizer = make_optimizer(policy, cfg.lr, cfg.beta1, cfg.beta2, cfg.weight_decay, fused=cfg.fused_adamw)
        train_policy, optimizer = dist.prepare(policy, optimizer)  # the DDP/FSDP view trains; `policy` samples and saves
        ptx_gen = torch.Generator().manual_seed(cfg.seed + 1)
        resumed = run.resume_state()  # weights, optimizer, RNGs, ptx stream, evaluations, best weights, log
        logger = run.logger(LOG_FIELDS, rows=resumed["log"] if resumed else ())
        select = Selection(policy, tok, d, cfg, dev, logger, reward_model, rm_tok)
        # The demonstration order is the seeded plan: the position in it is the step count.
        start_step = restore(resumed, policy, optimizer, ptx_gen, select, run.guard) if resumed else 0

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
                # 4a. Forward + loss on response tokens only (+ pretraining windows), backward.
                loss_sum, ptx_sum, n_tokens = accumulate_step(train_policy, micro_batches, d, cfg, dist, dev,
                                                              tok.pad_token_id, ptx_gen)
                # 4b. Clip and step; a NaN/inf loss or gradient skips the step (and stops the run after N).
                grad_norm = dist.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                step += 1
                good = run.guard.ok(step, loss_sum + ptx_sum, grad_norm)
                if good:
                    optimizer.step()
                    epoch_losses.append(loss_sum)
                optimizer.zero_grad(set_to_none=True)
                # 4c. Log.
                last = {"step": step, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": float(grad_norm),
                        "tokens_per_s": n_tokens / max(t0.elapsed, 1e-9)}
                if d.windows is not None:
                    last["ptx_loss"] = ptx_sum
                logger.log(**last)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", tok_s=f"{last['tokens_per_s']:.0f}")
                # 4d. Evaluate every `eval_every` steps (or at the end of each epoch, below).
                if d.val_examples and eval_every and step % eval_every == 0 and step != total_steps:
                    select(step, epoch)
                # 4e. Checkpoint the full state (atomically), only after a good step.
                run.checkpoint(step, total_steps, good, lambda: {
                    "step": step, "model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                    "ptx_rng": ptx_gen.get_state(), "rng": rng_state(), "evals": select.evals, "best": select.best,
                    "epoch_losses": epoch_losses, "last": last, "bad_streak": run.guard.streak, "log": logger.rows})
            if step < start_step:
                continue  # this epoch's evaluation is in the checkpoint too
            # 4f. End of epoch: validation (and checkpoint selection).
            if (d.val_examples or reward_model is not None) and (not eval_every or epoch == cfg.epochs):
                row = select(step, epoch)
                msg = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("val"))
                bar.write(f"sft epoch {epoch}/{cfg.epochs}: train_loss={sum(epoch_losses) / max(len(epoch_losses), 1):.4f}  {msg}")
        bar.close()

        # 5. Keep the selected checkpoint, then save a plain HF folder (dropout off, as load_policy does).
        if select.best["state"] is not None:
            policy.load_state_dict(select.best["state"])
        set_dropout(policy, 0.0)
        policy.eval()
        metrics = final_metrics(select, d, cfg, total_steps, step, epoch_losses, last, policy, timer)
        print(summary(metrics, select.best["state"] is not None, cfg.select_by))
        policy.to("cpu")
        run.finish(metrics, [("", policy, tok)], merge=cfg.lora_merge)
    return metrics


__all__ = ["train_sft", "plan_rows", "collate_rows", "lm_loss", "ptx_windows", "ptx_batch", "validation_loss",
           "generation_prompt", "plan_epochs", "accumulate_step"]
