"""Judges: who decides which of two answers to one prompt is better, for the win rates.

The interface (:class:`Judge`) is small: a judge is called as ``judge(prompt, a, b)`` and returns
P(a is better) in [0, 1] — 1, 0, or 0.5 for a tie; a probability for the LM judge — and has a
``name`` (what ``samples.json`` records). It may also have ``batch(prompts, A, B) -> list`` that
:func:`instructrl.evaluate.stats.win_rate` then calls once for all prompts. The world's judges
(:func:`instructrl.evaluate.world_eval.heldout_labeler_judge`, its gold judge) and the ones here
implement it the same way, so an engineer's own judge plugs into ``instructrl eval`` as they do.

``instructrl eval --judge`` (:func:`judge_kind`):

- ``world`` — the world's held-out simulated labelers (``winrate.*``) and its gold judge
  (``gold_winrate.*``): the default on the world's prompts.
- an **RM folder** (from ``instructrl rm``, or any one-label sequence classifier) — :class:`RMJudge`:
  the answer with the higher reward-model score wins (AlpacaFarm's reward-model evaluation);
  ``--rm`` alone does the same on prompts that are not the world's.
- a **causal-LM folder** — a pairwise LM judge (:class:`LMJudge`): the judge model reads a prompt
  template holding the request and both answers and its next-token probabilities of the two
  answer letters decide; each pair is asked in both orders and the two verdicts averaged, which
  cancels the judge's position bias.
- ``none`` — no win rates. Without any judge, eval says so in one line (:data:`NO_JUDGE`) and still
  reports each model's length, empty-answer rate, EOS rate and KL to the reference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence

import torch

from instructrl.data import render
from instructrl.errors import ConfigError
from instructrl.evaluate.forward import rm_scores
from instructrl.models import check_model_folder, context_length, position_ids_from_mask
from instructrl.rollout import encode_prompts

log = logging.getLogger(__name__)

__all__ = ["Judge", "DEFAULT_JUDGE_TEMPLATE", "NO_JUDGE", "RMJudge", "rm_judge", "LMJudge", "judge_kind",
           "load_judge_template", "judge_prompt_text"]


class Judge(Protocol):
    """What every judge is: ``judge(prompt, a, b) -> P(a is better)`` in [0, 1], and a ``name``."""

    name: str

    def __call__(self, prompt: str, a: str, b: str) -> float: ...


#: What eval prints when nothing can judge the answers.
NO_JUDGE = ("eval: no judge (these prompts are not the world's, and neither --judge nor --rm is given): no win "
            "rates; reporting length, empty-answer rate, EOS rate and KL")

DEFAULT_JUDGE_TEMPLATE = (
    "You are comparing two responses to the same request. Pick the one that is more helpful, honest and "
    "harmless: it does what was asked, is correct, and is not needlessly long.\n\n"
    "Request:\n{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}\n\n"
    "Which response is better? Answer with a single letter: A or B."
)


def judge_kind(spec: str | None) -> str:
    """What ``--judge SPEC`` names: 'none', 'world', 'rm' (a reward-model folder) or 'lm' (a causal LM)."""
    if spec in (None, "", "none", "world"):
        return spec or "none"
    cfg = check_model_folder(spec, "any")
    archs = cfg.get("architectures") or []
    return "rm" if any(a.endswith("ForSequenceClassification") for a in archs) else "lm"


def load_judge_template(value: str) -> str:
    """The LM judge's template: '' = the built-in one; a file's text; or the text itself."""
    if not value:
        text = DEFAULT_JUDGE_TEMPLATE
    elif "{" not in value and Path(value).is_file():
        text = Path(value).read_text(encoding="utf-8")
    else:
        text = value
    missing = [k for k in ("{prompt}", "{a}", "{b}") if k not in text]
    if missing:
        raise ConfigError(f"judge_template must contain {{prompt}}, {{a}} and {{b}}; missing {', '.join(missing)}")
    return text


def judge_prompt_text(prompt: str) -> str:
    """A prompt as the judge reads it: a chat prompt's plain rendering without its 'Assistant:' cue."""
    return prompt[: -len("\nAssistant:")] if prompt.endswith("\nAssistant:") else prompt


