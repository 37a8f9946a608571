"""Model folders: build the world's base models, load/save HF folders, the scalar-head reward model.

Everything here reads and writes ordinary Hugging Face folders: a policy loads with
`AutoModelForCausalLM.from_pretrained`, a reward or value model with
`AutoModelForSequenceClassification.from_pretrained` (num_labels=1).

Reward model ([IG] §3.5, [ST] App. B.1): the causal LM with its unembedding replaced by a scalar
head, initialised N(0, 1/sqrt(d_model + 1)) ([NB] notes the paper's 1/(d+1) is a typo for the
std). The score is read at the last real token of prompt+response (our EOS).

Bias normalisation ([IG] §3.5): HF classification heads have no bias, so the shift that makes
demonstrations score mean 0 is folded into the bias of the final LayerNorm (GPT-2, GPT-NeoX):
score = w·(h + δ) = w·h + c with δ = c·w/|w|². This is exact and survives a plain-transformers load.
Architectures whose final norm has no bias (RMSNorm: Llama, Qwen2) store the shift in
`config.instructrl_score_bias`; our loaders add it, a plain-transformers load is off by that
constant (rankings and PPO advantages are unaffected).
"""

from __future__ import annotations

import ctypes
import inspect
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, GPT2Config,
                          GPT2LMHeadModel)
from transformers.activations import GELUTanh, NewGELUActivation
from transformers.utils import logging as hf_logging

from instructrl import lora
from instructrl.data import render
from instructrl.data.collate import pad_right
from instructrl.errors import DataError, ModelFolderError

log = logging.getLogger(__name__)


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and reports: our stages print their own progress."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


quiet_transformers()

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


# ---------------------------------------------------------------------------------------------
# Building and saving
# ---------------------------------------------------------------------------------------------


def build_gpt2(tokenizer, n_layer: int, n_embd: int, n_head: int, n_positions: int, dropout: float = 0.0, seed: int = 0,
               activation: str = "gelu_new"):
    """A randomly initialised GPT-2 LM sized for the world's tokenizer (sdpa attention).

    `activation`: GPT-2's 'gelu_new', or 'gelu_pytorch_tanh' (the same tanh-approximate GELU as
    one fused op; what `instructrl pretrain` builds by default, `PretrainConfig.activation`)."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        activation_function=activation,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.config._attn_implementation = "sdpa"
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def write_extra_files(folder: Path, extra: dict | None) -> None:
    """Write `extra` ({relative path: bytes / dict or list (as JSON) / text}) into `folder`, making
    sub-folders as needed ("tensorboard/events...", from train_utils.tree_files)."""
    for name, content in (extra or {}).items():
        p = Path(folder) / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif isinstance(content, (dict, list)):
            p.write_text(json.dumps(content, indent=2))
        else:
            p.write_text(str(content))


def write_model_files(model, tokenizer, folder) -> None:
    """Write an HF model folder's files (config, safetensors weights, tokenizer) into `folder`, in
    place; `save_model_folder` and the run lifecycle (`run.Run.finish`) make it atomic."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = getattr(model, "generation_config", None)
    if gen is not None and tokenizer is not None:  # before saving: generation_config.json gets them
        gen.pad_token_id = tokenizer.pad_token_id
        gen.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def save_model_folder(model, tokenizer, out_dir, extra: dict | None = None) -> Path:
    """Write a complete HF folder atomically: a temp folder beside `out_dir`, then a rename.

    A crash mid-save leaves no folder that looks complete. `extra` maps file names (or relative
    paths) to text/dicts/bytes (e.g. the resolved config) written into the folder before the rename.
    """
    return atomic_folder(out_dir, lambda tmp: (write_model_files(model, tokenizer, tmp), write_extra_files(tmp, extra)))


