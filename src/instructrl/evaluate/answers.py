"""How each model reads the evaluation prompts, and simple statistics of its answers.

Every model answers prompts rendered as it was trained (:mod:`instructrl.data.render`):
:func:`model_format` resolves its format from its folder, :func:`prompt_inputs` renders the prompt
records to token ids for generation. :func:`answer_stats` gives the empty-answer and EOS rates;
:func:`pick_sample_prompts` the few prompts whose answers the report shows side by side.
"""

from __future__ import annotations

from typing import Sequence

from instructrl.data import render

__all__ = ["model_format", "prompt_inputs", "answer_stats", "pick_sample_prompts"]


def model_format(tokenizer, folder, cfg, data=None) -> render.PromptFormat:
    """The prompt format of the model in ``folder`` for this eval (``cfg.prompt_format`` /
    ``cfg.plain_template``; auto = as it was trained); an error when it differs from its record."""
    fmt = render.resolve(tokenizer, getattr(cfg, "prompt_format", "auto"), getattr(cfg, "plain_template", ""),
                         folder, [data])
    render.check_matches(fmt, folder, f"model {folder}")
    return fmt


def prompt_inputs(fmt: render.PromptFormat, tokenizer, records, max_prompt_len: int | None) -> list[list[int]]:
    """Token ids of each prompt record (``readers.Prompt``) as the model reads it, fitted to
    ``max_prompt_len`` (never cutting into a template's header)."""
    return [render.prompt_ids(fmt, tokenizer, r.prompt, r.messages, max_prompt_len, r.source, r.line)
            for r in records]


def answer_stats(answers: Sequence[str], ended: Sequence[bool]) -> dict:
    """``empty``: share of answers that are empty (or only whitespace); ``eos``: share that ended
    with EOS (the rest ran into max_new_tokens)."""
    n = max(len(answers), 1)
    return {"empty": sum(not a.strip() for a in answers) / n, "eos": sum(bool(e) for e in ended) / n}


def pick_sample_prompts(prompts: Sequence[str], families: Sequence[str | None], k: int = 12) -> list[int]:
    """Indices of up to ``k`` prompts covering as many families as possible (deterministic)."""
    by_family: dict[str, list[int]] = {}
    for i, f in enumerate(families):
        by_family.setdefault(f or "other", []).append(i)
    order = sorted(by_family)
    # HHH families first: they show the clearest differences between models.
    order.sort(key=lambda f: (f not in ("harmful", "unanswerable"), f))
    chosen: list[int] = []
    rnd = 0
    while len(chosen) < min(k, len(prompts)):
        added = False
        for f in order:
            if rnd < len(by_family[f]) and len(chosen) < k:
                chosen.append(by_family[f][rnd])
                added = True
        if not added:
            break
        rnd += 1
    return sorted(chosen)
