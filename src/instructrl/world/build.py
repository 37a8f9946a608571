"""Write the world's data files: demonstrations, prompt sets, pretraining corpus, benchmarks.

``build_world(out_dir, seed)`` is deterministic: the same seed gives byte-identical files. Prompt
sets never share a prompt string; evaluation prompts and benchmark contexts never occur in the
pretraining corpus.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from ..errors import ConfigError, InstructRLError
from .corpus import DOC_KINDS, make_benchmarks, make_corpus
from .labelers import DEFAULT_NOISE
from .spec import FAMILY_CATEGORY, RUBRIC, TABLE1
from .tasks import ENTITIES, FAMILIES, FAMILY_WEIGHTS, sample_examples
from .writers import WRITERS, write_demonstrations

WORLD_FILES: dict[str, str] = {
    "demonstrations": "demonstrations.jsonl",
    "sft_val": "sft_val.jsonl",
    "rm_prompts": "rm_prompts.jsonl",
    "ppo_prompts": "ppo_prompts.jsonl",
    "eval_prompts": "eval_prompts.jsonl",
    "pretrain": "pretrain.jsonl",
    "pretrain_val": "pretrain_val.jsonl",
    "benchmarks": "benchmarks.jsonl",
    "world": "world.json",
}
WORLD_FORMAT_VERSION = 2

# Offsets that give each part of the world its own random stream (changing one part's size does
# not change the others).
_STREAMS = {"eval": 1, "sft_val": 2, "sft": 3, "rm": 4, "ppo": 5, "demo_style": 6,
            "corpus": 7, "corpus_val": 8, "benchmarks": 9}


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(seed * 1_000_003 + _STREAMS[stream])


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")


def build_world(
    out_dir,
    seed: int = 0,
    n_sft: int = 3000,
    n_sft_val: int = 200,
    n_rm: int = 2000,
    n_ppo: int = 2000,
    n_eval: int = 1000,
    corpus_chars: int = 2_000_000,
    n_benchmark: int = 1000,
    pretrain_val_chars: int | None = None,
) -> dict:
    """Build the world into ``out_dir`` and return the summary written to ``world.json``
    (plus ``"paths"``: file name -> path).

    Files: demonstrations.jsonl / sft_val.jsonl (``{"prompt", "response", "writer"}``), rm_prompts.jsonl,
    ppo_prompts.jsonl, eval_prompts.jsonl (``{"prompt", "family"}``), pretrain.jsonl /
    pretrain_val.jsonl (``{"text"}``), benchmarks.jsonl (``{"kind", "task", "context",
    "options", "label"}``), world.json. ``pretrain_val_chars`` defaults to 2% of the corpus.
    """
    sizes = _check_sizes(seed, n_sft=n_sft, n_sft_val=n_sft_val, n_rm=n_rm, n_ppo=n_ppo, n_eval=n_eval,
                         corpus_chars=corpus_chars, n_benchmark=n_benchmark)
    if pretrain_val_chars is None:
        pretrain_val_chars = max(corpus_chars // 50, 2000) if corpus_chars else 0
    sizes["pretrain_val_chars"] = pretrain_val_chars

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InstructRLError(f"cannot create world folder {out}: {e}") from e

    # Prompt splits: one shared "seen" set keeps every prompt string in exactly one split.
    # The evaluation split is drawn first so it always gets the full family mix.
    seen: set[str] = set()
    splits = {}
    for name, n in (("eval", n_eval), ("sft_val", n_sft_val), ("sft", n_sft), ("rm", n_rm),
                    ("ppo", n_ppo)):
        try:
            splits[name] = sample_examples(n, _rng(seed, name), exclude=seen, unique=True)
        except ValueError as e:
            total = n_eval + n_sft_val + n_sft + n_rm + n_ppo
            raise ConfigError(
                f"the world cannot make {total} distinct prompts across its splits (the {name} split ran "
                f"out: {e}); some families have few distinct prompts — ask for fewer prompts") from None
    eval_prompts = {ex.prompt for ex in splits["eval"]}

    # Demonstrations: each prompt answered by one of the world's writers (writers.py).
    style_rng = _rng(seed, "demo_style")
    demos = write_demonstrations(splits["sft"], style_rng)
    demos_val = write_demonstrations(splits["sft_val"], style_rng)

    corpus = make_corpus(_rng(seed, "corpus"), corpus_chars, exclude_prompts=eval_prompts) \
        if corpus_chars else []
    corpus_val = make_corpus(_rng(seed, "corpus_val"), pretrain_val_chars,
                             exclude_prompts=eval_prompts) if pretrain_val_chars else []
    benchmarks = make_benchmarks(_rng(seed, "benchmarks"), n_benchmark)

    paths = {name: out / fname for name, fname in WORLD_FILES.items()}
    _write_jsonl(paths["demonstrations"], demos)
    _write_jsonl(paths["sft_val"], demos_val)
    for name, split in (("rm_prompts", "rm"), ("ppo_prompts", "ppo"), ("eval_prompts", "eval")):
        _write_jsonl(paths[name], ({"prompt": ex.prompt, "family": ex.family}
                                   for ex in splits[split]))
    _write_jsonl(paths["pretrain"], ({"text": t} for t in corpus))
    _write_jsonl(paths["pretrain_val"], ({"text": t} for t in corpus_val))
    _write_jsonl(paths["benchmarks"], benchmarks)

    summary = _summary(seed, sizes, splits, corpus, corpus_val, benchmarks)
    with open(paths["world"], "w", encoding="utf-8", newline="\n") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
        f.write("\n")
    return {**summary, "paths": {name: str(p) for name, p in paths.items()}}


def load_world(world_dir) -> dict[str, Path]:
    """Paths of a built world's files (name -> Path); raises InstructRLError if any is missing."""
    d = Path(world_dir)
    if not d.is_dir():
        raise InstructRLError(f"world folder not found: {d} (build it with `instructrl world build`)")
    paths = {name: d / fname for name, fname in WORLD_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InstructRLError(f"world folder {d} is incomplete; missing: {', '.join(missing)}")
    return paths


def load_world_summary(world_dir) -> dict:
    """The contents of ``world.json``."""
    with open(load_world(world_dir)["world"], encoding="utf-8") as f:
        return json.load(f)


def _check_sizes(seed, **sizes) -> dict:
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"world: {key} must be a non-negative integer, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"world: seed must be an integer, got {seed!r}")
    return dict(sizes)


def _summary(seed: int, sizes: dict, splits: dict, corpus: list, corpus_val: list, benchmarks: list) -> dict:
    """What world.json records: sizes, the family mix and rubric, writers, per-split family counts,
    the corpus and the benchmarks."""
    def family_counts(examples):
        c = Counter(ex.family for ex in examples)
        return {f: c.get(f, 0) for f in FAMILIES}

    return {
        "format_version": WORLD_FORMAT_VERSION,
        "seed": seed,
        "sizes": sizes,
        "families": list(FAMILIES),
        "family_weights": dict(FAMILY_WEIGHTS),
        "family_category": dict(FAMILY_CATEGORY),
        "table1": dict(TABLE1),
        "rubric": dict(RUBRIC),
        "writers": {w.id: dict(w.lapses) for w in WRITERS},
        "counts": {
            "demonstrations": family_counts(splits["sft"]),
            "sft_val": family_counts(splits["sft_val"]),
            "rm_prompts": family_counts(splits["rm"]),
            "ppo_prompts": family_counts(splits["ppo"]),
            "eval_prompts": family_counts(splits["eval"]),
        },
        "corpus": {
            "n_docs": len(corpus),
            "n_chars": sum(len(t) for t in corpus),
            "val_docs": len(corpus_val),
            "val_chars": sum(len(t) for t in corpus_val),
            "doc_kinds": dict(DOC_KINDS),
        },
        "benchmarks": {"n": len(benchmarks),
                       "tasks": dict(sorted(Counter(b["task"] for b in benchmarks).items()))},
        "n_entities": len(ENTITIES),
        "labelers": {"noise": DEFAULT_NOISE},
        "files": {name: fname for name, fname in WORLD_FILES.items()},
    }
