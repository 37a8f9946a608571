"""Run configuration: one dataclass per stage, YAML presets, `--set a.b=value` overrides.

Every field is declared with `f(default, "help", domain)`, so its help text and its allowed values
travel with it (they feed `instructrl <cmd> --help` and the docs). Loading is strict: an unknown key
is an error that lists the valid ones; a value of the wrong type, or outside its field's domain
(every float must be finite; ranges; choices), is one error naming the field and the domain; then
each config's cross-field rules are checked. All of it happens before any model loads. YAML is read
without aliases (no "billion laughs"), and a preset is a name, never a path. Every run folder gets
the resolved config as `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instructrl.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "presets"

#: The default γ of PPO-ptx (the pipeline's `ppo_ptx.ptx_coef`; `instructrl ppo` is plain PPO, γ = 0,
#: unless `--set ptx_coef=...`). Defined here once; its scale, relative to the paper's 27.8, is
#: explained in docs/algorithms.md ("The scale of ptx_coef").
PTX_COEF = 1.0

#: Pretraining's precisions (`PretrainConfig.precision`; instructrl/precision.py says what each means).
PRECISIONS = ("auto", "fp32", "bf16")

#: Sizes (batch, length, layers, counts) are capped so that a mistyped value is a clear error
#: rather than an allocation failure deep inside a model.
BIG = 2**24
MAX_SEED = 2**31 - 1


# --------------------------------------------------------------------------------------------
# Domains: the values a field allows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """The values a config field allows: numbers within bounds (floats always finite), or choices.

    `str(domain)` is how errors and `--help` say it: "> 0", "in [0, 1)", "'k1', 'k2' or 'k3'"."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()

    def ok(self, v) -> bool:
        if self.choices:
            return v in self.choices
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __str__(self) -> str:
        if self.choices:
            names = [repr(c) for c in self.choices]
            return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return "finite"


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def gt(lo, hi=None) -> Domain:
    return Domain(lo=lo, hi=hi, lo_open=True)


def ge(lo, hi=None) -> Domain:
    return Domain(lo=lo, hi=hi)


def unit(hi_open: bool = True) -> Domain:
    """[0, 1) (a probability that must leave something: dropout) or [0, 1]."""
    return Domain(lo=0.0, hi=1.0, hi_open=hi_open)


def one_of(*choices) -> Domain:
    return Domain(choices=tuple(choices))


FINITE = Domain()
SIZE = ge(1, BIG)
COUNT = ge(0, BIG)
SEED = ge(0, MAX_SEED)
TRACKERS = one_of("auto", "tensorboard", "wandb", "mlflow", "none")
PROMPT_FORMATS = one_of("auto", "chat", "plain")


def f(default, help: str, domain: Domain | None = None, items: Domain | None = None):
    """A dataclass field with a help text, its domain (for a list: `items`, the domain of each
    element) and a factory for mutable defaults."""
    meta = {"help": help, "domain": domain, "items": items}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------
# Stage configs
# --------------------------------------------------------------------------------------------

PROMPT_FORMAT_HELP = ("How prompts are rendered for the model (instructrl.data.render): 'chat' = the tokenizer's chat "
                      "template ({prompt} and {messages} records; responses end with its end-of-turn token), 'plain' "
                      "= plain_template, 'auto' = the format recorded in the input model folder (a folder trained "
                      "here), else 'chat' when the tokenizer has a chat template, else 'plain'. The resolved format "
                      "is saved in config.yaml and prompt_format.json; a stage rendering otherwise than its input "
                      "model was trained is an error.")
PLAIN_TEMPLATE_HELP = ("Plain format of a {\"prompt\"} record, '{prompt}' replaced by its text ('' = auto: the input "
                       "model's recorded one, else '{prompt}' (as written) for the world's models and files, whose "
                       "prompts read 'Q: ...\\nA:', else 'User: {prompt}\\nAssistant:'). Chat records render as "
                       "'Role: content' lines ending in 'Assistant:'.")
REPORT_TO_HELP = ("Where metrics go besides log.csv: auto (TensorBoard in <out>/tensorboard/ when the tensorboard "
                  "package is installed, else nothing, silently), tensorboard (asked for explicitly: a warning if "
                  "it is missing), wandb, mlflow (each needs its package), or [none]. Not part of the run fingerprint.")
CHECKPOINT_HELP = ("Save a resumable checkpoint (model, optimizer, RNGs, data position) every N {unit} to "
                   "<out>.checkpoint/ (0: never); --resume continues from it.")


