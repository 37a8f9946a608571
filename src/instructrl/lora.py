"""LoRA adapters through peft (optional: `pip install 'instructrl[lora]'`).

Every stage trains LoRA adapters when its config has `lora_r > 0`:

* SFT: adapters on the causal LM; RM: adapters on the backbone, the fresh score head trained in
  full (peft's `modules_to_save` for sequence classification); PPO: adapters on the policy and on
  the value model.
* PPO's KL reference is the policy **with its adapter disabled** (`ReferenceView`): the same
  weights, no second copy in memory. Likewise the frozen RM is the value model with its adapter
  disabled (the value model is initialised from the RM, so with the adapter off it *is* the RM).
* Saving: `lora_merge: true` (default) folds the adapters into the weights and writes a plain
  transformers folder; `lora_merge: false` writes the adapter (`adapter_config.json`,
  `adapter_model.safetensors`) plus the tokenizer, which loads with
  `peft.AutoPeftModelForCausalLM.from_pretrained(out)` (the base is the input folder, recorded by
  absolute path) — and with `instructrl`'s own loaders, which merge it on load.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from instructrl.errors import ConfigError, ModelFolderError

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
EXTRA_FILE = "instructrl_adapter.json"  # what an adapter folder needs beyond peft's files


def require_peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("LoRA (lora_r > 0) needs the peft package: pip install 'instructrl[lora]' "
                          "(or pip install peft)") from None
    return peft


def enabled(cfg) -> bool:
    return int(getattr(cfg, "lora_r", 0) or 0) > 0


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def apply(model, cfg, task: str = "CAUSAL_LM"):
    """Wrap `model` with fresh LoRA adapters per `cfg` (lora_r, lora_alpha, lora_dropout,
    lora_target_modules); only adapter weights (and, for task SEQ_CLS, the score head) train."""
    peft = require_peft()
    targets = list(cfg.lora_target_modules) or None
    if targets == ["all-linear"]:
        targets = "all-linear"
    kw = dict(r=int(cfg.lora_r), lora_alpha=float(cfg.lora_alpha), lora_dropout=float(cfg.lora_dropout),
              task_type=task)
    if getattr(model.config, "model_type", "") == "gpt2":
        kw["fan_in_fan_out"] = True  # GPT-2's Conv1D stores weights transposed
    try:
        lcfg = peft.LoraConfig(target_modules=targets, **kw)
        wrapped = peft.get_peft_model(model, lcfg)
    except ValueError as e:
        if targets is not None:
            raise ConfigError(f"lora_target_modules {cfg.lora_target_modules}: {e}") from None
        # peft has no default target list for this architecture: adapt every linear layer.
        log.info("peft has no default LoRA targets for %s; using all linear layers", model.config.model_type)
        wrapped = peft.get_peft_model(model, peft.LoraConfig(target_modules="all-linear", **kw))
    n_train = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in wrapped.parameters())
    log.info("LoRA r=%d: %d of %d parameters trainable (%.2f%%)", cfg.lora_r, n_train, n_all, 100 * n_train / max(n_all, 1))
    return wrapped


def unwrap(model):
    """The transformers model inside a peft wrapper (adapter layers included), or `model` itself."""
    return model.get_base_model() if is_peft_model(model) else model


def adapter_off(model):
    """Context manager: run `model` without its adapters (a no-op context for a plain model)."""
    return model.disable_adapter() if is_peft_model(model) else nullcontext()


class ReferenceView(nn.Module):
    """A frozen view of a peft model with its adapters disabled: PPO's reference policy (or the
    frozen RM) without a second copy of the weights. Calls run under `disable_adapter()`.

    `models.token_scores` / `sequence_scores` recognise it (`adapter_view_of`) so that the score
    head and the backbone are both read with the adapter off.
    """

    def __init__(self, model):
        super().__init__()
        object.__setattr__(self, "adapter_view_of", model)  # not a submodule: no duplicate parameters

    @property
    def config(self):
        return self.adapter_view_of.config

    def parameters(self, recurse: bool = True):
        return self.adapter_view_of.parameters(recurse)

    def forward(self, *args, **kwargs):
        with torch.no_grad(), self.adapter_view_of.disable_adapter():
            return self.adapter_view_of(*args, **kwargs)


def for_saving(model, merge: bool):
    """The model to save: adapters merged into a plain transformers model, or the peft model."""
    if not is_peft_model(model):
        return model
    if merge:
        return model.merge_and_unload()
    return model


def adapter_deltas(model) -> dict[str, torch.Tensor]:
    """`{module name: B·A·scale}` of every LoRA layer of a peft model: the update its active adapters
    add to that layer's base weight (in the base weight's layout), i.e. what merging adds.

    An EMA of LoRA weights must average these merged deltas, not A and B one by one
    (EMA(B)·EMA(A) ≠ EMA(B·A)); `ppo.WeightEMA` does."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer):
            active = [a for a in m.active_adapters if a in m.lora_A]
            if active:
                out[name] = sum(m.get_delta_weight(a) for a in active).detach().clone()
    return out


