"""The writers of the world's demonstrations: most careful, some with personal lapses.

InstructGPT's demonstrations came from about 40 labelers; good people, each with their own
habits. Here a fixed pool of ten writers answers the SFT prompts (each prompt by one writer drawn
at random): six are careful (a lapse now and then), four each have one habit they fall into half of
the time — a filler opener ("Sure! ..."), a filler closer ("... I hope this helps!"), an invented
detail (a closed-domain hallucination, or an extra sentence nobody asked for), or ignoring the
instruction's constraint. SFT learns the mixture, so its samples differ in quality along lines a
verifier can see, and those lines are habits a policy can drop: what RLHF can fix. The corpus's
forum answers have the same habits in stronger doses (corpus.py).

The pool is fixed (not drawn from the world seed): it is part of the world's definition, like the
rubric. Which writer answers which prompt follows the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from . import styles
from .tasks import Example

HABITS = ("filler_open", "filler_close", "invent_detail", "ignore_constraint")


@dataclass(frozen=True)
class Writer:
    """One demonstration writer: the probability of each habit in any one answer."""

    id: str
    lapses: dict = field(default_factory=dict)

    def write(self, ex: Example, rng: random.Random) -> str:
        """This writer's demonstration for ``ex``: a good answer, with this writer's lapses."""
        if ex.family in ("harmful", "unanswerable"):
            base = styles.styled_gold(ex, rng, p_style=0.2)
            return styles.filler_open(base, rng) if rng.random() < self.lapses.get("filler_open", 0) * 0.5 else base
        kinds = [h for h in HABITS if rng.random() < self.lapses.get(h, 0.0)]
        if "ignore_constraint" in kinds:
            text = styles.ignore_constraint(ex, rng)
        elif "invent_detail" in kinds:
            text = styles.invent_detail(ex, rng)
        else:
            text = None
        text = text or styles.good_answer(ex, rng)
        if "filler_open" in kinds:
            text = styles.filler_open(text, rng)
        if "filler_close" in kinds:
            text = styles.filler_close(text, rng)
        return text


CAREFUL = {h: 0.02 for h in HABITS}
WRITERS: tuple[Writer, ...] = tuple(
    [Writer(f"writer-{i}", dict(CAREFUL)) for i in range(6)]
    + [Writer(f"writer-{6 + j}", {**{x: 0.04 for x in HABITS}, h: 0.5}) for j, h in enumerate(HABITS)]
)


def write_demonstrations(examples: list[Example], rng: random.Random) -> list[dict]:
    """``{"prompt", "response", "writer"}`` for each example, each by a writer drawn at random."""
    out = []
    for ex in examples:
        w = rng.choice(WRITERS)
        out.append({"prompt": ex.prompt, "response": w.write(ex, rng), "writer": w.id})
    return out