def atomic_folder(out_dir, fill) -> Path:
    """Make the folder `out_dir` atomically: `fill(tmp)` writes a temp folder beside it, which is
    fsynced and renamed into place (replacing an old `out_dir` in one swap). A failure or a kill
    leaves the old folder as it was."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        fill(tmp)
        _fsync_tree(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders; an output folder should be readable like any other
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def replace_dir(src: Path, dst: Path) -> None:
    """Atomically put `src` at `dst` (the old `dst`, if any, is removed only after the rename)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and _exchange(src, dst):  # one atomic swap: `dst` is always the old or the new folder
        shutil.rmtree(src, ignore_errors=True)  # (now the old one)
    elif dst.exists():  # no renameat2: two renames; a crash between them leaves the old folder at `.NAME.old-PID`
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
    try:
        fd = os.open(dst.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _fsync_tree(path: Path) -> None:
    for p in Path(path).rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def check_model_folder(path, kind: str = "any") -> dict:
    """Validate a model folder before loading; returns its config.json as a dict.

    kind: 'policy' (a causal LM), 'reward' (a sequence-classification model), or 'any'.
    """
    p = Path(path)
    if not p.is_dir():
        raise ModelFolderError(f"model folder not found: {p}")
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        raise ModelFolderError(f"{p}: not a Hugging Face model folder (no config.json)")
    if not any((p / w).exists() for w in WEIGHT_FILES):
        raise ModelFolderError(f"{p}: no weights found (expected one of {', '.join(WEIGHT_FILES)})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFolderError(f"{cfg_path}: not valid JSON: {e}") from None
    archs = cfg.get("architectures") or []
    is_cls = any(a.endswith("ForSequenceClassification") for a in archs)
    if kind == "policy" and is_cls:
        raise ModelFolderError(f"{p}: this is a reward/value model ({archs[0]}); a policy (causal LM) folder is expected here")
    if kind == "reward" and archs and not is_cls:
        raise ModelFolderError(f"{p}: this is a causal LM ({archs[0]}); a reward model folder (from `instructrl rm`) is expected here")
    return cfg


#: Files one of which a folder's tokenizer needs (fast, SentencePiece, BPE vocab, WordPiece, tiktoken).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt", "tokenizer.tiktoken",
                   "tiktoken.model", "sentencepiece.bpe.model")


def load_tokenizer(path, trust_remote_code: bool = False):
    p = Path(path)
    if p.is_dir() and not any((p / f).exists() for f in TOKENIZER_FILES) and not trust_remote_code:
        raise ModelFolderError(
            f"{p}: no tokenizer files (none of {', '.join(TOKENIZER_FILES[:5])}, ...); save the model's tokenizer "
            f"into the folder (tokenizer.save_pretrained('{p}'))")
    try:
        tok = AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code)
    except Exception as e:  # missing/corrupt tokenizer files
        raise ModelFolderError(f"{p}: could not load a tokenizer: {e}") from None
    if tok.eos_token_id is None:
        raise ModelFolderError(f"{p}: the tokenizer has no EOS token; responses could never end")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        # A dedicated pad token: with pad == EOS, EOS would be masked and the model never learns to stop.
        tok.add_special_tokens({"pad_token": "<|pad|>"})
        log.warning("%s: tokenizer had no separate pad token; added '<|pad|>' (id %d)", p, tok.pad_token_id)
    return tok


def _check_vocab(model, tok, path):
    emb = model.get_input_embeddings().weight.shape[0]
    if len(tok) > emb:
        # A pad token added on load (ours, '<|pad|>', or a tokenizer class's default such as
        # Qwen2's '<|endoftext|>') is the one token past the embedding: grow it by that row.
        if len(tok) == emb + 1 and tok.pad_token_id == emb:
            model.resize_token_embeddings(len(tok))
            return
        raise ModelFolderError(f"{path}: tokenizer has {len(tok)} tokens but the model's embedding has {emb} rows: they do not belong together")


