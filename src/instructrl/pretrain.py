"""Pretraining a base model on the world's corpus ("the internet").

Not a stage of the paper — InstructGPT starts from GPT-3 — but the world needs its own GPT-3: a
character-level GPT-2 trained on text where instructions come as lists of questions, forum threads
with wrong answers and compliance with harmful requests, so that the base model behaves like the
paper's (answers a question with another question, rambles, complies).

The corpus is packed into one token stream with EOS between documents; each step trains on random
windows of `seq_len + 1` tokens (next-token cross-entropy on every position). AdamW, linear warmup,
cosine decay to 10% of the peak LR. Resumable: `checkpoint/` holds model, optimizer, step and RNG.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from instructrl.config import PretrainConfig
from instructrl.data.readers import read_pretrain_texts
from instructrl.data.stream import random_windows as stream_windows
from instructrl.data.stream import token_stream
from instructrl.errors import InstructRLError
from instructrl.models import build_gpt2, n_params, save_model_folder
from instructrl.tokenizer import build_tokenizer
from instructrl.tracking import require_trackers
from instructrl.train_utils import MAX_BAD_STEPS, BadStepGuard, rng_state, save_checkpoint, set_rng_state
from instructrl.train_utils import folder_files, stage_trackers, staging_dir


def random_windows(stream: torch.Tensor, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(batch_size, length) windows starting at random offsets of the stream (never the last offset)."""
    if len(stream) <= length:
        raise InstructRLError(f"pretraining text has {len(stream)} tokens, fewer than one window of {length + 1}")
    return stream_windows(stream, batch_size, length, generator, last_start=False)


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Linear warmup, then cosine decay from `peak` to `min_ratio * peak` at `total`."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def stream_nll(model, stream: torch.Tensor, seq_len: int, max_windows: int) -> float:
    """Mean next-token NLL (nats/token) over consecutive non-overlapping windows of the stream."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    n = min(max_windows, max(1, (len(stream) - 1) // seq_len))
    for i in range(0, n, 16):
        rows = [stream[j * seq_len:(j * seq_len) + seq_len + 1] for j in range(i, min(n, i + 16))]
        rows = [r for r in rows if len(r) == seq_len + 1]
        if not rows:
            break
        x = torch.stack(rows)
        logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += x[:, 1:].numel()
    model.train(was)
    return total / max(1, count)


def run(cfg: PretrainConfig, data: str, out: str, val_data: str | None = None, overwrite: bool = False,
        resume: bool = False, quiet: bool = False) -> dict:
    out = Path(out)
    if out.exists() and (out / "config.json").exists() and not overwrite:
        raise InstructRLError(f"{out} already holds a model; pass --overwrite to replace it")
    ckpt_dir = out.with_name(out.name + ".checkpoint")
    torch.manual_seed(cfg.seed)

    # 1. Tokenizer, model, data streams.
    train_texts = read_pretrain_texts(data)
    tokenizer = build_tokenizer(cfg.tokenizer, train_texts, cfg.vocab_size, cfg.n_positions)
    model = build_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, cfg.dropout, cfg.seed)
    model.train()
    train = token_stream(tokenizer, train_texts)
    val = token_stream(tokenizer, read_pretrain_texts(val_data)) if val_data else None
    if cfg.seq_len > cfg.n_positions:
        raise InstructRLError(f"seq_len {cfg.seq_len} exceeds the context n_positions {cfg.n_positions}")

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history, elapsed = 0, [], 0.0

    # 2. Resume: model, optimizer, step, data RNG (the position in the stream), RNGs, history, log.
    log_rows = []
    guard = BadStepGuard("pretrain", ckpt_dir, MAX_BAD_STEPS)
    if resume and (ckpt_dir / "state.pt").exists():
        state = torch.load(ckpt_dir / "state.pt", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["data_rng"])
        if "rng" in state:
            set_rng_state(state["rng"])
        else:  # a checkpoint from before full RNG state was saved
            torch.set_rng_state(state["torch_rng"])
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        log_rows = state.get("log_rows", [])
    # TensorBoard/wandb/MLflow (cfg.report_to) in a staging folder, carried into `out` at the end.
    require_trackers(cfg.report_to)
    stage = staging_dir(out)
    tracker = stage_trackers(cfg, stage, "pretrain", name=out)
    for r in log_rows:
        tracker.log({k: v for k, v in r.items() if k != "step"}, r["step"])
    t0 = time.time() - elapsed
    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"pretrain {n_params(model) / 1e6:.2f}M", disable=quiet, dynamic_ncols=True)
    while step < cfg.max_steps:
        # 3. One optimizer step on random windows of the packed corpus.
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        x = random_windows(train, cfg.batch_size, cfg.seq_len + 1, gen)
        logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        good = guard.ok(step + 1, loss.item(), grad_norm)  # NaN/inf: skipped, and the run stops after N
        if good:
            opt.step()
        step += 1
        row = {"step": step, "loss": loss.item(), "lr": lr, "time_s": time.time() - t0}

        # 4. Periodic held-out loss and checkpoint.
        if val is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            row["val_loss"] = stream_nll(model, val, cfg.seq_len, cfg.eval_batches * 16)
            history.append({"step": step, "val_loss": row["val_loss"]})
            bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row['val_loss']:.3f}")
        elif step % 50 == 0:
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        log_rows.append(row)
        tracker.log({k: v for k, v in row.items() if k != "step"}, step)
        bar.update(1)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.max_steps and good:
            _save_checkpoint(ckpt_dir, model, opt, gen, step, history, time.time() - t0, log_rows)
    bar.close()
    tracker.close()

    # 5. Save the base model as a plain HF folder with its config and logs.
    metrics = {
        "params": n_params(model),
        "steps": step,
        "train_loss": log_rows[-1]["loss"] if log_rows else None,
        "val_loss": history[-1]["val_loss"] if history else None,
        "time_s": time.time() - t0,
        "tokens_seen": step * cfg.batch_size * cfg.seq_len,
    }
    csv = "step,loss,lr,time_s,val_loss\n" + "".join(
        f"{r['step']},{r['loss']:.5f},{r['lr']:.3e},{r['time_s']:.2f},{r.get('val_loss', '')}\n" for r in log_rows)
    import yaml
    from instructrl.config import to_dict
    save_model_folder(model, tokenizer, out, extra={"metrics.json": metrics, "log.csv": csv,
                                                     "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False),
                                                     **folder_files(stage)})
    import shutil
    shutil.rmtree(stage, ignore_errors=True)
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return metrics


def _save_checkpoint(ckpt_dir: Path, model, opt, gen, step, history, elapsed, log_rows=()):
    """Atomically (temp file, fsync, rename): a kill -9 mid-save leaves the previous checkpoint whole."""
    save_checkpoint(ckpt_dir, {"model": model.state_dict(), "optimizer": opt.state_dict(), "data_rng": gen.get_state(),
                               "rng": rng_state(), "step": step, "history": history, "elapsed": elapsed,
                               "log_rows": list(log_rows)})