@dataclass
class TrainerOptions:
    """Fields every fine-tuning stage (SFT, RM, PPO) shares: LoRA, memory, precision, bad steps,
    trackers, seed. (Dataclass inheritance: they come first in config.yaml.)"""

    lora_r: int = f(0, "LoRA rank: > 0 trains LoRA adapters through peft instead of every weight (needs `pip install 'instructrl[lora]'`); 0 = full fine-tuning.", ge(0, 65536))
    lora_alpha: float = f(16.0, "LoRA alpha (the adapter's update is scaled by alpha / r).", gt(0))
    lora_dropout: float = f(0.0, "Dropout on the LoRA adapters' input.", unit())
    lora_target_modules: list = f([], "Module names that get adapters, e.g. [q_proj, v_proj]; [] = peft's default for the architecture (all linear layers when it has none); [all-linear] = every linear layer.", items=Domain())
    lora_merge: bool = f(True, "Save with the adapters merged into the weights (a plain transformers folder); false saves the adapter folder (loads with peft, or with instructrl, which merges it).")
    gradient_checkpointing: bool = f(False, "Recompute activations in the backward pass (less memory, ~30% more compute) for big models.")
    mixed_precision: str = f("", "'' = as `accelerate launch` / its config says (default fp32); 'no', 'bf16' (where the hardware has it) or 'fp16'.", one_of("", "no", "bf16", "fp16"))
    fused_adamw: bool = f(False, "AdamW's fused kernel on the CPU too (on CUDA it is always used): ~3x faster optimizer steps, the same update to float rounding (~2e-7 after 50 steps). Off by default for SFT and RM, whose optimizer steps are a small share of their time, so that their cached models repeat earlier ones bit for bit; on by default in PPO (PPOConfig).")
    max_bad_steps: int = f(5, "Stop the run after this many consecutive steps with a NaN/inf loss or gradient (each is skipped and logged).", ge(1))
    report_to: list = f(["auto"], REPORT_TO_HELP, items=TRACKERS)
    seed: int = f(0, "Seed.", SEED)


@dataclass
class WorldConfig:
    seed: int = f(0, "Seed of the world: same seed, byte-identical files.", SEED)
    n_sft: int = f(3000, "Demonstrations (SFT training prompts with labeler-written responses).", SIZE)
    n_sft_val: int = f(200, "Held-out demonstrations for SFT validation and checkpoint selection.", SIZE)
    n_rm: int = f(2000, "Prompts for comparison collection (RM training).", COUNT)
    n_ppo: int = f(2000, "Prompts for PPO (no responses).", COUNT)
    n_eval: int = f(1000, "Held-out evaluation prompts.", COUNT)
    corpus_chars: int = f(2_000_000, "Approximate size of the pretraining corpus in characters.", ge(0, 2**31))
    n_benchmark: int = f(1000, "Items in the world's 'public NLP benchmarks' (1000: a 95% interval of about ±0.03 on an accuracy near 0.45, enough to see a tax of ~0.02 between models scored on the same items).", COUNT)


@dataclass
class PretrainConfig:
    n_layer: int = f(2, "Transformer layers.", ge(1, 1024))
    n_embd: int = f(64, "Hidden width.", ge(1, 65536))
    n_head: int = f(4, "Attention heads.", ge(1, 1024))
    n_positions: int = f(256, "Context length in tokens.", ge(2, 2**20))
    tokenizer: str = f("char", "The base model's tokenizer: 'char' (one token per character; a word's letters are visible) or 'bpe' (byte-level BPE trained on the corpus, about 3x shorter sequences).", one_of("char", "bpe"))
    vocab_size: int = f(1024, "BPE vocabulary size (tokenizer=bpe; special tokens included).", ge(16, 2**20))
    dropout: float = f(0.0, "Dropout during pretraining (residual, embedding and attention).", unit())
    activation: str = f("gelu_pytorch_tanh", "MLP activation of the new model: 'gelu_pytorch_tanh' (torch's fused tanh-approximate GELU) or 'gelu_new' (GPT-2's own, the same formula in six elementwise ops: ~10% slower, rounds differently).", one_of("gelu_pytorch_tanh", "gelu_new"))
    precision: str = f("auto", "Training precision (pretraining runs on the CPU): 'auto' (bf16 autocast where the CPU multiplies bf16 natively: AMX / AVX512-BF16; else fp32), 'fp32', or 'bf16' (weights, gradients and optimizer state stay fp32 either way; see instructrl/precision.py).", one_of(*PRECISIONS))
    max_steps: int = f(3000, "Optimizer steps.", ge(1, 10**9))
    batch_size: int = f(32, "Sequences per step.", SIZE)
    seq_len: int = f(128, "Tokens per training sequence (windows of the packed corpus); at most n_positions.", ge(1, 2**20))
    lr: float = f(3e-3, "Peak learning rate (AdamW), cosine decay to 10% after warmup.", gt(0))
    warmup_steps: int = f(100, "Linear warmup steps.", COUNT)
    weight_decay: float = f(0.01, "AdamW weight decay.", ge(0))
    eval_every: int = f(500, "Evaluate held-out loss every N steps.", SIZE)
    eval_batches: int = f(10, "Batches of held-out text per evaluation.", SIZE)
    checkpoint_every: int = f(1000, CHECKPOINT_HELP.format(unit="steps"), ge(0))
    report_to: list = f(["auto"], REPORT_TO_HELP, items=TRACKERS)
    seed: int = f(0, "Seed for init and data order.", SEED)