def load_policy(path, trust_remote_code: bool = False, dtype=torch.float32):
    """(model, tokenizer) of a causal-LM folder, dropout off, in eval mode."""
    if lora.is_adapter_folder(path):  # an unmerged LoRA output (lora_merge=false): merge on load
        model, tok = lora.load_merged(path, "policy", trust_remote_code)
        return _finish_load(model, tok, path, train=False)
    check_model_folder(path, "policy")
    tok = load_tokenizer(path, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelFolderError(f"{path}: could not load a causal LM: {e}") from None
    _check_vocab(model, tok, path)
    _check_finite(model, path)
    model.config.pad_token_id = tok.pad_token_id
    set_dropout(model, 0.0)
    fuse_gelu(model)
    model.eval()
    return model, tok


def reward_model_from_causal_lm(path, trust_remote_code: bool = False, seed: int = 0):
    """The paper's RM init: the (SFT) LM's backbone with a fresh scalar head N(0, 1/sqrt(d+1))."""
    if lora.is_adapter_folder(path):  # an unmerged LoRA SFT output: merge, then put a head on it
        lm, tok = lora.load_merged(path, "policy", trust_remote_code)
        with tempfile.TemporaryDirectory() as tmp:
            lm.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            return reward_model_from_causal_lm(tmp, trust_remote_code, seed)
    check_model_folder(path, "any")
    tok = load_tokenizer(path, trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    _check_vocab(model, tok, path)
    _check_finite(model, path)
    model.config.pad_token_id = tok.pad_token_id
    head = score_head(model)
    d = head.weight.shape[1]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) / math.sqrt(d + 1))
        if head.bias is not None:
            head.bias.zero_()
    set_dropout(model, 0.0)
    fuse_gelu(model)
    return model, tok


def load_reward_model(path, trust_remote_code: bool = False, dtype=torch.float32):
    """(model, tokenizer) of a reward/value folder written by `instructrl rm` (or any 1-label classifier)."""
    if lora.is_adapter_folder(path):  # an unmerged LoRA RM output: merge on load
        model, tok = lora.load_merged(path, "reward", trust_remote_code)
        return _finish_load(model, tok, path, train=False)
    cfg = check_model_folder(path, "reward")
    if cfg.get("num_labels", len(cfg.get("id2label", {}) or {0: 0})) not in (1, None):
        raise ModelFolderError(f"{path}: a reward model has one output label")
    tok = load_tokenizer(path, trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype, trust_remote_code=trust_remote_code)
    _check_vocab(model, tok, path)
    _check_finite(model, path)
    model.config.pad_token_id = tok.pad_token_id
    set_dropout(model, 0.0)
    fuse_gelu(model)
    model.eval()
    return model, tok


# ---------------------------------------------------------------------------------------------
# Scores and values
# ---------------------------------------------------------------------------------------------


def _unwrap(model):
    """The transformers model inside a peft wrapper (LoRA layers included), or `model` itself."""
    return model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model


def score_head(model) -> nn.Linear:
    model = _unwrap(model)
    for name in ("score", "classifier", "v_head"):
        head = getattr(model, name, None)
        if hasattr(head, "modules_to_save"):  # peft trains a copy of the head (modules_to_save)
            active = [a for a in head.active_adapters if a in head.modules_to_save]
            head = head.original_module if head.disable_adapters or not active else head.modules_to_save[active[0]]
        if isinstance(head, nn.Linear):
            return head
    raise ModelFolderError(f"{type(model).__name__}: no scalar score head found")


def backbone(model):
    return _unwrap(model).base_model


def final_norm(model):
    bb = backbone(model)
    for name in ("ln_f", "final_layer_norm", "norm"):
        m = getattr(bb, name, None)
        if m is not None:
            return m
    return None


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding: cumsum(mask) - 1, clamped at 0 ([NB])."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


