"""Input files: readers/validators (``readers``, pure Python) and tokenization/padding (``collate``, torch).

``instructrl.data`` re-exports the readers only, so importing it does not import torch.
"""

from instructrl.data.readers import (
    KINDS,
    Demonstration,
    Prompt,
    Ranking,
    describe,
    detect_kind,
    parse_demonstration,
    parse_prompt,
    parse_ranking,
    read_demonstrations,
    read_pretrain_texts,
    read_prompts,
    read_rankings,
    render_messages_plain,
    write_jsonl,
)

__all__ = [
    "KINDS",
    "Demonstration",
    "Prompt",
    "Ranking",
    "describe",
    "detect_kind",
    "parse_demonstration",
    "parse_prompt",
    "parse_ranking",
    "read_demonstrations",
    "read_pretrain_texts",
    "read_prompts",
    "read_rankings",
    "render_messages_plain",
    "write_jsonl",
]