@dataclass
class SFTConfig(TrainerOptions):
    epochs: int = f(4, "Passes over the demonstrations (paper: 16).", ge(1, 10**6))
    lr: float = f(1e-3, "Peak learning rate; cosine decay to `min_lr_ratio` of it, no warmup (paper).", gt(0))
    min_lr_ratio: float = f(0.1, "Final LR as a fraction of the peak (paper: 10%).", unit(hi_open=False))
    batch_size: int = f(32, "Sequences per optimizer step (before gradient accumulation).", SIZE)
    grad_accum: int = f(1, "Micro-batches accumulated per optimizer step.", SIZE)
    beta1: float = f(0.9, "Adam beta1 (paper 0.9).", unit())
    beta2: float = f(0.95, "Adam beta2 (paper 0.95).", unit())
    weight_decay: float = f(0.0, "AdamW weight decay.", ge(0))
    dropout: float = f(0.0, "Residual dropout during SFT (paper: 0.2): only the dropout on each block's attention and MLP outputs (GPT-2/GPT-J/GPT-NeoX); embedding and attention dropout stay off; Llama/Qwen2 have none (a warning says so).", unit())
    max_len: int = f(256, "Longest prompt+response in tokens.", ge(2, BIG))
    truncation: str = f("error", "'error': a too-long example is an error; 'truncate_prompt_left': cut the prompt from the left and log it.", one_of("error", "truncate_prompt_left"))
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP, PROMPT_FORMATS)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    packing: bool = f(False, "Pack several examples per row (attention never crosses documents; loss never covers prompts).")
    ptx_fraction: float = f(0.0, "Fraction of pretraining sequences mixed into SFT batches (paper's PPO init: 0.1).", unit())
    eval_every: int = f(0, "Evaluate on validation every N steps (0: once per epoch).", COUNT)
    select_by: str = f("val_loss", "Checkpoint selection: 'val_loss' or 'rm' (mean RM score on validation prompts; needs rm_dir).", one_of("val_loss", "rm"))
    rm_dir: str = f("", "Reward model folder for select_by=rm.")
    max_new_tokens: int = f(48, "Tokens sampled per validation prompt when selecting by RM score.", ge(1, 2**20))
    grad_clip: float = f(1.0, "Gradient-norm clipping.", gt(0))
    checkpoint_every: int = f(100, CHECKPOINT_HELP.format(unit="optimizer steps"), ge(0))


@dataclass
class CompareConfig:
    k_min: int = f(4, "Smallest K (responses per prompt); K is drawn per prompt from [k_min, k_max] (paper 4..9).", ge(2, 1024))
    k_max: int = f(9, "Largest K.", ge(2, 1024))
    temperature: float = f(1.0, "Sampling temperature (paper: 1).", ge(0))
    max_new_tokens: int = f(48, "Longest sampled response in tokens.", ge(1, 2**20))
    batch_size: int = f(64, "Prompts sampled together.", SIZE)
    labelers: str = f("world", "'world': the world's simulated training labelers rank; 'none': write unranked responses for people to rank.", one_of("world", "none"))
    n_prompts: int = f(0, "Use only the first N prompts (0: all).", COUNT)
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP, PROMPT_FORMATS)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    seed: int = f(0, "Seed.", SEED)


@dataclass
class RMConfig(TrainerOptions):
    epochs: int = f(1, "Passes over the comparisons (paper: 1; more overfits).", ge(1, 10**6))
    lr: float = f(3e-4, "Peak learning rate; cosine decay to `min_lr_ratio`.", gt(0))
    min_lr_ratio: float = f(0.1, "Final LR as a fraction of the peak.", unit(hi_open=False))
    batch_size: int = f(16, "Prompts per step; each brings all its K responses, so all C(K,2) pairs (paper: 64).", SIZE)
    chunk_rows: int = f(32, "Run each step's sum(K) sequences through the model in chunks of this many, sorted by length, each padded only to its own longest (one backward for all): the same loss and gradients to float rounding (~1e-6, tested) with fewer padding positions computed, ~1.6x faster steps on the default's RM (benchmarks/README.md). 0 = one forward over the whole step, padded to its longest sequence (the runs made before 32 was the default).", ge(0, 10**6))
    share_prefix: bool = f(True, "Run each prompt's tokens once for its K responses and score every response over a copy of the prompt's cached keys and values (differentiable): the same loss and gradients to float rounding (~1e-6, tested), about half the positions computed on the default's RM (the prompt is 64% of its real tokens). Checked on the first batch against whole sequences; off (with a warning) for distributed runs, gradient checkpointing or a model whose cache does not fit. false = every response with its whole prompt (the runs made before it was the default).")
    beta1: float = f(0.9, "Adam beta1.", unit())
    beta2: float = f(0.95, "Adam beta2.", unit())
    weight_decay: float = f(0.0, "AdamW weight decay.", ge(0))
    max_len: int = f(256, "Longest prompt+response in tokens.", ge(2, BIG))
    truncation: str = f("error", "'error' or 'truncate_prompt_left'.", one_of("error", "truncate_prompt_left"))
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP, PROMPT_FORMATS)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    val_fraction: float = f(0.1, "Fraction of ranked prompts held out for validation accuracy.", unit())
    grad_clip: float = f(1.0, "Gradient-norm clipping.", gt(0))
    checkpoint_every: int = f(100, CHECKPOINT_HELP.format(unit="steps"), ge(0))