def token_scores(model, input_ids, attention_mask, position_ids=None) -> torch.Tensor:
    """Per-token scalar outputs (B, T) of a 1-label classification model (the value function)."""
    if getattr(getattr(model, "module", model), "is_token_scores_wrapper", False):  # distributed.TokenScores (DDP/FSDP)
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    view_of = getattr(model, "adapter_view_of", None)  # lora.ReferenceView: the model with its adapters off
    if view_of is not None:
        with torch.no_grad(), view_of.disable_adapter():
            return token_scores(view_of, input_ids, attention_mask, position_ids)
    if position_ids is None:
        position_ids = position_ids_from_mask(attention_mask)
    out = backbone(model)(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    scores = score_head(model)(out.last_hidden_state).squeeze(-1)
    return scores + getattr(model.config, "instructrl_score_bias", 0.0)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token in each row (works for left and right padding)."""
    T = attention_mask.shape[-1]
    idx = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), idx, torch.full_like(idx, -1)).max(-1).values


def sequence_scores(model, input_ids, attention_mask, position_ids=None) -> torch.Tensor:
    """RM score (B,) read at the last real token of each row (the EOS of prompt+response)."""
    per_token = token_scores(model, input_ids, attention_mask, position_ids)
    idx = last_token_index(attention_mask)
    return per_token.gather(1, idx.unsqueeze(1)).squeeze(1)


def context_length(model, default: int | None = None) -> int | None:
    """The model's context in tokens (`n_positions` / `max_position_embeddings` / `n_ctx`), else `default`."""
    conf = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(conf, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return default


@torch.no_grad()
def score_token_pairs(model, prompt_ids, response_ids, eos_id: int, pad_id: int,
                      batch_size: int = 64) -> torch.Tensor:
    """RM scores (N,) of token pairs: the score at the EOS of ``prompt + response + [EOS]``.

    The one rule for scoring a response with a reward model, used by PPO's rollouts, evaluation
    (`evaluate.rm_scores`) and SFT's RM-score checkpoint selection: the RM was trained on
    ``prompt + response + EOS`` and reads its score at that EOS, so every response is scored there
    — one that ended by emitting EOS and one cut off at ``max_new_tokens`` alike (a truncated
    response is scored as if it ended where it was cut; the [N+] "EOS trick", a fixed penalty for
    it, is PPO's separate option `eos_penalty`). ``response_ids`` hold the response tokens
    *without* a trailing EOS. A pair longer than the context keeps the end of its prompt (and at
    most context - 2 response tokens). Right padded; CPU float tensor out.
    """
    limit = context_length(model, 10**9)
    seqs, groups = [], {}
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        resp = list(r)[: limit - 2] + [eos_id]
        if p and len(p) + len(resp) <= limit:  # rows of one prompt, none of it cut: they share it
            groups.setdefault(tuple(p), []).append(i)
        seqs.append(list(p)[-(limit - len(resp)):] + resp)
    return score_grouped_sequences(model, seqs, list(groups.values()), pad_id, batch_size)


def length_sorted_chunks(lengths: list[int], chunk_rows: int) -> list[list[int]]:
    """Row indices in chunks of at most `chunk_rows`, the rows sorted by length (stable), so that each
    chunk, right padded to its own longest row, computes few padding positions. `chunk_rows` 0 (or at
    least the number of rows): one chunk of every row in the input order, i.e. no reordering at all."""
    n = len(lengths)
    if chunk_rows <= 0 or chunk_rows >= n:
        return [list(range(n))] if n else []
    order = sorted(range(n), key=lambda i: lengths[i])
    return [order[c:c + chunk_rows] for c in range(0, n, chunk_rows)]


def chunked_sequence_scores(model, seqs, pad_id: int, chunk_rows: int, device=None) -> torch.Tensor:
    """RM scores (N,) of token sequences (each ending in EOS) in the input order, computed as
    `length_sorted_chunks`: one forward per chunk of rows sorted by length, each right padded only to
    its own longest. Every row's score is the one `sequence_scores` gives it in a batch of all rows,
    to float rounding (a row never attends beyond its own tokens); what changes is how many padding
    positions are computed: on the default's RM batches (16 prompts, K = 4..9) 56% of a batch padded
    to its longest row is real tokens. Differentiable: one backward through the returned tensor
    covers every chunk (the gradient is the sum over rows, as for a single forward)."""
    parts, index = [], []
    for rows in length_sorted_chunks([len(s) for s in seqs], chunk_rows):
        ids, attn = pad_right([seqs[i] for i in rows], pad_id)
        if device is not None:
            ids, attn = ids.to(device), attn.to(device)
        parts.append(sequence_scores(model, ids, attn))
        index += rows
    if not parts:
        return torch.zeros(0)
    return _in_input_order(torch.cat(parts), index)


def _in_input_order(scores: torch.Tensor, index: list[int]) -> torch.Tensor:
    """`scores[j]` belongs to input row `index[j]`: the scores in input-row order (differentiable)."""
    if index == list(range(len(index))):
        return scores
    inverse = torch.empty(len(index), dtype=torch.long)
    inverse[torch.tensor(index, dtype=torch.long)] = torch.arange(len(index))
    return scores[inverse.to(scores.device)]


def common_prefix_length(seqs) -> int:
    """Length of the token prefix that all of `seqs` share, at most the shortest one's length - 1
    (so every sequence keeps at least its last token, where its score is read)."""
    n = min(len(x) for x in seqs) - 1
    first = seqs[0]
    c = 0
    while c < n and all(x[c] == first[c] for x in seqs):
        c += 1
    return c


def _cache_layers(cache):
    """(keys, values) per layer of a transformers KV cache (Cache object or legacy tuples)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(kv[0], kv[1]) for kv in cache]


def prefix_shared_scores(model, groups, pad_id: int, chunk_rows: int, device=None) -> torch.Tensor:
    """RM scores (N,) of every sequence of `groups` (a list of lists of token sequences; N = their
    total, in `groups` order as `rm.flatten_prompts` lays them out), where the sequences of a group
    share a prefix (the K responses of one prompt share the prompt): that prefix runs through the
    model ONCE per group, and each sequence's remaining tokens run over a copy of its group's cached
    keys and values, in length-sorted chunks of `chunk_rows` (0 = all at once).

    The same scores as `chunked_sequence_scores` to float rounding (a causal model's states of a
    prefix do not depend on what follows it; positions continue from the prefix's length), and,
    differentiable through the cache, the same gradients: the prefix's backward sums over its K
    continuations, as K copies of it would. On the default's RM batches the prompt is 64% of the
    real tokens. Needs a plain causal backbone that returns a KV cache in training mode (not under
    gradient checkpointing) and takes `position_ids`; `rm.py` checks the result against
    `chunked_sequence_scores` on its first step and falls back to that otherwise.
    """
    from transformers import DynamicCache

    prefix, rest, group = [], [], []
    for g, seqs in enumerate(groups):
        c = common_prefix_length(seqs)
        if c == 0:
            raise ValueError("prefix_shared_scores: a group's sequences share no prefix")
        prefix.append(list(seqs[0][:c]))
        for x in seqs:
            rest.append(list(x[c:]))
            group.append(g)
    group = torch.tensor(group, dtype=torch.long)
    p_ids, p_mask = pad_right(prefix, pad_id)
    if device is not None:
        p_ids, p_mask, group = p_ids.to(device), p_mask.to(device), group.to(device)
    bb = backbone(model)
    out = bb(input_ids=p_ids, attention_mask=p_mask, position_ids=position_ids_from_mask(p_mask), use_cache=True)
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if cache is None:
        raise ValueError(f"{type(bb).__name__} returned no KV cache (gradient checkpointing?)")
    layers = _cache_layers(cache)
    p_len = p_mask.long().sum(-1)
    head, bias = score_head(model), getattr(model.config, "instructrl_score_bias", 0.0)
    params = inspect.signature(bb.forward).parameters  # transformers 5.x: `cache`; before: `past_key_values`
    cache_kw = "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"
    parts, index = [], []
    for rows in length_sorted_chunks([len(x) for x in rest], chunk_rows):
        r_ids, r_mask = pad_right([rest[i] for i in rows], pad_id)
        if device is not None:
            r_ids, r_mask = r_ids.to(device), r_mask.to(device)
        g = group[torch.tensor(rows, dtype=torch.long, device=group.device)]
        # Each row's copy of its prompt's keys and values as a one-hot matmul, not k[g]: the backward
        # of an index with repeats accumulates in a thread-dependent order (not bit-reproducible),
        # a matmul's does not.
        sel = torch.nn.functional.one_hot(g, len(groups)).to(layers[0][0].dtype)
        kv = DynamicCache()
        for li, (k, v) in enumerate(layers):
            kv.update((sel @ k.reshape(k.shape[0], -1)).view(len(rows), *k.shape[1:]),
                      (sel @ v.reshape(v.shape[0], -1)).view(len(rows), *v.shape[1:]), li)
        attn = torch.cat([p_mask[g], r_mask], dim=1)
        pos = p_len[g].unsqueeze(1) + torch.arange(r_ids.shape[1], device=r_ids.device).unsqueeze(0)
        h = bb(input_ids=r_ids, attention_mask=attn, position_ids=pos, use_cache=False, **{cache_kw: kv}).last_hidden_state
        scores = head(h).squeeze(-1) + bias
        parts.append(scores.gather(1, last_token_index(r_mask).unsqueeze(1)).squeeze(1))
        index += rows
    return _in_input_order(torch.cat(parts), index)


#: Score many sequences in batches of similar length (`length_sorted_chunks`): the same scores to
#: float rounding (~1e-6) with fewer padding positions computed. False = batches in the input order
#: (the runs made before it was the default). Applies only when there is more than one batch.
SORT_SCORING = True


@torch.no_grad()
def score_sequences(model, seqs, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """RM scores (CPU float tensor) of complete token sequences (each ending in EOS), right padded,
    in batches of `batch_size` (sorted by length when `SORT_SCORING` and there is more than one
    batch; returned in the input order); the model is in eval mode while scoring."""
    device = next(model.parameters()).device
    was_training = getattr(model, "training", False)
    model.eval()
    if SORT_SCORING and len(seqs) > batch_size:
        out = chunked_sequence_scores(model, seqs, pad_id, batch_size, device).float().cpu()
        model.train(was_training)
        return out
    out = []
    for i in range(0, len(seqs), batch_size):
        ids, attn = pad_right(seqs[i:i + batch_size], pad_id)
        out.append(sequence_scores(model, ids.to(device), attn.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def prefix_sharing_mismatch(model, groups, pad_id: int, chunk_rows: int, device=None) -> str:
    """Why `prefix_shared_scores` does not suit ``model`` on ``groups`` (lists of sequences sharing a
    prefix), or "" when it does: its scores equal `chunked_sequence_scores` of the whole sequences
    within 1e-4 + 1e-4 x the largest score. A backbone without a usable KV cache (gradient
    checkpointing, no ``position_ids``) is named by the exception it raised."""
    try:
        shared = prefix_shared_scores(model, groups, pad_id, chunk_rows, device).float()
        whole = chunked_sequence_scores(model, [x for g in groups for x in g], pad_id, chunk_rows, device).float()
    except Exception as e:  # noqa: BLE001 - reported, and the caller scores whole sequences
        return f"{type(e).__name__}: {e}"
    diff = float((shared - whole).abs().max())
    tol = 1e-4 + 1e-4 * float(whole.abs().max())
    return "" if diff <= tol else f"scores differ by {diff:.3g} > {tol:.3g}"


#: No-grad scoring of rows that share a prompt (best-of-n's n samples of a prompt, a ranking's K
#: responses): each prompt's tokens once per group, its rows continuing over its cached keys and
#: values (`prefix_shared_scores`). The same scores to float rounding (~1e-6), checked against whole
#: sequences on each call's first group (a backbone it does not suit falls back, once said). False =
#: every row whole (`score_sequences`), as runs made before it scored.
SHARE_PREFIX_SCORING = True
_PREFIX_SCORING_REFUSED: set = set()  # model classes already said to fall back


@torch.no_grad()
def score_grouped_sequences(model, seqs, groups, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """RM scores (CPU float tensor, input order) of complete token sequences, where ``groups`` lists
    row indices whose sequences share a prefix (typically one prompt's responses). Groups of two or
    more rows (with `SHARE_PREFIX_SCORING`) are scored by `prefix_shared_scores` in calls of about
    4 x `batch_size` rows, chunks of `batch_size` sorted by length, groups ordered by prefix length
    (so the prefixes of one call pad little); every other row by `score_sequences`. A row in no
    group, or in several, is scored whole / once. The model is in eval mode while scoring."""
    seen: set = set()
    shared = []
    for g in groups:
        g = [i for i in g if i not in seen]
        if len(g) >= 2:
            c = common_prefix_length([seqs[i] for i in g])
            if c > 0:
                shared.append((c, g))
                seen.update(g)
    if not SHARE_PREFIX_SCORING or not shared:
        return score_sequences(model, seqs, pad_id, batch_size)
    device = next(model.parameters()).device
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        why = prefix_sharing_mismatch(model, [[seqs[i] for i in shared[0][1]]], pad_id, 0, device)
        if why:
            name = type(model).__name__
            if name not in _PREFIX_SCORING_REFUSED:
                _PREFIX_SCORING_REFUSED.add(name)
                log.warning("scoring each row whole: shared-prompt scoring does not suit %s (%s)", name, why)
            return score_sequences(model, seqs, pad_id, batch_size)
        out = torch.zeros(len(seqs))
        shared.sort(key=lambda cg: cg[0])
        call: list = []
        for k, (_, g) in enumerate(shared):
            call.append(g)
            if sum(len(x) for x in call) >= 4 * batch_size or k == len(shared) - 1:
                rows = [i for x in call for i in x]
                out[torch.tensor(rows)] = prefix_shared_scores(
                    model, [[seqs[i] for i in x] for x in call], pad_id, batch_size, device).float().cpu()
                call = []
        rest = [i for i in range(len(seqs)) if i not in seen]
        if rest:
            out[torch.tensor(rest)] = score_sequences(model, [seqs[i] for i in rest], pad_id, batch_size)
        return out
    finally:
        model.train(was_training)


def score_texts(model, tokenizer, prompts, responses, batch_size: int = 64, fmt=None, messages=None) -> torch.Tensor:
    """RM scores (N,) of (prompt, response) texts, by `score_token_pairs`'s rule: the score at the
    EOS of prompt + response + EOS. The text is rendered by ``fmt`` (instructrl.data.render: the
    format the RM was trained with; default: as written, tokenized without special tokens);
    ``messages[i]`` is the conversation of prompt i when it was a chat record (else None). A
    prompt too long for the context is shortened without cutting into a template's header."""
    if len(prompts) != len(responses):
        raise ValueError("score_texts: prompts and responses differ in length")
    fmt = fmt or render.legacy_format(tokenizer, None)
    messages = list(messages) if messages is not None else [None] * len(prompts)
    limit = context_length(model, 10**9)
    prompt_ids, response_ids = [], []
    for p, r, m in zip(prompts, responses, messages):
        text = render.prompt_text(fmt, tokenizer, p, m)
        resp = render.response_ids(fmt, tokenizer, text, r, m)[:-1]  # score_token_pairs appends the EOS
        ids = render.prompt_ids(fmt, tokenizer, p, m)
        budget = limit - min(len(resp), limit - 2) - 1
        if len(ids) > budget and not fmt.raw:
            try:
                ids = render.fit_prompt(fmt, tokenizer, p, m, budget, warn=False)
            except DataError:  # a template longer than the context: score_token_pairs keeps its end
                pass
        prompt_ids.append(ids)
        response_ids.append(resp)
    return score_token_pairs(model, prompt_ids, response_ids, tokenizer.eos_token_id, tokenizer.pad_token_id,
                             batch_size)


def add_score_bias(model, c: float) -> None:
    """Add the constant `c` to every score: fold it into the final LayerNorm's bias when it has one."""
    head = score_head(model)
    norm = final_norm(model)
    if _unwrap(model) is not model:  # unmerged LoRA: only the adapter is saved, so keep c in the config
        norm = None
    with torch.no_grad():
        if head.bias is not None:
            head.bias.add_(c)
        elif norm is not None and getattr(norm, "bias", None) is not None and head.weight.shape[0] == 1:
            w = head.weight[0]
            norm.bias.add_(c * w / (w @ w))
        else:
            model.config.instructrl_score_bias = float(getattr(model.config, "instructrl_score_bias", 0.0) + c)


def _check_finite(model, path) -> None:
    """A folder whose weights hold NaN/inf (a diverged run) is refused at load, with the tensor's
    name, rather than failing later inside sampling ("probability tensor contains inf/nan")."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise ModelFolderError(f"{path}: the weights hold NaN/inf values (tensor {name}); this model folder "
                                       f"comes from a diverged run and cannot be used")


def _finish_load(model, tok, path, train: bool = False):
    _check_vocab(model, tok, path)
    _check_finite(model, path)
    model.config.pad_token_id = tok.pad_token_id
    set_dropout(model, 0.0)
    fuse_gelu(model)
    model.train(train)
    return model, tok


def set_dropout(model, p: float) -> None:
    """Set every dropout probability (the paper turns dropout off in RM and PPO; SFT uses 0.2)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout"):
        if hasattr(model.config, key) and isinstance(getattr(model.config, key), float):
            setattr(model.config, key, p)


#: Run GPT-2's tanh-approximate GELU ("gelu_new", 6 elementwise ops) as torch's fused kernel
#: (`gelu(x, approximate="tanh")`, the same formula, ~1e-7 apart) in every model our loaders return
#: (issue 18). Only the module in memory changes: the config, and so the saved folder, still says
#: "gelu_new". False keeps transformers' module (the reference for the equality test).
FUSED_GELU = True


def fuse_gelu(model) -> int:
    """Swap each `NewGELUActivation` module of `model` for transformers' fused `GELUTanh` (if
    FUSED_GELU); returns how many were swapped. Any architecture: modules are found by type."""
    if not FUSED_GELU:
        return 0
    names = [n for n, m in model.named_modules() if type(m) is NewGELUActivation]
    for n in names:
        parent, _, child = n.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, GELUTanh())
    return len(names)


#: Dropout modules on a residual branch (applied to a block's attention or MLP output before it is
#: added to the residual stream), by name suffix: GPT-2 / GPT-J (`attn.resid_dropout`,
#: `mlp.dropout`), GPT-NeoX (`post_attention_dropout`, `post_mlp_dropout`). Llama and Qwen2 have none.
RESIDUAL_DROPOUT_SUFFIXES = ("attn.resid_dropout", "mlp.dropout", "post_attention_dropout", "post_mlp_dropout")


def set_residual_dropout(model, p: float) -> list[str]:
    """Set the probability of the residual dropouts only ([IG] App. C.1: SFT uses residual dropout
    0.2); embedding and attention-probability dropout stay as they are (off after our loaders).
    Returns the names of the modules changed; an architecture without residual dropout (Llama,
    Qwen2) gets a warning when p > 0, since the setting then does nothing."""
    changed = [n for n, m in model.named_modules()
               if isinstance(m, nn.Dropout) and n.endswith(RESIDUAL_DROPOUT_SUFFIXES)]
    for n in changed:
        model.get_submodule(n).p = p
    if p > 0 and not changed:
        log.warning("%s has no residual dropout modules; dropout=%g has no effect",
                    type(model).__name__, p)
    return changed


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
