"""The embedded world: instruction families, a gold judge, simulated labelers, a pretraining
corpus with benchmarks, and ``build_world`` that writes it all as ordinary JSONL files.

Pure Python (no torch): see tasks.py, judge.py, labelers.py, corpus.py, build.py.
"""

from .build import WORLD_FILES, build_world, load_world, load_world_summary
from .corpus import make_benchmarks, make_corpus, make_document
from .judge import (
    follows_constraint,
    gold_answer,
    gold_details,
    gold_score,
    is_idk,
    is_refusal,
    parse_prompt,
)
from .labelers import (
    Labeler,
    agreement,
    make_calibration_items,
    make_labeler_pool,
    pool_agreement,
    sft_like_responses,
)
from .tasks import (
    ANSWERABLE,
    ENTITIES,
    FAMILIES,
    FAMILY_WEIGHTS,
    IDK,
    REFUSAL,
    Example,
    format_prompt,
    make_example,
    sample_examples,
)

__all__ = [
    "WORLD_FILES", "build_world", "load_world", "load_world_summary",
    "make_benchmarks", "make_corpus", "make_document",
    "follows_constraint", "gold_answer", "gold_details", "gold_score", "is_idk", "is_refusal",
    "parse_prompt",
    "Labeler", "agreement", "make_calibration_items", "make_labeler_pool", "pool_agreement",
    "sft_like_responses",
    "ANSWERABLE", "ENTITIES", "FAMILIES", "FAMILY_WEIGHTS", "IDK", "REFUSAL", "Example",
    "format_prompt", "make_example", "sample_examples",
]