@dataclass
class PPOConfig(TrainerOptions):
    total_episodes: int = f(4096, "Episodes (prompt + sampled response) in the whole run, per process.", ge(1, 10**12))
    batch_size: int = f(64, "Episodes per rollout batch, per process (paper 512).", SIZE)
    minibatch_size: int = f(16, "Episodes per optimizer step (paper 64); divides batch_size.", SIZE)
    ppo_epochs: int = f(1, "Passes over each rollout batch (paper 1).", ge(1, 10**4))
    lr: float = f(1e-4, "Policy learning rate.", gt(0))
    value_lr: float = f(1e-4, "Value-model learning rate.", gt(0))
    warmup_updates: int = f(10, "Updates of linear warmup: the first update runs at 1/10 of the LR, update N at the full LR (paper: 10 iterations from 1/10).", COUNT)
    warmup_fraction: float = f(0.0, "Warmup as a fraction of the run's updates (e.g. 0.1); > 0 overrides warmup_updates, so a short run is not spent below its LR.", unit())
    kl_coef: float = f(0.02, "beta: per-token KL penalty to the SFT model (paper 0.02).", ge(0))
    adaptive_kl: bool = f(False, "Use Ziegler et al.'s adaptive KL controller instead of a fixed beta.")
    kl_target: float = f(6.0, "Adaptive KL: target KL per response (nats).", gt(0))
    kl_horizon: int = f(10000, "Adaptive KL: horizon in episodes (each update counts its global batch, batch_size x processes).", ge(1, 10**12))
    fused_adamw: bool = f(True, "AdamW's fused kernel on the CPU too (on CUDA it is always used): the same update to float rounding (~2e-7 after 50 steps), ~13% less update time on the benchmark scenario (benchmarks/README.md). false = the per-tensor loop of the runs made before it was the default.")
    reuse_sample_logprobs: bool = f(True, "Take the old log-probs (and the logged entropy) from the sampler instead of a full forward of the policy after sampling: one of the four scoring forwards fewer, as TRL does. The two agree to float rounding (~1e-6; the step-0 ratio stays 1 within 1e-4, tested). Applies in fp32 only: under bf16/fp16 mixed precision the KV-cache decode and the training forward round differently (~1e-2), so the run recomputes them and logs that it did. false = always recompute (the runs made before it was the default).")
    trim_padding: bool = f(True, "Train each minibatch without the columns that are padding in all its rows (prompts are left padded to the whole batch's longest, responses right padded to its longest): the same losses, gradients equal to float rounding (~3e-8). false = train on the whole batch's width (the runs made before it was the default).")
    score_chunk: int = f(16, "Score each rollout (old log-probs, reference, value, RM) in chunks of this many rows sorted by length, each chunk without its all-padding columns: fewer padded positions computed (~35% fewer FLOP on a trained policy's rollouts), the same values to float rounding (~1e-6, tested), and the logits of at most this many rows in memory at once. 0 = the whole batch at once (the runs made before 16 was the default).", ge(0, 10**6))
    side_by_side_backward: bool = f(False, "Take each minibatch's backward as two halves of its rows (and of its pretraining windows) at once, each through the policy and the value model in its own thread with one intra-op thread, the halves' per-token means scaled by their share of the tokens so that they sum to the whole minibatch's (single-process CPU runs only; elsewhere ignored). The same gradients to float rounding; false = the whole minibatch on all threads.")
    side_by_side_scoring: bool = f(False, "Score each rollout's row chunks (reference, value, RM; the old log-probs when they are recomputed) half in each of two threads with one intra-op thread each, instead of one chunk after another on all threads (single-process CPU runs without LoRA only; elsewhere ignored). The same values to float rounding.")
    side_by_side_sampling: bool = f(False, "Sample each half of a rollout's rows in its own thread with one intra-op thread, from its own generator seeded by the run's (single-process CPU runs only; elsewhere ignored). The same distribution, but other draws at a fixed seed than one sampler over the whole batch, so every sampled result of a run changes (deterministic all the same).")
    kl_estimator: str = f("k1", "Per-token KL estimator in the reward: k1 (log ratio, the paper's), k2 or k3.", one_of("k1", "k2", "k3"))
    gamma: float = f(1.0, "GAE discount (paper: no discount).", unit(hi_open=False))
    lam: float = f(0.95, "GAE lambda.", unit(hi_open=False))
    clip_eps: float = f(0.2, "PPO ratio clip.", gt(0, 10))
    value_clip_eps: float = f(0.2, "Value-prediction clip.", gt(0))
    vf_coef: float = f(0.1, "Value-loss coefficient.", ge(0))
    max_grad_norm: float = f(1.0, "Gradient-norm clipping.", gt(0))
    whiten_rewards: bool = f(False, "Whiten rewards per batch (without restoring the mean) before GAE.")
    temperature: float = f(1.0, "Sampling temperature; the same T divides logits for log-probs (paper: 1).", gt(0))
    max_new_tokens: int = f(48, "Longest response in tokens.", ge(1, 2**20))
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP, PROMPT_FORMATS)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    eos_penalty: float | None = f(None, "The [N+] 'EOS trick': the score given to responses cut off without EOS, in training only; null keeps the RM score (which, as in evaluation, is read at an EOS appended to the truncated response).", FINITE)
    ema_decay: float = f(0.0, "EMA of policy weights used for the saved model (paper 0.992; 0 = off). With LoRA, the EMA of the merged weights (needs lora_merge=true).", unit())
    ptx_coef: float = f(0.0, "gamma of PPO-ptx: weight of the pretraining NLL added to the per-token-mean PPO loss (0 = plain PPO; the pipeline's PPO-ptx default is config.PTX_COEF = 1.0, see docs/algorithms.md).", ge(0))
    ptx_batch_size: int = f(16, "Pretraining sequences per PPO minibatch for PPO-ptx.", SIZE)
    ptx_seq_len: int = f(128, "Tokens per pretraining sequence for PPO-ptx.", ge(1, 2**20))
    checkpoint_every: int = f(10, CHECKPOINT_HELP.format(unit="updates"), ge(0))
    max_kl: float = f(100.0, "Stop the run if the mean KL per response exceeds this (nats).", ge(0))
    samples_per_update: int = f(4, "Rollouts per update written to <out>/samples.jsonl (prompt, response, score, KL): what the policy says as it trains (0: none).", COUNT)
    offload_frozen: bool = f(False, "Keep the frozen reference policy and reward model on the CPU and run them there (slower, frees accelerator memory); with LoRA the reference is the policy with its adapter off and costs no memory.")


