"""Pretraining a base model on the world's corpus ("the internet").

Not a stage of the paper — InstructGPT starts from GPT-3 — but the world needs its own GPT-3: a
character-level GPT-2 trained on text where instructions come as lists of questions, forum threads
with wrong answers and compliance with harmful requests, so that the base model behaves like the
paper's (answers a question with another question, rambles, complies).

The corpus is packed into one token stream with EOS between documents; each step trains on random
windows of `seq_len + 1` tokens (next-token cross-entropy on every position). AdamW, linear warmup,
cosine decay to 10% of the peak LR (reached at step `max_steps`). Where the hardware multiplies bf16
natively the forward runs under bf16 autocast (`precision`; fp32 master weights, fp32 loss) and the
MLP uses torch's fused tanh-GELU (`activation`): together ~2x the tokens/s of fp32 on the default's
large base (benchmarks/README.md); the held-out loss is always computed in fp32. The run lifecycle (`run.py`)
keeps a resumable checkpoint in `<out>.checkpoint/` (model, optimizer, step, every RNG, the data
position) and writes the folder atomically at the end.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import logging

from instructrl.config import PretrainConfig, validate
from instructrl.data.readers import read_pretrain_texts
from instructrl.data.stream import random_windows as stream_windows
from instructrl.data.stream import token_stream
from instructrl.errors import InstructRLError
from instructrl.models import build_gpt2, n_params
from instructrl.precision import autocast, resolve
from instructrl.run import Run, rng_state, set_rng_state
from instructrl.tokenizer import build_tokenizer
from instructrl.tracking import require_trackers
from instructrl.train_utils import cosine_lr, progress, set_lr

LOG_FIELDS = ["step", "loss", "lr", "time_s", "val_loss"]


log = logging.getLogger(__name__)


def random_windows(stream: torch.Tensor, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(batch_size, length) windows starting at random offsets of the stream (never the last offset)."""
    if len(stream) <= length:
        raise InstructRLError(f"pretraining text has {len(stream)} tokens, fewer than one window of {length + 1}")
    return stream_windows(stream, batch_size, length, generator, last_start=False)


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


def pretrain_base(cfg: PretrainConfig, data: str, out: str, val_data: str | None = None, overwrite: bool = False,
                  resume: bool | str = False, quiet: bool = False) -> dict:
    """Pretrain a GPT-2 (character or BPE tokenizer, `cfg.tokenizer`) on the text in `data`; write a
    plain HF folder to `out`.

    `resume=True` continues from `<out>.checkpoint/` (an error if there is none or it is another
    run's), "auto" continues when a matching one exists. Returns the metrics (also in metrics.json).
    """
    # 0. Check the config, the inputs and the output folder before any work.
    validate(cfg)
    require_trackers(cfg.report_to)
    run = Run.start("pretrain", cfg, out, {"data": data, "val_data": val_data}, overwrite, resume)
    with run:
        # 1. Tokenizer, model, data streams.
        torch.manual_seed(cfg.seed)
        train_texts = read_pretrain_texts(data)
        tokenizer = build_tokenizer(cfg.tokenizer, train_texts, cfg.vocab_size, cfg.n_positions)
        model = build_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, cfg.dropout, cfg.seed,
                           activation=cfg.activation)
        model.train()
        # bf16 autocast where the CPU multiplies bf16 natively (precision.py); then the eager
        # attention, whose bf16 backward is ~3x faster than the CPU flash kernel's at these shapes.
        precision = resolve(cfg.precision)
        if precision == "bf16":
            model.config._attn_implementation = "eager"
        if cfg.seq_len < cfg.n_positions:  # later stages see those positions untrained
            log.warning("pretrain: seq_len %d < n_positions %d: positions %d..%d are never trained",
                        cfg.seq_len, cfg.n_positions, cfg.seq_len, cfg.n_positions - 1)
        train = token_stream(tokenizer, train_texts)
        val = token_stream(tokenizer, read_pretrain_texts(val_data)) if val_data else None
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)

        # 2. Resume: model, optimizer, data RNG (the position in the stream), RNGs, history, log.
        step, history, elapsed, log_rows, last_loss = 0, [], 0.0, [], None
        state = run.resume_state()
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["data_rng"])
            set_rng_state(state["rng"])
            step, history, elapsed, log_rows = state["step"], state["history"], state["elapsed"], state["log"]
            last_loss = state["last_loss"]
        logger = run.logger(LOG_FIELDS, rows=log_rows)
        t0 = time.time() - elapsed
        # A tqdm bar on a terminal, a line every ~5% of the run elsewhere (train_utils.progress).
        bar = progress(cfg.max_steps, f"pretrain {n_params(model) / 1e6:.2f}M", disable=True if quiet else None)
        bar.update(step)
        while step < cfg.max_steps:
            # 3. One optimizer step on random windows of the packed corpus. The cosine reaches
            #    10% at step max_steps (not max_steps - 1, as SFT's and the RM's do).
            lr = cosine_lr(step, cfg.max_steps + 1, cfg.lr, 0.1, cfg.warmup_steps)
            set_lr(opt, lr)
            x = random_windows(train, cfg.batch_size, cfg.seq_len + 1, gen)
            with autocast(precision):
                logits = model(input_ids=x[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            good = run.guard.ok(step + 1, loss.item(), grad_norm)  # NaN/inf: skipped, and the run stops after N
            if good:
                opt.step()
            step += 1
            last_loss = loss.item()
            row = {"step": step, "loss": last_loss, "lr": lr, "time_s": time.time() - t0}

            # 4. Periodic held-out loss, log, checkpoint.
            if val is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                row["val_loss"] = stream_nll(model, val, cfg.seq_len, cfg.eval_batches * 16)
                history.append({"step": step, "val_loss": row["val_loss"]})
                bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{row['val_loss']:.3f}")
            elif step % 50 == 0:
                bar.set_postfix(loss=f"{row['loss']:.3f}")
            logger.log(**row)
            bar.update(1)
            run.checkpoint(step, cfg.max_steps, good, lambda: {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "data_rng": gen.get_state(),
                "rng": rng_state(), "step": step, "history": history, "elapsed": time.time() - t0,
                "log": logger.rows, "last_loss": last_loss})
        bar.close()

        # 5. Save the base model as a plain HF folder with its config and logs (sdpa attention again,
        #    for the later stages and the fast decoder).
        model.config._attn_implementation = "sdpa"
        metrics = {
            "precision": precision,
            "params": n_params(model),
            "steps": step,
            "train_loss": last_loss,
            "val_loss": history[-1]["val_loss"] if history else None,
            "time_s": time.time() - t0,
            "tokens_seen": step * cfg.batch_size * cfg.seq_len,
        }
        run.finish(metrics, [("", model, tokenizer)])
    return metrics