def merged_module_name(peft_name: str) -> str:
    """The name a layer of a peft model has in the model `merge_and_unload()` returns."""
    return peft_name.removeprefix("base_model.model.")


def write_adapter_files(model, tokenizer, folder) -> None:
    """An adapter folder's files (adapter weights and config, tokenizer, the RM's bias shift) into
    `folder`, in place (`save` and the run lifecycle make it atomic)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    bias = getattr(model.config, "instructrl_score_bias", None)
    if bias is not None:  # the RM's bias shift is not part of the adapter weights
        (folder / EXTRA_FILE).write_text(json.dumps({"instructrl_score_bias": bias}))


def write_model(model, tokenizer, folder, merge: bool) -> None:
    """Write a (possibly peft) model into `folder`: merged into a plain transformers folder, or
    (`merge=False`) as an adapter folder on its base (recorded by absolute path)."""
    from instructrl.models import write_model_files

    if is_peft_model(model) and not merge:
        base = next(iter(model.peft_config.values())).base_model_name_or_path
        if base and (Path(base) / "config.json").exists():
            return write_adapter_files(model, tokenizer, folder)
        # The base is itself an adapter folder (or not a folder): an adapter on it would not load.
        log.warning("%s: the base model %s is not a full model folder; saving with the adapter merged", folder, base)
        model = model.merge_and_unload()
    write_model_files(for_saving(model, merge), tokenizer, folder)


def save(model, tokenizer, out_dir, merge: bool, extra: dict | None = None) -> Path:
    """`write_model` atomically into `out_dir` (with `extra` files, see models.write_extra_files)."""
    from instructrl.models import atomic_folder, write_extra_files

    return atomic_folder(out_dir, lambda tmp: (write_model(model, tokenizer, tmp, merge), write_extra_files(tmp, extra)))


def record_base_path(model, path) -> None:
    """Record the base folder by absolute path, so that an unmerged adapter folder loads from anywhere."""
    model.name_or_path = str(Path(path).resolve())
    if hasattr(model, "config"):
        model.config._name_or_path = str(Path(path).resolve())


def is_adapter_folder(path) -> bool:
    p = Path(path)
    return (p / ADAPTER_CONFIG).exists() and not (p / "config.json").exists()


def load_merged(path, kind: str = "policy", trust_remote_code: bool = False):
    """(model, tokenizer) of an adapter folder written with lora_merge=false, adapters merged."""
    peft = require_peft()
    from instructrl.models import load_tokenizer

    p = Path(path)
    tok = load_tokenizer(p, trust_remote_code)
    base = json.loads((p / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base or not Path(base).exists():
        raise ModelFolderError(f"{p}: adapter folder whose base model {base!r} is not a local folder")
    cls = peft.AutoPeftModelForCausalLM if kind == "policy" else peft.AutoPeftModelForSequenceClassification
    kw = {"num_labels": 1} if kind != "policy" else {}
    try:
        model = cls.from_pretrained(p, dtype=torch.float32, trust_remote_code=trust_remote_code, **kw)
    except Exception as e:
        raise ModelFolderError(f"{p}: could not load the adapter on {base}: {e}") from None
    model = model.merge_and_unload()
    if (p / EXTRA_FILE).exists():
        model.config.instructrl_score_bias = json.loads((p / EXTRA_FILE).read_text())["instructrl_score_bias"]
    return model, tok


def prepare(model, cfg, path=None, task: str = "CAUSAL_LM"):
    """The memory options and LoRA of a stage config, applied to a freshly loaded model:
    gradient checkpointing (`cfg.gradient_checkpointing`) and LoRA adapters (`cfg.lora_r > 0`).
    Returns the model to train (a peft wrapper with LoRA)."""
    if getattr(cfg, "gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if not enabled(cfg):
        return model
    if path is not None:
        record_base_path(model, path)
    if getattr(cfg, "gradient_checkpointing", False):
        model.enable_input_require_grads()
    return apply(model, cfg, task)