@dataclass
class EvalConfig:
    n_prompts: int = f(1000, "Held-out prompts to evaluate on.", SIZE)
    max_new_tokens: int = f(48, "Longest response in tokens.", ge(1, 2**20))
    temperature: float = f(0.0, "Sampling temperature for answers (0 = greedy).", ge(0))
    batch_size: int = f(128, "Prompts generated together.", SIZE)
    bootstrap: int = f(1000, "Bootstrap resamples for 95% intervals.", ge(1, 10**7))
    best_of_n: int = f(0, "Also evaluate best-of-n against the RM with this n (0: off).", ge(0, 65536))
    eval_t1: bool = f(True, "World prompts: also answer at T = 1, the paper's rollout temperature (winrate_t1.*, gold_t1.*, gold_delta_t1.*); a model with a KL reference reuses its KL samples.")
    n_benchmark: int = f(0, "Benchmark items to score (0: all).", COUNT)
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP, PROMPT_FORMATS)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    judge_template: str = f("", "Prompt of a causal-LM judge (--judge LM_FOLDER): a file, or the text itself, with {prompt}, {a} and {b}; the judge answers with one of judge_choices. '' = the built-in template.")
    judge_choices: list = f(["A", "B"], "The causal-LM judge's answer for 'a is better' and 'b is better' (the next token's probabilities are compared).", items=Domain())
    seed: int = f(0, "Seed.", SEED)


@dataclass
class SweepsConfig:
    """Extra PPO runs of the pipeline beside ppo/ and ppo_ptx/, one per value, all from the same SFT
    policy against the same (last-round) RM; the report plots them from their logs. The `paper`
    preset sweeps both; the other presets none."""

    kl_coef: list[float] = f([], "beta values: one plain-PPO run (ptx_coef = 0) per value, in sweeps/ppo_beta_<beta>/ (gold and RM score against KL: where over-optimisation starts).", items=ge(0))
    ptx_coef: list[float] = f([], "gamma values: one PPO-ptx run (the ppo_ptx settings) per value, in sweeps/ppo_ptx_gamma_<gamma>/ (the scale of gamma: see config.PTX_COEF).", items=ge(0))

    def runs(self) -> list[tuple[str, float]]:
        """(field, value) of every sweep run, beta runs first, in the order written."""
        return [("kl_coef", v) for v in self.kl_coef] + [("ptx_coef", v) for v in self.ptx_coef]


