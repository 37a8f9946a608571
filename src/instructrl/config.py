"""Run configuration: one dataclass per stage, YAML presets, `--set a.b=value` overrides.

Every field is declared with `f(default, "help")`, so its help text travels with it (it feeds
`instructrl <cmd> --help` and the docs). Loading is strict: an unknown key is an error that lists
the valid ones, and a value of the wrong type is an error naming the field. Every run folder gets
the resolved config as `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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


def f(default, help: str):
    """A dataclass field with a help text (and a factory for mutable defaults)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: dataclasses.replace(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


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


@dataclass
class WorldConfig:
    seed: int = f(0, "Seed of the world: same seed, byte-identical files.")
    n_sft: int = f(3000, "Demonstrations (SFT training prompts with labeler-written responses).")
    n_sft_val: int = f(200, "Held-out demonstrations for SFT validation and checkpoint selection.")
    n_rm: int = f(2000, "Prompts for comparison collection (RM training).")
    n_ppo: int = f(2000, "Prompts for PPO (no responses).")
    n_eval: int = f(1000, "Held-out evaluation prompts.")
    corpus_chars: int = f(2_000_000, "Approximate size of the pretraining corpus in characters.")
    n_benchmark: int = f(1000, "Items in the world's 'public NLP benchmarks' (1000: a 95% interval of about ±0.03 on an accuracy near 0.45, enough to see a tax of ~0.02 between models scored on the same items).")


@dataclass
class PretrainConfig:
    n_layer: int = f(2, "Transformer layers.")
    n_embd: int = f(64, "Hidden width.")
    n_head: int = f(4, "Attention heads.")
    n_positions: int = f(256, "Context length in tokens.")
    tokenizer: str = f("char", "The base model's tokenizer: 'char' (one token per character; a word's letters are visible) or 'bpe' (byte-level BPE trained on the corpus, about 3x shorter sequences).")
    vocab_size: int = f(1024, "BPE vocabulary size (tokenizer=bpe; special tokens included).")
    dropout: float = f(0.0, "Dropout during pretraining (residual, embedding and attention).")
    max_steps: int = f(3000, "Optimizer steps.")
    batch_size: int = f(32, "Sequences per step.")
    seq_len: int = f(128, "Tokens per training sequence (windows of the packed corpus).")
    lr: float = f(3e-3, "Peak learning rate (AdamW), cosine decay to 10% after warmup.")
    warmup_steps: int = f(100, "Linear warmup steps.")
    weight_decay: float = f(0.01, "AdamW weight decay.")
    eval_every: int = f(500, "Evaluate held-out loss every N steps.")
    eval_batches: int = f(10, "Batches of held-out text per evaluation.")
    checkpoint_every: int = f(1000, "Save a resumable checkpoint every N steps (0: never).")
    report_to: list = f(["auto"], REPORT_TO_HELP)
    seed: int = f(0, "Seed for init and data order.")


@dataclass
class SFTConfig:
    epochs: int = f(4, "Passes over the demonstrations (paper: 16).")
    lr: float = f(1e-3, "Peak learning rate; cosine decay to `min_lr_ratio` of it, no warmup (paper).")
    min_lr_ratio: float = f(0.1, "Final LR as a fraction of the peak (paper: 10%).")
    batch_size: int = f(32, "Sequences per optimizer step (before gradient accumulation).")
    grad_accum: int = f(1, "Micro-batches accumulated per optimizer step.")
    beta1: float = f(0.9, "Adam beta1 (paper 0.9).")
    beta2: float = f(0.95, "Adam beta2 (paper 0.95).")
    weight_decay: float = f(0.0, "AdamW weight decay.")
    dropout: float = f(0.0, "Residual dropout during SFT (paper: 0.2): only the dropout on each block's attention and MLP outputs (GPT-2/GPT-J/GPT-NeoX); embedding and attention dropout stay off; Llama/Qwen2 have none (a warning says so).")
    max_len: int = f(256, "Longest prompt+response in tokens.")
    truncation: str = f("error", "'error': a too-long example is an error; 'truncate_prompt_left': cut the prompt from the left and log it.")
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    packing: bool = f(False, "Pack several examples per row (attention never crosses documents; loss never covers prompts).")
    ptx_fraction: float = f(0.0, "Fraction of pretraining sequences mixed into SFT batches (paper's PPO init: 0.1).")
    eval_every: int = f(0, "Evaluate on validation every N steps (0: once per epoch).")
    select_by: str = f("val_loss", "Checkpoint selection: 'val_loss' or 'rm' (mean RM score on validation prompts; needs rm_dir).")
    rm_dir: str = f("", "Reward model folder for select_by=rm.")
    max_new_tokens: int = f(48, "Tokens sampled per validation prompt when selecting by RM score.")
    lora_r: int = f(0, "LoRA rank: > 0 trains LoRA adapters through peft instead of every weight (needs `pip install 'instructrl[lora]'`); 0 = full fine-tuning.")
    lora_alpha: float = f(16.0, "LoRA alpha (the adapter's update is scaled by alpha / r).")
    lora_dropout: float = f(0.0, "Dropout on the LoRA adapters' input.")
    lora_target_modules: list = f([], "Module names that get adapters, e.g. [q_proj, v_proj]; [] = peft's default for the architecture (all linear layers when it has none); [all-linear] = every linear layer.")
    lora_merge: bool = f(True, "Save with the adapters merged into the weights (a plain transformers folder); false saves the adapter folder (loads with peft, or with instructrl, which merges it).")
    gradient_checkpointing: bool = f(False, "Recompute activations in the backward pass (less memory, ~30% more compute) for big models.")
    mixed_precision: str = f("", "'' = as `accelerate launch` / its config says (default fp32); 'no', 'bf16' (where the hardware has it) or 'fp16'.")
    grad_clip: float = f(1.0, "Gradient-norm clipping.")
    checkpoint_every: int = f(100, "Save a resumable checkpoint (model, optimizer, RNGs, data position) every N optimizer steps to <out>.checkpoint/ (0: never); --resume continues from it.")
    max_bad_steps: int = f(5, "Stop the run after this many consecutive steps with a NaN/inf loss or gradient (each is skipped and logged).")
    report_to: list = f(["auto"], REPORT_TO_HELP)
    seed: int = f(0, "Seed.")


@dataclass
class CompareConfig:
    k_min: int = f(4, "Smallest K (responses per prompt); K is drawn per prompt from [k_min, k_max] (paper 4..9).")
    k_max: int = f(9, "Largest K.")
    temperature: float = f(1.0, "Sampling temperature (paper: 1).")
    max_new_tokens: int = f(48, "Longest sampled response in tokens.")
    batch_size: int = f(64, "Prompts sampled together.")
    labelers: str = f("world", "'world': the world's simulated training labelers rank; 'none': write unranked responses for people to rank.")
    n_prompts: int = f(0, "Use only the first N prompts (0: all).")
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    seed: int = f(0, "Seed.")


@dataclass
class RMConfig:
    epochs: int = f(1, "Passes over the comparisons (paper: 1; more overfits).")
    lr: float = f(3e-4, "Peak learning rate; cosine decay to `min_lr_ratio`.")
    min_lr_ratio: float = f(0.1, "Final LR as a fraction of the peak.")
    batch_size: int = f(16, "Prompts per step; each brings all its K responses, so all C(K,2) pairs (paper: 64).")
    beta1: float = f(0.9, "Adam beta1.")
    beta2: float = f(0.95, "Adam beta2.")
    weight_decay: float = f(0.0, "AdamW weight decay.")
    max_len: int = f(256, "Longest prompt+response in tokens.")
    truncation: str = f("error", "'error' or 'truncate_prompt_left'.")
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    val_fraction: float = f(0.1, "Fraction of ranked prompts held out for validation accuracy.")
    lora_r: int = f(0, "LoRA rank: > 0 trains LoRA adapters through peft instead of every weight (needs `pip install 'instructrl[lora]'`); 0 = full fine-tuning.")
    lora_alpha: float = f(16.0, "LoRA alpha (the adapter's update is scaled by alpha / r).")
    lora_dropout: float = f(0.0, "Dropout on the LoRA adapters' input.")
    lora_target_modules: list = f([], "Module names that get adapters, e.g. [q_proj, v_proj]; [] = peft's default for the architecture (all linear layers when it has none); [all-linear] = every linear layer.")
    lora_merge: bool = f(True, "Save with the adapters merged into the weights (a plain transformers folder); false saves the adapter folder (loads with peft, or with instructrl, which merges it).")
    gradient_checkpointing: bool = f(False, "Recompute activations in the backward pass (less memory, ~30% more compute) for big models.")
    mixed_precision: str = f("", "'' = as `accelerate launch` / its config says (default fp32); 'no', 'bf16' (where the hardware has it) or 'fp16'.")
    grad_clip: float = f(1.0, "Gradient-norm clipping.")
    checkpoint_every: int = f(100, "Save a resumable checkpoint (model, optimizer, RNGs, data position) every N steps to <out>.checkpoint/ (0: never); --resume continues from it.")
    max_bad_steps: int = f(5, "Stop the run after this many consecutive steps with a NaN/inf loss or gradient (each is skipped and logged).")
    report_to: list = f(["auto"], REPORT_TO_HELP)
    seed: int = f(0, "Seed.")


@dataclass
class PPOConfig:
    total_episodes: int = f(4096, "Episodes (prompt + sampled response) in the whole run.")
    batch_size: int = f(64, "Episodes per rollout batch (paper 512).")
    minibatch_size: int = f(16, "Episodes per optimizer step (paper 64).")
    ppo_epochs: int = f(1, "Passes over each rollout batch (paper 1).")
    lr: float = f(1e-4, "Policy learning rate.")
    value_lr: float = f(1e-4, "Value-model learning rate.")
    warmup_updates: int = f(10, "Updates of linear warmup: the first update runs at 1/10 of the LR, update N at the full LR (paper: 10 iterations from 1/10).")
    warmup_fraction: float = f(0.0, "Warmup as a fraction of the run's updates (e.g. 0.1); > 0 overrides warmup_updates, so a short run is not spent below its LR.")
    kl_coef: float = f(0.02, "beta: per-token KL penalty to the SFT model (paper 0.02).")
    adaptive_kl: bool = f(False, "Use Ziegler et al.'s adaptive KL controller instead of a fixed beta.")
    kl_target: float = f(6.0, "Adaptive KL: target KL per response (nats).")
    kl_horizon: int = f(10000, "Adaptive KL: horizon in episodes (each update counts its global batch, batch_size x processes).")
    kl_estimator: str = f("k1", "Per-token KL estimator in the reward: k1 (log ratio) or k3.")
    gamma: float = f(1.0, "GAE discount (paper: no discount).")
    lam: float = f(0.95, "GAE lambda.")
    clip_eps: float = f(0.2, "PPO ratio clip.")
    value_clip_eps: float = f(0.2, "Value-prediction clip.")
    vf_coef: float = f(0.1, "Value-loss coefficient.")
    max_grad_norm: float = f(1.0, "Gradient-norm clipping.")
    whiten_rewards: bool = f(False, "Whiten rewards per batch (without restoring the mean) before GAE.")
    temperature: float = f(1.0, "Sampling temperature; the same T divides logits for log-probs (paper: 1).")
    max_new_tokens: int = f(48, "Longest response in tokens.")
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    eos_penalty: float | None = f(None, "The [N+] 'EOS trick': the score given to responses cut off without EOS, in training only; null keeps the RM score (which, as in evaluation, is read at an EOS appended to the truncated response).")
    ema_decay: float = f(0.0, "EMA of policy weights used for the saved model (paper 0.992; 0 = off). With LoRA, the EMA of the merged weights (needs lora_merge=true).")
    ptx_coef: float = f(0.0, "gamma of PPO-ptx: weight of the pretraining NLL added to the per-token-mean PPO loss (0 = plain PPO).")
    ptx_batch_size: int = f(16, "Pretraining sequences per PPO minibatch for PPO-ptx.")
    ptx_seq_len: int = f(128, "Tokens per pretraining sequence for PPO-ptx.")
    save_every: int = f(0, "Save a checkpoint every N updates (0: only at the end).")
    max_kl: float = f(100.0, "Stop the run if the mean KL per response exceeds this (nats).")
    samples_per_update: int = f(4, "Rollouts per update written to <out>/samples.jsonl (prompt, response, score, KL): what the policy says as it trains (0: none).")
    lora_r: int = f(0, "LoRA rank: > 0 trains LoRA adapters through peft instead of every weight (needs `pip install 'instructrl[lora]'`); 0 = full fine-tuning.")
    lora_alpha: float = f(16.0, "LoRA alpha (the adapter's update is scaled by alpha / r).")
    lora_dropout: float = f(0.0, "Dropout on the LoRA adapters' input.")
    lora_target_modules: list = f([], "Module names that get adapters, e.g. [q_proj, v_proj]; [] = peft's default for the architecture (all linear layers when it has none); [all-linear] = every linear layer.")
    lora_merge: bool = f(True, "Save with the adapters merged into the weights (a plain transformers folder); false saves the adapter folder (loads with peft, or with instructrl, which merges it).")
    gradient_checkpointing: bool = f(False, "Recompute activations in the backward pass (less memory, ~30% more compute) for big models.")
    mixed_precision: str = f("", "'' = as `accelerate launch` / its config says (default fp32); 'no', 'bf16' (where the hardware has it) or 'fp16'.")
    offload_frozen: bool = f(False, "Keep the frozen reference policy and reward model on the CPU and run them there (slower, frees accelerator memory); with LoRA the reference is the policy with its adapter off and costs no memory.")
    report_to: list = f(["auto"], REPORT_TO_HELP)
    seed: int = f(0, "Seed.")


@dataclass
class EvalConfig:
    n_prompts: int = f(1000, "Held-out prompts to evaluate on.")
    max_new_tokens: int = f(48, "Longest response in tokens.")
    temperature: float = f(0.0, "Sampling temperature for answers (0 = greedy).")
    batch_size: int = f(128, "Prompts generated together.")
    bootstrap: int = f(1000, "Bootstrap resamples for 95% intervals.")
    best_of_n: int = f(0, "Also evaluate best-of-n against the RM with this n (0: off).")
    eval_t1: bool = f(True, "World prompts: also answer at T = 1, the paper's rollout temperature (winrate_t1.*, gold_t1.*, gold_delta_t1.*); a model with a KL reference reuses its KL samples.")
    n_benchmark: int = f(0, "Benchmark items to score (0: all).")
    prompt_format: str = f("auto", PROMPT_FORMAT_HELP)
    plain_template: str = f("", PLAIN_TEMPLATE_HELP)
    judge_template: str = f("", "Prompt of a causal-LM judge (--judge LM_FOLDER): a file, or the text itself, with {prompt}, {a} and {b}; the judge answers with one of judge_choices. '' = the built-in template.")
    judge_choices: list = f(["A", "B"], "The causal-LM judge's answer for 'a is better' and 'b is better' (the next token's probabilities are compared).")
    seed: int = f(0, "Seed.")


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
    rm_init: str = f("sft", "Initialise the RM from 'sft' (the policy's SFT model) or 'base_large' (the larger base, as the paper uses one 6B RM for every policy size; needs train_large).")
    rlhf_rounds: int = f(1, "Rounds of RLHF (iterated RLHF: new comparisons on the current policy's samples, as Stiennon et al. collected theirs in batches and Gao et al. study). Round 1: labelers rank SFT samples -> RM -> PPO. Each later round: labelers rank samples of the previous round's PPO policy on the same RM prompts, a fresh RM (from rm_init) trains on all comparisons so far, and PPO restarts from SFT against it. Earlier rounds' RM and PPO stay in round<r>/ and are evaluated as ppo_round<r>; rm/, ppo/, ppo_ptx/ are the last round's.")
    ppo: PPOConfig = f(PPOConfig(), "PPO (ptx_coef is ignored: that is ppo_ptx).")
    ppo_ptx: PPOConfig = f(PPOConfig(ptx_coef=PTX_COEF), "PPO-ptx (ptx_coef defaults to config.PTX_COEF; see docs/algorithms.md for its scale).")
    eval: EvalConfig = f(EvalConfig(), "Evaluation.")
    sweeps: dict = f({}, "Paper preset: {'kl_coef': [...], 'ptx_coef': [...]} sweeps of PPO.")
    seed: int = f(0, "Seed applied to every stage.")


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
    """Range checks a user can trip (negative LR, empty batch...)."""
    for fl in dataclasses.fields(cfg):
        v = getattr(cfg, fl.name)
        name = prefix + fl.name
        if isinstance(v, bool) or v is None:
            continue
        if (fl.name in ("lr", "value_lr") or fl.name.endswith("batch_size") or fl.name in ("max_steps", "epochs", "total_episodes", "n_layer", "n_embd", "n_head", "seq_len", "max_len", "max_new_tokens")) and isinstance(v, (int, float)) and v <= 0:
            raise ConfigError(f"{name} must be > 0, got {v}")
        if fl.name in ("kl_coef", "ptx_coef", "dropout", "ptx_fraction", "weight_decay", "ema_decay",
                       "checkpoint_every", "save_every") and isinstance(v, (int, float)) and v < 0:
            raise ConfigError(f"{name} must be >= 0, got {v}")
        if fl.name == "max_bad_steps" and isinstance(v, int) and v < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
        if fl.name == "report_to" and isinstance(v, list):
            bad = [x for x in v if str(x).strip().lower() not in ("auto", "tensorboard", "wandb", "mlflow", "none")]
            if bad:
                raise ConfigError(f"{name}: unknown tracker(s) {bad}; choose from auto, tensorboard, wandb, mlflow, none")
        if fl.name == "prompt_format" and v not in ("auto", "chat", "plain"):
            raise ConfigError(f"{name} must be one of auto, chat, plain, got {v!r}")
        if fl.name == "plain_template" and v and "{prompt}" not in v:
            raise ConfigError(f"{name} must contain '{{prompt}}' (replaced by the prompt's text), got {v!r}")
        if fl.name == "warmup_fraction" and isinstance(v, (int, float)) and not 0 <= v < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {v}")
    if isinstance(cfg, PPOConfig) and cfg.ema_decay > 0 and cfg.lora_r > 0 and not cfg.lora_merge:
        raise ConfigError(f"{prefix}ema_decay > 0 with LoRA averages the merged weights, which an adapter folder "
                          f"cannot hold: set {prefix}lora_merge=true (or ema_decay=0)")
    if isinstance(cfg, PPOConfig) and cfg.batch_size % cfg.minibatch_size:
        raise ConfigError(f"{prefix}batch_size ({cfg.batch_size}) must be a multiple of minibatch_size ({cfg.minibatch_size})")
    if isinstance(cfg, CompareConfig) and not (2 <= cfg.k_min <= cfg.k_max):
        raise ConfigError(f"{prefix}k_min/k_max must satisfy 2 <= k_min <= k_max, got {cfg.k_min}, {cfg.k_max}")
    if isinstance(cfg, PretrainConfig) and cfg.tokenizer not in ("char", "bpe"):
        raise ConfigError(f"{prefix}tokenizer must be 'char' or 'bpe', got {cfg.tokenizer!r}")
    if isinstance(cfg, PretrainConfig) and cfg.n_embd % cfg.n_head:
        raise ConfigError(f"{prefix}n_embd ({cfg.n_embd}) must be a multiple of n_head ({cfg.n_head})")


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


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
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def preset_path(name: str) -> Path:
    p = CONFIG_DIR / f"{name}.yaml"
    if not p.exists():
        names = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset '{name}'. Presets: {', '.join(names)}")
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


def _hashed(d):
    if isinstance(d, dict):
        return {k: _hashed(v) for k, v in d.items() if k not in NOT_HASHED}
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
            rows.append((prefix + fl.name, repr(getattr(obj, fl.name)), fl.metadata.get("help", "")))
    return rows


def _get(obj, dotted: str):
    for p in dotted.split("."):
        obj = getattr(obj, p)
    return obj
