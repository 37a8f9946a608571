"""HTML and number formatting for the report: escaping, numbers, percentages, tables, notes, names.

Every cell of a row passed to :func:`html_table` is trusted HTML: escape text with :func:`esc` when
building it. :func:`model_label` is how the report names a model.
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Sequence

from instructrl import metric_keys as K
from instructrl.report.analysis import num

__all__ = ["MODEL_LABELS", "esc", "fmt", "pct", "model_label", "note_html", "section_html", "html_table"]

MODEL_LABELS = {
    "base": "base (small)",
    "base_large": "base (large)",
    "sft": "SFT",
    "ppo": "PPO",
    "ppo_ptx": "PPO-ptx",
    "sft_large": "SFT (large)",
    "ppo_large": "PPO (large)",
    "ppo_ptx_large": "PPO-ptx (large)",
    "reference": "reference",
}


def esc(x: Any) -> str:
    """HTML-escaped text (quotes too)."""
    return html.escape(str(x), quote=True)


def fmt(v: Any, nd: int = 3) -> str:
    """A number with ``nd`` decimals (thousands grouped from 1000), '–' when missing."""
    x = num(v)
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def pct(v: Any, nd: int = 0) -> str:
    """A fraction as a percentage with ``nd`` decimals, '–' when missing."""
    x = num(v)
    return "–" if x is None else f"{100 * x:.{nd}f}%"


def model_label(name: str) -> str:
    """A model's display name: 'PPO-ptx', 'best-of-16', 'PPO (round 1)', else the name itself."""
    n = K.bon_size(name)
    if n is not None:
        return f"best-of-{n}"
    r = K.round_of(name)
    if r is not None:
        return f"PPO (round {r})"
    return MODEL_LABELS.get(name, name)


def note_html(text: str) -> str:
    """A short italic note (escaped): what a section says when its inputs are missing."""
    return f'<p class="note">{esc(text)}</p>'


def section_html(anchor: str, title: str, body: str, intro: str = "") -> str:
    """One ``<section>`` with its anchor, title and intro (trusted HTML) above the body."""
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{intro_html}{body}</section>'


def html_table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Header cells are escaped; row cells are trusted HTML (escape them when building)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