@dataclass
class PipelineConfig:
    world: WorldConfig = f(WorldConfig(), "The simulated world.")
    base_small: PretrainConfig = f(PretrainConfig(), "The small base model (the world's GPT-3 1.3B).")
    base_large: PretrainConfig = f(
        PretrainConfig(n_layer=2, n_embd=200, n_head=4), "The large base model (>= 8x the small one's parameters).")
    train_large: bool = f(True, "Pretrain the large base and compare the aligned small model with it.")
    align_large: bool = f(False, "Also take the large base through SFT, PPO and PPO-ptx against the same (last-round) RM, as the paper aligns every model size with one RM: evaluated as sft_large / ppo_large / ppo_ptx_large, with every model's win rate against the large SFT (the paper's Fig. 1 baseline); needs train_large.")
    sft: SFTConfig = f(SFTConfig(), "Supervised fine-tuning on demonstrations.")
    compare: CompareConfig = f(CompareConfig(), "Comparison collection.")
    rm: RMConfig = f(RMConfig(), "Reward model.")
    rm_init: str = f("sft", "Initialise the RM from 'sft' (the policy's SFT model) or 'base_large' (the larger base, as the paper uses one 6B RM for every policy size; needs train_large).", one_of("sft", "base_large"))
    rlhf_rounds: int = f(1, "Rounds of RLHF (iterated RLHF: new comparisons on the current policy's samples, as Stiennon et al. collected theirs in batches and Gao et al. study). Round 1: labelers rank SFT samples -> RM -> PPO. Each later round: labelers rank samples of the previous round's PPO policy on the same RM prompts, a fresh RM (from rm_init) trains on all comparisons so far, and PPO restarts from SFT against it. Earlier rounds' RM and PPO stay in round<r>/ and are evaluated as ppo_round<r>; rm/, ppo/, ppo_ptx/ are the last round's.", ge(1))
    ppo: PPOConfig = f(PPOConfig(), "PPO (ptx_coef is ignored: that is ppo_ptx).")
    ppo_ptx: PPOConfig = f(PPOConfig(ptx_coef=PTX_COEF), "PPO-ptx (ptx_coef defaults to config.PTX_COEF; see docs/algorithms.md for its scale).")
    eval: EvalConfig = f(EvalConfig(), "Evaluation.")
    sweeps: SweepsConfig = f(SweepsConfig(), "Sweeps of PPO's beta and PPO-ptx's gamma (the paper preset).")
    seed: int = f(0, "Seed applied to every stage.", SEED)


STAGES = {
    "world": WorldConfig,
    "pretrain": PretrainConfig,
    "sft": SFTConfig,
    "compare": CompareConfig,
    "rm": RMConfig,
    "ppo": PPOConfig,
    "eval": EvalConfig,
    "pipeline": PipelineConfig,
}


