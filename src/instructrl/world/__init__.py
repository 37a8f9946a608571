"""The embedded world (v2): families after InstructGPT's Table 1, a gold judge that applies the
paper's labeler rubric, writers with habits, simulated labelers, a pretraining corpus with
benchmarks, and ``build_world`` that writes it all as ordinary JSONL files.

Pure Python (no torch): lexicon.py (words and facts), spec.py (the prompt mix and the rubric's
weights, in one place), tasks.py (families), algorithmic.py (the v1 closed-QA control), judge.py
(the rubric), styles.py (habits and bad answers), writers.py (demonstrations), labelers.py,
corpus.py, build.py.
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
from .spec import ATTRIBUTES, FAMILY_CATEGORY, FIG4_ATTRIBUTES, RUBRIC, TABLE1
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
from .writers import WRITERS

__all__ = [
    "WORLD_FILES", "build_world", "load_world", "load_world_summary",
    "make_benchmarks", "make_corpus", "make_document",
    "follows_constraint", "gold_answer", "gold_details", "gold_score", "is_idk", "is_refusal",
    "parse_prompt",
    "Labeler", "agreement", "make_calibration_items", "make_labeler_pool", "pool_agreement",
    "sft_like_responses",
    "ATTRIBUTES", "FAMILY_CATEGORY", "FIG4_ATTRIBUTES", "RUBRIC", "TABLE1",
    "ANSWERABLE", "ENTITIES", "FAMILIES", "FAMILY_WEIGHTS", "IDK", "REFUSAL", "Example",
    "format_prompt", "make_example", "sample_examples", "WRITERS",
]