class LMJudge:
    """A causal LM as a pairwise judge: P(a better) from its next-token probabilities of the two
    answer letters after the template, averaged over both orders of (a, b)."""

    name = "lm_judge"

    def __init__(self, model, tokenizer, fmt: render.PromptFormat, template: str = DEFAULT_JUDGE_TEMPLATE,
                 choices: Sequence[str] = ("A", "B"), batch_size: int = 16):
        if len(choices) != 2:
            raise ConfigError(f"judge_choices must be two answers, got {list(choices)}")
        self.model, self.tokenizer, self.fmt = model, tokenizer, fmt
        self.template, self.batch_size = template, batch_size
        probe = render.prompt_text(fmt, tokenizer, "x", None)
        self.choice_ids = []
        for c in choices:
            ids = tokenizer(render.response_text(fmt, probe, c), add_special_tokens=False)["input_ids"]
            if not ids:
                raise ConfigError(f"judge choice {c!r} tokenizes to nothing")
            self.choice_ids.append(ids[0])
        if self.choice_ids[0] == self.choice_ids[1]:
            raise ConfigError(f"judge choices {list(choices)} begin with the same token; choose other answers")

    def _query(self, prompt: str, first: str, second: str) -> str:
        return (self.template.replace("{prompt}", judge_prompt_text(prompt))
                .replace("{a}", first).replace("{b}", second))

    @torch.no_grad()
    def _p_first(self, triples) -> list[float]:
        """P(the first-shown answer is better) for each (prompt, first, second)."""
        device = next(self.model.parameters()).device
        n_ctx = context_length(self.model)
        out = []
        for i in range(0, len(triples), self.batch_size):
            ids = [render.prompt_ids(self.fmt, self.tokenizer, self._query(*t), None, n_ctx)
                   for t in triples[i:i + self.batch_size]]
            x, mask = encode_prompts(self.tokenizer, ids, None, device)
            logits = self.model(input_ids=x, attention_mask=mask.long(),
                                position_ids=position_ids_from_mask(mask)).logits[:, -1].float()
            pair = torch.log_softmax(logits, -1)[:, self.choice_ids]
            out.extend(torch.softmax(pair, -1)[:, 0].cpu().tolist())
        return out

    def batch(self, prompts, responses_a, responses_b) -> list[float]:
        ab = self._p_first(list(zip(prompts, responses_a, responses_b)))
        ba = self._p_first(list(zip(prompts, responses_b, responses_a)))
        return [(x + (1.0 - y)) / 2.0 for x, y in zip(ab, ba)]

    def __call__(self, prompt: str, a: str, b: str) -> float:
        return self.batch([prompt], [a], [b])[0]


class RMJudge:
    """A judge comparing reward-model scores (for real models, where there are no labelers).

    Called per pair it scores both answers; ``batch`` scores all answers in batches (what
    :func:`win_rate` uses). Scores closer than ``tie_margin`` are a tie.
    """

    name = "reward_model"

    def __init__(self, rm_model, tokenizer, batch_size: int = 64, tie_margin: float = 0.0, fmt=None,
                 conversations: dict | None = None):
        self.rm, self.tokenizer = rm_model, tokenizer
        self.batch_size, self.tie_margin = batch_size, tie_margin
        # How the RM reads a prompt (render.PromptFormat; None: as written) and the chat messages of
        # the prompts that were chat records ({plain rendering: messages}).
        self.fmt, self.conversations = fmt, conversations or {}

    def _scores(self, prompts, responses):
        msgs = [self.conversations.get(p) for p in prompts]
        return rm_scores(self.rm, self.tokenizer, prompts, responses, self.batch_size, self.fmt, msgs)

    def _outcome(self, sa: float, sb: float) -> float:
        if abs(sa - sb) <= self.tie_margin:
            return 0.5
        return 1.0 if sa > sb else 0.0

    def __call__(self, prompt: str, a: str, b: str) -> float:
        s = self._scores([prompt, prompt], [a, b])
        return self._outcome(float(s[0]), float(s[1]))

    def batch(self, prompts, responses_a, responses_b) -> list[float]:
        sa = self._scores(prompts, responses_a)
        sb = self._scores(prompts, responses_b)
        return [self._outcome(float(x), float(y)) for x, y in zip(sa, sb)]


def rm_judge(rm_model, tokenizer, batch_size: int = 64, fmt=None, conversations: dict | None = None) -> RMJudge:
    """A judge preferring the answer the reward model scores higher."""
    return RMJudge(rm_model, tokenizer, batch_size, fmt=fmt, conversations=conversations)