# --------------------------------------------------------------------------------------------
# Strict loading and overrides
# --------------------------------------------------------------------------------------------


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {fl.name: hints[fl.name] for fl in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str):
    """Check/convert one value to the declared type; raise ConfigError naming the field."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=where + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads no/yes/on/off as booleans
            raise ConfigError(f"{where}: expected a string, got {value!r} (YAML reads no, yes, on and off as "
                              f"true/false: quote the word, e.g. --set {where}=\"'no'\")")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_types = typing.get_args(tp)
        if item_types:  # list[float]: each element converted and checked like a field of that type
            return [_coerce(x, item_types[0], f"{where}[{i}]") for i, x in enumerate(value)]
        return value
    return value


def from_dict(cls, data: dict, prefix: str = "", base=None):
    """Build `cls` from a (possibly partial) mapping on top of `base` (default: the defaults)."""
    types_ = _field_types(cls)
    obj = dataclasses.replace(base) if base is not None else cls()
    for key, value in (data or {}).items():
        if key not in types_:
            valid = ", ".join(sorted(types_))
            raise ConfigError(f"unknown config key '{prefix}{key}'. Valid keys{(' of ' + prefix.rstrip('.')) if prefix else ''}: {valid}")
        tp = types_[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key}: expected a mapping, got {value!r}")
            setattr(obj, key, from_dict(tp, value, prefix=f"{prefix}{key}.", base=getattr(obj, key)))
        else:
            setattr(obj, key, _coerce(value, tp, prefix + key))
    validate(obj, prefix)
    return obj


def validate(cfg, prefix: str = "") -> None:
    """Every field's domain (floats finite, ranges, choices, list items), then the config's
    cross-field rules. Raises one ConfigError naming the field and what it allows. The stages call
    this first (before any model loads) on whatever config they are given."""
    types_ = _field_types(type(cfg))
    for fl in dataclasses.fields(cfg):
        v = getattr(cfg, fl.name)
        name = prefix + fl.name
        if dataclasses.is_dataclass(v):
            validate(v, name + ".")
            continue
        if typing.get_args(types_[fl.name]) == (float,) and isinstance(v, list):  # list[float]: each in `items`
            for i, x in enumerate(v):
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise ConfigError(f"{name}[{i}] must be a number, got {x!r}")
                _check_value(f"{name}[{i}]", float(x), fl.metadata.get("items"), None)
            continue
        _check_value(name, v, fl.metadata.get("domain"), fl.metadata.get("items"))
    for rule in CROSS_FIELD_RULES.get(type(cfg), ()):
        rule(cfg, prefix)


def _check_value(name: str, v, domain: "Domain | None", items: "Domain | None") -> None:
    if isinstance(v, bool) or v is None:
        return
    if isinstance(v, float) and not math.isfinite(v):
        bounds = str(domain) if domain is not None and not domain.choices and str(domain) != "finite" else ""
        raise ConfigError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {v}")
    if domain is not None and isinstance(v, (int, float, str)) and not domain.ok(v):
        raise ConfigError(f"{name} must be {domain}, got {v!r}")
    if isinstance(v, list):
        for i, x in enumerate(v):
            if not isinstance(x, str) or not x.strip():
                raise ConfigError(f"{name}[{i}] must be a non-empty string, got {x!r}")
            if items is not None and items.choices and x.strip().lower() not in items.choices:
                raise ConfigError(f"{name}[{i}]: unknown tracker {x!r}; must be {items}")


def _ppo_rules(cfg: "PPOConfig", prefix: str) -> None:
    if cfg.ema_decay > 0 and cfg.lora_r > 0 and not cfg.lora_merge:
        raise ConfigError(f"{prefix}ema_decay > 0 with LoRA averages the merged weights, which an adapter folder "
                          f"cannot hold: set {prefix}lora_merge=true (or ema_decay=0)")
    if cfg.batch_size % cfg.minibatch_size:
        raise ConfigError(f"{prefix}batch_size ({cfg.batch_size}) must be a multiple of minibatch_size ({cfg.minibatch_size})")
    if cfg.total_episodes < cfg.batch_size:
        raise ConfigError(f"{prefix}total_episodes ({cfg.total_episodes}) is smaller than one batch ({cfg.batch_size})")


def _prompt_rules(cfg, prefix: str) -> None:
    if cfg.plain_template and "{prompt}" not in cfg.plain_template:
        raise ConfigError(f"{prefix}plain_template must contain '{{prompt}}' (replaced by the prompt's text), "
                          f"got {cfg.plain_template!r}")


def _compare_rules(cfg: "CompareConfig", prefix: str) -> None:
    if cfg.k_min > cfg.k_max:
        raise ConfigError(f"{prefix}k_min/k_max must satisfy 2 <= k_min <= k_max, got {cfg.k_min}, {cfg.k_max}")


def _pretrain_rules(cfg: "PretrainConfig", prefix: str) -> None:
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(f"{prefix}n_embd ({cfg.n_embd}) must be a multiple of n_head ({cfg.n_head})")
    if cfg.seq_len > cfg.n_positions:
        raise ConfigError(f"{prefix}seq_len {cfg.seq_len} exceeds the context n_positions {cfg.n_positions}")


def _sft_rules(cfg: "SFTConfig", prefix: str) -> None:
    if cfg.select_by == "rm" and not cfg.rm_dir:
        raise ConfigError(f"{prefix}select_by=rm needs {prefix}rm_dir (a reward model folder from `instructrl rm`)")


def _pipeline_rules(cfg: "PipelineConfig", prefix: str) -> None:
    if cfg.align_large and not cfg.train_large:
        raise ConfigError("align_large=true needs train_large=true")
    if cfg.rm_init == "base_large" and not cfg.train_large:
        raise ConfigError("rm_init=base_large needs train_large=true")


#: Rules between fields, per config class (each config validates its own).
CROSS_FIELD_RULES = {PPOConfig: (_ppo_rules, _prompt_rules), CompareConfig: (_compare_rules, _prompt_rules),
                     PretrainConfig: (_pretrain_rules,), SFTConfig: (_sft_rules, _prompt_rules),
                     RMConfig: (_prompt_rules,), EvalConfig: (_prompt_rules,), PipelineConfig: (_pipeline_rules,)}


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


#: Longest --set value and config file we parse: a config is small; anything larger is a mistake
#: (or an attack on the parser).
MAX_OVERRIDE_CHARS = 10_000
MAX_CONFIG_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: `*name` is an error, so a few hundred bytes cannot
    expand into gigabytes ("billion laughs") or a recursive structure."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in instructrl configs", mark)
        return super().compose_node(parent, index)


def safe_yaml(text: str):
    """Parse YAML text with `_NoAliasLoader`; deep nesting is a YAMLError too."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if len(raw) > MAX_OVERRIDE_CHARS:
        raise ConfigError(f"--set {key.strip()}: the value is {len(raw)} characters long; at most {MAX_OVERRIDE_CHARS}")
    try:
        value = safe_yaml(raw) if raw.strip() != "" else ""
    except yaml.YAMLError as e:
        if "aliases" in str(e):
            raise ConfigError(f"--set {key.strip()}: aliases (*name) are not allowed") from None
        value = raw
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"--set expects key=value with a dotted key such as ppo.lr, got {text!r}")
    return path, value


def apply_overrides(cfg, overrides: list[str]):
    """Apply `a.b=value` strings (values parsed as YAML) with the same strictness as files.

    All overrides are merged first (a later one wins) and checked together, so that their order
    does not matter (`--set batch_size=8 --set minibatch_size=4` is fine).
    """
    if not overrides:
        return cfg
    nested: dict = {}
    for text in overrides:
        path, value = parse_override(text)
        cur = nested
        for p in path[:-1]:
            if not isinstance(cur.get(p), dict):
                cur[p] = {}
            cur = cur[p]
        cur[path[-1]] = value
    return from_dict(type(cfg), nested, base=cfg)


def load_yaml(path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: {p.stat().st_size} bytes is too large for a config file (at most {MAX_CONFIG_BYTES})")
        data = safe_yaml(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {_one_line(e)}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def _one_line(e) -> str:
    return " ".join(str(e).split())


PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def preset_path(name: str) -> Path:
    """The YAML of a preset, by name (`quick`, `default`, `paper`): a name, never a path."""
    names = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
    p = CONFIG_DIR / f"{name}.yaml"
    if not PRESET_NAME.fullmatch(name or "") or not p.is_file():
        hint = " (a preset is a name; give a YAML file with --config)" if not PRESET_NAME.fullmatch(name or "") else ""
        raise ConfigError(f"unknown preset '{name}'{hint}. Presets: {', '.join(names)}")
    return p


def load_config(cls, config_file=None, overrides=None, preset: str | None = None, section: str | None = None):
    """Defaults <- preset YAML (optionally one `section` of it) <- --config file <- --set overrides."""
    cfg = cls()
    if preset:
        data = load_yaml(preset_path(preset))
        if section is not None:
            data = data.get(section, {}) or {}
        cfg = from_dict(cls, data, base=cfg)
    if config_file:
        cfg = from_dict(cls, load_yaml(config_file), base=cfg)
    return apply_overrides(cfg, overrides or [])


def save_config(cfg, run_dir, name: str = "config.yaml") -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    p = run_dir / name
    p.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p


#: Fields that change where a run reports, never what it computes: left out of config_hash, so that
#: changing them neither invalidates a cached stage nor makes a checkpoint "a different run".
NOT_HASHED = ("report_to",)
# Speed switches added after runs were cached, whose off value computes exactly what the code did
# before they existed: left out of a stage's hash while off, so a stage cached before a switch
# existed keeps its hash when the switch is set off; on (results equal only to float rounding) they
# are hashed as any field. PPO has them on by default since they were measured results-neutral on
# the default pipeline, so a default PPO stage cached before then recomputes once.
HASHED_UNLESS_OFF = {"fused_adamw": False, "reuse_sample_logprobs": False, "trim_padding": False, "score_chunk": 0,
                     "chunk_rows": 0, "share_prefix": False, "side_by_side_backward": False, "side_by_side_scoring": False,
                     "side_by_side_sampling": False}


def _hashed(d):
    if isinstance(d, dict):
        return {k: _hashed(v) for k, v in d.items()
                if k not in NOT_HASHED and not (k in HASHED_UNLESS_OFF and v == HASHED_UNLESS_OFF[k])}
    return d


def config_hash(*parts) -> str:
    """Stable short hash of configs / input fingerprints, for stage caching."""
    blob = json.dumps([_hashed(to_dict(p)) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_fields(cls, prefix: str = "", obj=None) -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every field, nested dataclasses flattened (for --help).
    Defaults are those of `obj` (an instance of `cls`, e.g. loaded from a preset), else `cls()`'s."""
    rows = []
    obj = cls() if obj is None else obj
    types_ = _field_types(cls)
    for fl in dataclasses.fields(cls):
        if dataclasses.is_dataclass(types_[fl.name]):
            rows.append((prefix + fl.name, "", fl.metadata.get("help", "")))
            sub = getattr(obj, fl.name)
            for name, _d, h in describe_fields(type(sub), prefix + fl.name + "."):
                rows.append((name, repr(_get(sub, name[len(prefix + fl.name) + 1:])), h))
        else:
            rows.append((prefix + fl.name, repr(getattr(obj, fl.name)), _help_with_domain(fl)))
    return rows


def _help_with_domain(fl) -> str:
    domain, items = fl.metadata.get("domain"), fl.metadata.get("items")
    text = fl.metadata.get("help", "")
    if items is not None and (items.choices or items.lo is not None or items.hi is not None):
        return f"{text} [each {items}]"
    if domain is not None and not (fl.type in ("bool", bool)):
        return f"{text} [{domain}]"
    return text


def _get(obj, dotted: str):
    for p in dotted.split("."):
        obj = getattr(obj, p)
    return obj
