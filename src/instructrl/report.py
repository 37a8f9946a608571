"""report.html: one self-contained page that shows whether RLHF worked, what it cost, and where
reward hacking starts.

`write_report(run_dir, metrics, out_path, samples=None, logs=None, extra_plots=None)` writes ONE
HTML file: inline CSS, plots as embedded base64 PNGs (matplotlib, Agg backend), no scripts and no
external assets, so it can be mailed, archived or opened offline. Every section is built from
whatever metrics/logs exist; a section whose inputs are missing is replaced by a short note.

Sections, top to bottom:

1. **Headline** — does RLHF work here: the key win rates with 95% intervals, in words and numbers.
2. **Win rates** — bars with 95% interval error bars (held-out labelers; gold judge beside them).
3. **Gold and RM score per model**, KL to SFT.
4. **PPO training curves** from ``log.csv`` (every known column that exists).
5. **Reward hacking** — RM (proxy) score vs gold score over PPO training, with a diagnosis.
6. **SFT / RM training curves**.
7. **Alignment tax** — benchmark accuracy and pretraining NLL per model (+ per benchmark task).
8. **HHH** — refusal of harmful requests, "I don't know" to unanswerable ones, over-refusal.
9. **Best-of-n** vs PPO at their KLs.
10. **Labelers and reward model** — agreement and RM accuracy beside the paper's numbers.
11. **Sweeps** (β: gold and RM score vs KL; γ: gold, score, pretraining loss vs γ), when given.
12. **Sample answers** — the same prompts answered by every model, side by side (HTML-escaped).
13. **Timings** per stage, and the full metrics table.

``extra_plots`` (all optional): ``{"sweeps": {"beta=0.02": ppo_metrics, "gamma=1.0": ...},
"sweep_logs": {"beta=0.02": "path/log.csv", ...}, "beta_sweep": [rows], "gamma_sweep": [rows]}``
where a row is ``{"kl_coef"|"ptx_coef", "kl", "score", "gold", ...}``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["write_report", "read_log", "MODEL_ORDER", "MODEL_LABELS"]

#: Models in the order the report lists them, and their display names.
MODEL_ORDER = ("base", "base_large", "sft", "ppo", "ppo_ptx", "sft_large", "ppo_large", "ppo_ptx_large")
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
_COLORS = {
    "base": "#9aa5b1",
    "base_large": "#52606d",
    "sft": "#3e7cb1",
    "ppo": "#e07a1f",
    "ppo_ptx": "#2f9e44",
    "ppo_round1": "#c92a2a",
    "sft_large": "#1c4f7a",
    "ppo_large": "#a84f0c",
    "ppo_ptx_large": "#1b6e2c",
}
_PALETTE = ["#3e7cb1", "#e07a1f", "#2f9e44", "#c92a2a", "#7048e8", "#0c8599", "#e8590c", "#5c940d"]

#: Contract win-rate pairs, in headline order: (key, plain-words label).
_HEADLINE_PAIRS = (
    ("ppo_ptx_vs_sft", "PPO-ptx vs SFT"),
    ("ppo_vs_sft", "PPO vs SFT"),
    ("sft_vs_base", "SFT vs base"),
    ("ppo_ptx_vs_base_large", "small PPO-ptx vs the large base model"),
)

#: PPO log columns plotted, with titles and what healthy looks like (docs/metrics.md has more).
_PPO_CURVES = (
    ("score", "RM score (proxy reward)", "rises"),
    ("gold", "gold score (hidden judge)", "rises with the RM score"),
    ("kl", "KL to SFT per response (nats)", "grows slowly, a few nats"),
    ("entropy", "policy entropy per token", "falls slowly, not to 0"),
    ("response_length", "response length (tokens)", "stable, no blow-up"),
    ("eos_fraction", "fraction of responses ending in EOS", "near 1"),
    ("ptx_loss", "pretraining NLL (PPO-ptx)", "flat"),
    ("value_loss", "value loss", "falls"),
    ("policy_loss", "policy loss", "noisy around 0"),
    ("clipfrac", "clip fraction", "0.0-0.2"),
    ("approx_kl", "approx. KL per update", "small (< 0.05)"),
    ("explained_variance", "value explained variance", "rises towards 1"),
    ("kl_coef", "KL coefficient beta", "constant, or adapts to the target"),
)
_SFT_CURVES = (("loss", "val_loss"), ("ptx_loss",), ("lr",))
_RM_CURVES = (("loss", "val_loss"), ("accuracy", "val_accuracy"), ("margin",))


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 100, "font.size": 9, "axes.titlesize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.25, "legend.frameon": False, "legend.fontsize": 8,
    })
    return plt


def _img(fig, alt: str) -> str:
    """An <img> with the figure as an embedded base64 PNG (the figure is closed)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(v: Any, nd: int = 3) -> str:
    x = _num(v)
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _pct(v: Any, nd: int = 0) -> str:
    x = _num(v)
    return "–" if x is None else f"{100 * x:.{nd}f}%"


def _label(name: str) -> str:
    m = re.fullmatch(r"bon(\d+)", name)
    if m:
        return f"best-of-{m.group(1)}"
    m = re.fullmatch(r"ppo_round(\d+)", name)
    if m:
        return f"PPO (round {m.group(1)})"
    return MODEL_LABELS.get(name, name)


def _color(name: str, i: int = 0) -> str:
    return _COLORS.get(name, _PALETTE[i % len(_PALETTE)])


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _section(anchor: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{intro_html}{body}</section>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Header cells are escaped; row cells are trusted HTML (escape them when building)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _models_in(metrics: dict, prefixes: Sequence[str]) -> list[str]:
    """Model names appearing as ``<prefix>.<model>`` keys, known models first."""
    found = set()
    for k in metrics:
        for p in prefixes:
            if k.startswith(p + ".") and k.count(".") == p.count(".") + 1:
                found.add(k[len(p) + 1:])
    known = [m for m in MODEL_ORDER if m in found]
    return known + sorted(found - set(known))


def read_log(path) -> dict[str, list[float | None]]:
    """A CSV log as columns of numbers (None where empty or not a number); {} if unreadable."""
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    if not rows:
        return {}
    cols: dict[str, list[float | None]] = {k: [] for k in rows[0] if k}
    for r in rows:
        for k in cols:
            cols[k].append(_num(r.get(k)))
    return {k: v for k, v in cols.items() if any(x is not None for x in v)}


def _xy(log: dict, x: str, y: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for a, b in zip(log.get(x, []), log.get(y, [])):
        if a is not None and b is not None:
            xs.append(a)
            ys.append(b)
    return xs, ys


def _x_of(log: dict) -> str | None:
    for x in ("episodes", "update", "step"):
        if x in log:
            return x
    return None


def _smooth(ys: Sequence[float], frac: float = 0.1) -> list[float]:
    """Centered moving average over ~frac of the points (at least 1)."""
    n = len(ys)
    w = max(1, int(n * frac)) | 1
    h = w // 2
    out = []
    for i in range(n):
        seg = ys[max(0, i - h): i + h + 1]
        out.append(sum(seg) / len(seg))
    return out


def _ci(metrics: dict, prefix: str, key: str) -> tuple[float | None, float | None]:
    ci = metrics.get(f"{prefix}_ci95.{key}")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return _num(ci[0]), _num(ci[1])
    return None, None


def _pair_names(key: str, models: Sequence[str]) -> tuple[str, str]:
    """Split 'ppo_ptx_vs_base_large' into ('ppo_ptx', 'base_large') (names may contain '_vs_')."""
    for a in sorted(models, key=len, reverse=True):
        if key.startswith(a + "_vs_"):
            return a, key[len(a) + 4:]
    a, _, b = key.partition("_vs_")
    return a, b


def _verdict(wr: float | None, lo: float | None, hi: float | None) -> tuple[str, str]:
    """(css class, words) for a win rate of A over B."""
    if wr is None:
        return "na", "not measured"
    if lo is not None and lo > 0.5:
        return "good", "preferred"
    if hi is not None and hi < 0.5:
        return "bad", "dispreferred"
    return "even", "no clear difference"


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------


def _gold_trend(log: dict) -> dict | None:
    """Reward-hacking diagnosis of one PPO log: does the proxy rise while gold stalls or falls?"""
    x = _x_of(log)
    if x is None or "score" not in log or "gold" not in log:
        return None
    xs, score = _xy(log, x, "score")
    xg, gold = _xy(log, x, "gold")
    if len(gold) < 3 or len(score) < 3:
        return None
    sg, ss = _smooth(gold), _smooth(score)
    i_peak = max(range(len(sg)), key=lambda i: sg[i])
    out = {
        "x": x, "gold_start": sg[0], "gold_peak": sg[i_peak], "gold_end": sg[-1], "peak_at": xg[i_peak],
        "score_start": ss[0], "score_end": ss[-1],
        "score_at_peak": ss[min(i_peak, len(ss) - 1)],
    }
    drop = out["gold_peak"] - out["gold_end"]
    rise_after = out["score_end"] - out["score_at_peak"]
    span = max(sg) - min(sg) or 1e-9
    out["hacking"] = drop > max(0.02, 0.2 * span) and rise_after > 0 and i_peak < len(sg) - 1
    out["kl_end"] = _smooth(_xy(log, x, "kl")[1])[-1] if "kl" in log and _xy(log, x, "kl")[1] else None
    return out


def _headline(metrics: dict, logs: dict, judge: str) -> str:
    cards, sentences = [], []
    models = _models_in(metrics, ["gold", "tax.benchmark", "length"]) or list(MODEL_ORDER)
    for key, words in _HEADLINE_PAIRS:
        wr = _num(metrics.get(f"winrate.{key}"))
        if wr is None:
            continue
        lo, hi = _ci(metrics, "winrate", key)
        cls, verdict = _verdict(wr, lo, hi)
        ci_txt = f"95% CI {_pct(lo)}–{_pct(hi)}" if lo is not None else "no interval"
        cards.append(
            f'<div class="card {cls}"><div class="card-title">{_e(words)}</div>'
            f'<div class="big">{_pct(wr)}</div><div class="small">{_e(ci_txt)}</div>'
            f'<div class="verdict">{_e(verdict)}</div></div>')
    # The RLHF verdict: the better of PPO / PPO-ptx against SFT.
    rl = [(k, w) for k, w in _HEADLINE_PAIRS[:2] if _num(metrics.get(f"winrate.{k}")) is not None]
    if rl:
        k, words = max(rl, key=lambda kw: metrics[f"winrate.{kw[0]}"])
        wr = metrics[f"winrate.{k}"]
        lo, hi = _ci(metrics, "winrate", k)
        cls, verdict = _verdict(wr, lo, hi)
        a = words.split(" vs ")[0]
        ci = f" (95% CI {_pct(lo)}–{_pct(hi)})" if lo is not None else ""
        other = [(k2, w2) for k2, w2 in rl if k2 != k]
        if other:
            k2, w2 = other[0]
            lo2, hi2 = _ci(metrics, "winrate", k2)
            ci += f"; {w2.split(' vs ')[0]}: {_pct(metrics[f'winrate.{k2}'])} ({_verdict(metrics[f'winrate.{k2}'], lo2, hi2)[1]})"
        g = _num(metrics.get(f"gold_winrate.{k}"))
        glo, ghi = _ci(metrics, "gold_winrate", k)
        gcls, gverdict = _verdict(g, glo, ghi)
        if cls == "good":
            lead = "Yes, RLHF works here." if gcls in ("good", "na") else "Yes by the labelers, not by the gold judge."
            sentences.append(f"<b>{lead}</b> {judge.capitalize()} prefer {a}'s answers to SFT's "
                             f"{_pct(wr)} of the time{ci}.")
        elif cls == "bad":
            sentences.append(f"<b>No: RLHF made things worse here.</b> {judge.capitalize()} prefer {a} to SFT only "
                             f"{_pct(wr)} of the time{ci}.")
        else:
            sentences.append(f"<b>Not clearly.</b> {judge.capitalize()} prefer {a} to SFT {_pct(wr)} of the time{ci}: "
                             "the interval includes 50%.")
        name = k.split("_vs_")[0]
        d, (dlo, dhi) = _num(metrics.get(f"gold_delta.{k}")), _ci(metrics, "gold_delta", k)
        if d is not None and dlo is not None:
            w1, (lo1, hi1) = _num(metrics.get(f"winrate_t1.{k}")), _ci(metrics, "winrate_t1", k)
            d1 = _num(metrics.get(f"gold_delta_t1.{k}"))
            txt = (f"By the gold judge {a}'s mean score is {d:+.3f} against SFT's (95% CI {dlo:+.3f} to {dhi:+.3f}"
                   f"{': really better' if dlo > 0 else ': really worse' if dhi < 0 else ': no clear difference'}).")
            if w1 is not None:
                txt += (f" Sampled at T = 1 (the paper's rollout temperature): win rate {_pct(w1)}"
                        + (f" ({_pct(lo1)}–{_pct(hi1)})" if lo1 is not None else "")
                        + (f", gold {d1:+.3f}" if d1 is not None else "") + ".")
            sentences.append(txt)
        # The labelers are noisy and have tastes (brevity...): say so when the hidden gold judge disagrees.
        if g is not None and gcls != cls:
            gci = f" (95% CI {_pct(glo)}–{_pct(ghi)})" if glo is not None else ""
            txt = (f"<b>The hidden gold judge disagrees:</b> by gold score {a} wins {_pct(g)}{gci}, "
                   f"{_e(gverdict)}.")
            name = k.split("_vs_")[0]
            la, ls = _num(metrics.get(f"length.{name}")), _num(metrics.get("length.sft"))
            if gcls in ("even", "bad") and cls == "good" and la is not None and ls is not None and la < ls:
                txt += (f" The labelers' preference likely comes from their tastes rather than better answers: "
                        f"{a}'s answers are shorter ({la:.1f} vs {ls:.1f} characters), and the simulated labelers "
                        "have a mild taste for brevity that decides between answers of equal quality.")
            sentences.append(txt)
        # Why not (when the gold judge does not see a gain): how much of the quality differences the RM sees.
        gap = _bon_gap(metrics)
        if g is not None and gcls != "good" and gap:
            sampled, picked, oracle, share = gap
            seen = (f"Among {_e(metrics.get('bon.n'))} SFT samples per prompt, the RM's pick scores gold {picked:.2f}, "
                    f"a random sample {sampled:.2f}, the gold judge's own pick {oracle:.2f}: the RM sees {_pct(share)} "
                    "of the quality differences PPO would have to climb.")
            if share < 0.5:
                txt = "<b>What stands in the way is the reward model.</b> " + seen
            else:  # the RM would pick well: look at the optimisation instead
                txt = (seen + " The RM is not the main obstacle here; see the PPO curves (KL, the RM score vs gold) "
                       "for what the optimisation did with it.")
            r_all, g_all = _num(metrics.get("rm_family.all.rm")), _num(metrics.get("rm_family.all.gold"))
            if r_all is not None and g_all is not None:
                blind = [f for f in _families_in(metrics) if (_num(metrics.get(f"rm_family.{f}.rm")) or 1.0) <= 0.55]
                txt += (f" It orders held-out labelers' pairs as they do {_pct(r_all, 1)} of the time (the gold judge: "
                        f"{_pct(g_all, 1)})" + (f", near or below chance (≤ 55%) on {_e(', '.join(blind))}" if blind else "")
                        + " — see <a href=\"#families\">task families</a>.")
            sentences.append(txt)
    wr = _num(metrics.get("winrate.sft_vs_base"))
    if wr is not None:
        lo, hi = _ci(metrics, "winrate", "sft_vs_base")
        cls, verdict = _verdict(wr, lo, hi)
        ci = f" ({_pct(lo)}–{_pct(hi)})" if lo is not None else ""
        if cls == "good":
            sentences.append(f"Supervised fine-tuning alone already beats the base model {_pct(wr)} of the time{ci}.")
        else:
            sentences.append(f"SFT vs the base model: {_pct(wr)}{ci}, {verdict}.")
    wr = _num(metrics.get("winrate.ppo_ptx_vs_base_large"))
    if wr is not None:
        lo, hi = _ci(metrics, "winrate", "ppo_ptx_vs_base_large")
        cls, _ = _verdict(wr, lo, hi)
        ratio = ""
        ps, pl = _num(metrics.get("params.base")), _num(metrics.get("params.base_large"))
        if ps and pl:
            ratio = f" ({pl / ps:.0f}× the parameters)"
        verb = {"good": "beats", "bad": "loses to"}.get(cls, "is not clearly better than")
        sentences.append(f"The small aligned model {verb} the large base model{ratio}: {_pct(wr)}"
                         + (f" ({_pct(lo)}–{_pct(hi)})." if lo is not None else ".")
                         + (" As in the paper, alignment matters more than size." if cls == "good" else ""))
    golds = [(m, _num(metrics.get(f"gold.{m}"))) for m in models if _num(metrics.get(f"gold.{m}")) is not None]
    if golds:
        chain = " → ".join(f"{_e(_label(m))} {g:.2f}" for m, g in golds)
        sentences.append(f"Mean gold score (the hidden judge, 0–1): {chain}.")
    rounds = sorted((int(m.group(1)), metrics[k]) for k in metrics
                    if (m := re.fullmatch(r"winrate\.ppo_round(\d+)_vs_sft", k)) and _num(metrics[k]) is not None)
    if rounds and _num(metrics.get("winrate.ppo_vs_sft")) is not None:
        def _state(name, wr):
            orf = _num(metrics.get(f"hhh.over_refusal.{name}"))
            return f"{_pct(wr)} vs SFT" + (f", over-refusal {_pct(orf, 1)}" if orf is not None else "")
        steps = [f"round {r}: {_state(f'ppo_round{r}', wr)}" for r, wr in rounds]
        steps.append(f"round {rounds[-1][0] + 1} (final): {_state('ppo', metrics['winrate.ppo_vs_sft'])}")
        sentences.append("Iterated RLHF — each round's labelers rank the previous PPO policy's samples, so the "
                         "next RM sees what that policy exploited. PPO " + " → ".join(steps) + ".")
    kls = [(m, _num(metrics.get(f"kl.{m}"))) for m in ("ppo", "ppo_ptx") if _num(metrics.get(f"kl.{m}")) is not None]
    if kls:
        sentences.append("KL to SFT per response: " + ", ".join(f"{_label(m)} {v:.2f} nats" for m, v in kls) + ".")
    tb = {m: _num(metrics.get(f"tax.benchmark.{m}")) for m in MODEL_ORDER}
    if tb.get("ppo") is not None and (tb.get("sft") is not None or tb.get("base") is not None):
        ref = "sft" if tb.get("sft") is not None else "base"
        txt = (f"Alignment tax: benchmark accuracy {_label(ref)} {_pct(tb[ref], 1)}, PPO {_pct(tb['ppo'], 1)}")
        if tb.get("ppo_ptx") is not None:
            txt += f", PPO-ptx {_pct(tb['ppo_ptx'], 1)}"
        sentences.append(txt + ".")
    for name in ("ppo", "ppo_ptx"):
        t = _gold_trend(logs.get(name, {})) if logs.get(name) else None
        if t and t["hacking"]:
            sentences.append(f"<b>Reward hacking in {_label(name)}:</b> gold peaked at {t['gold_peak']:.2f} "
                             f"({t['x']} {t['peak_at']:.0f}) and fell to {t['gold_end']:.2f} while the RM score kept "
                             "rising (see below).")
    if not cards and not sentences:
        return _note("No win rates or gold scores in the metrics: nothing to conclude yet.")
    body = f'<div class="cards">{"".join(cards)}</div>' if cards else ""
    body += "<ul class=\"headline\">" + "".join(f"<li>{s}</li>" for s in sentences) + "</ul>"
    return body


def _winrate_section(metrics: dict, judge: str) -> str:
    plt = _plt()
    keys = [k[len("winrate."):] for k in metrics if k.startswith("winrate.") and _num(metrics[k]) is not None]
    if not keys:
        return _note("No win rates in the metrics (winrate.* keys).")
    order = [k for k, _ in _HEADLINE_PAIRS if k in keys] + sorted(k for k in keys if k not in dict(_HEADLINE_PAIRS))
    known = list(MODEL_ORDER) + [k.split("_vs_")[0] for k in order]
    labels = []
    for k in order:
        a, b = _pair_names(k, known)
        labels.append(f"{_label(a)} vs {_label(b)}")
    has_gold = any(f"gold_winrate.{k}" in metrics for k in order)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(order) + 1.2))
    h = 0.38 if has_gold else 0.6
    ys = list(range(len(order)))
    for j, (prefix, color, name) in enumerate((("winrate", "#3e7cb1", judge), ("gold_winrate", "#adb5bd", "gold judge"))):
        if prefix == "gold_winrate" and not has_gold:
            continue
        vals, errs_lo, errs_hi, yy = [], [], [], []
        for i, k in enumerate(order):
            v = _num(metrics.get(f"{prefix}.{k}"))
            if v is None:
                continue
            lo, hi = _ci(metrics, prefix, k)
            vals.append(v)
            errs_lo.append(v - lo if lo is not None else 0)
            errs_hi.append(hi - v if hi is not None else 0)
            yy.append(i + (-h / 2 if has_gold and j == 0 else h / 2 if has_gold else 0))
        ax.barh(yy, vals, height=h, color=color, xerr=[errs_lo, errs_hi], capsize=3,
                error_kw={"elinewidth": 1, "ecolor": "#333"}, label=name)
        for y, v, e in zip(yy, vals, errs_hi):
            ax.text(min(v + e + 0.01, 0.95), y, f"{100 * v:.0f}%", va="center", fontsize=8)
    ax.axvline(0.5, color="#c92a2a", ls="--", lw=1)
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first model (ties count half); error bars: 95% bootstrap interval")
    ax.legend(loc="lower right")
    img = _img(fig, "win rates with 95% intervals")
    rows = []
    for k, lab in zip(order, labels):
        v = metrics.get(f"winrate.{k}")
        lo, hi = _ci(metrics, "winrate", k)
        g = metrics.get(f"gold_winrate.{k}")
        cls, verdict = _verdict(_num(v), lo, hi)
        rows.append([_e(lab), _pct(v, 1), f"{_pct(lo, 1)} – {_pct(hi, 1)}", _pct(g, 1) if g is not None else "–",
                     f'<span class="tag {cls}">{_e(verdict)}</span>'])
    table = _table(["pair", f"win rate ({judge})", "95% interval", "gold judge", "verdict"], rows)
    return img + table + _t1_table(metrics, order, labels, judge)


def _t1_table(metrics: dict, order: Sequence[str], labels: Sequence[str], judge: str) -> str:
    """The same pairs at T = 1 beside the greedy ones, and the gold judge's paired difference."""
    has = [(k, lab) for k, lab in zip(order, labels)
           if f"winrate_t1.{k}" in metrics or f"gold_delta.{k}" in metrics]
    if not has:
        return ""
    rows = []
    for k, lab in has:
        d, (dlo, dhi) = metrics.get(f"gold_delta.{k}"), _ci(metrics, "gold_delta", k)
        d1, (d1lo, d1hi) = metrics.get(f"gold_delta_t1.{k}"), _ci(metrics, "gold_delta_t1", k)
        w1, (lo1, hi1) = metrics.get(f"winrate_t1.{k}"), _ci(metrics, "winrate_t1", k)

        def delta(v, lo, hi):
            if v is None:
                return "–"
            cls = ' class="good"' if lo is not None and lo > 0 else ' class="bad"' if hi is not None and hi < 0 else ""
            return f"<span{cls}>{v:+.3f}</span> [{_fmt(lo)}, {_fmt(hi)}]"
        rows.append([_e(lab), delta(d, dlo, dhi), _pct(w1, 1) + (f" ({_pct(lo1, 1)} – {_pct(hi1, 1)})" if lo1 is not None else ""),
                     delta(d1, d1lo, d1hi)])
    return ("<p>Greedy answers above; the same pairs sampled at T = 1 (the paper's rollout temperature) here, "
            "with the gold judge's paired difference in mean score (95% bootstrap interval over prompts; green: "
            "the interval lies above 0).</p>"
            + _table(["pair", "gold difference (greedy)", f"win rate at T = 1 ({judge})", "gold difference (T = 1)"], rows))


def _rubric_section(metrics: dict) -> str:
    """The paper's Fig. 4 in miniature: how often each model's answers fail each rubric attribute."""
    from instructrl.world.spec import ATTRIBUTES, FIG4_ATTRIBUTES

    attrs = [a for a in ATTRIBUTES if any(k.startswith(f"rubric.{a}.") for k in metrics)]
    if not attrs:
        return _note("No rubric.* keys: the gold judge's attributes need the world's prompts.")
    models = _models_in(metrics, [f"rubric.{a}" for a in attrs])
    plt = _plt()
    fig4 = [a for a in FIG4_ATTRIBUTES if a in attrs]
    fig, axes = plt.subplots(1, len(fig4), figsize=(2.6 * len(fig4), 2.8), squeeze=False)
    for ax, a in zip(axes[0], fig4):
        vals = [_num(metrics.get(f"rubric.{a}.{m}")) or 0.0 for m in models]
        ax.bar(range(len(models)), vals, color=[_color(m, i) for i, m in enumerate(models)])
        ax.set_xticks(range(len(models)), [_label(m) for m in models], rotation=45, fontsize=7, ha="right")
        ax.set_title(textwrap.fill(ATTRIBUTES[a], 28), fontsize=8)
        ax.set_ylim(0, max(0.05, max(vals) * 1.25))
    axes[0][0].set_ylabel("fraction of answers")
    img = _img(fig, "rubric attributes per model (the paper's Fig. 4)")
    rows = [[_e(ATTRIBUTES[a])] + [_pct(metrics.get(f"rubric.{a}.{m}"), 1) for m in models] for a in attrs]
    verdict = ""
    if "sft" in models:
        better = [ATTRIBUTES[a] for a in fig4 for m in ("ppo_ptx", "ppo") if m in models
                  and (_num(metrics.get(f"rubric.{a}.{m}")) or 0) < (_num(metrics.get(f"rubric.{a}.sft")) or 0) - 0.01][:4]
        worse = [ATTRIBUTES[a] for a in attrs for m in ("ppo_ptx",) if m in models
                 and (_num(metrics.get(f"rubric.{a}.{m}")) or 0) > (_num(metrics.get(f"rubric.{a}.sft")) or 0) + 0.01]
        parts = []
        if better:
            parts.append("RLHF lowers: " + "; ".join(dict.fromkeys(better)) + ".")
        if worse:
            parts.append("PPO-ptx does more often than SFT: " + "; ".join(worse) + ".")
        verdict = f"<p>{_e(' '.join(parts) or 'RLHF changes none of these rates by more than a point.')}</p>"
    return img + verdict + _table(["attribute (rate among the answers it applies to)"] + [_label(m) for m in models], rows)


def _categories_section(metrics: dict) -> str:
    """Gold per Table 1 category, and one sentence on where RLHF gains and where it does not."""
    cats = sorted({m.group(1) for k in metrics if (m := re.fullmatch(r"gold_category\.([^.]+)\.[^.]+", k))})
    if not cats:
        return _note("No gold_category.* keys: per-category scores need the world's prompts.")
    models = _models_in(metrics, [f"gold_category.{c}" for c in cats])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(cats))]
        ax.bar(xs, [_num(metrics.get(f"gold_category.{c}.{m}")) or 0.0 for c in cats], width=width,
               color=_color(m, i), label=_label(m))
    ax.set_xticks(range(len(cats)), [c.replace("_", " ") for c in cats], rotation=20, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean gold score")
    ax.legend(ncol=min(len(models), 6), loc="upper center", bbox_to_anchor=(0.5, 1.22), fontsize=8)
    img = _img(fig, "gold score per prompt category")
    sentences = []
    for m in ("ppo_ptx", "ppo"):
        if m not in models or "sft" not in models:
            continue
        d = {c: (_num(metrics.get(f"gold_category.{c}.{m}")) or 0) - (_num(metrics.get(f"gold_category.{c}.sft")) or 0)
             for c in cats}
        gains = [c.replace("_", " ") for c in cats if d[c] >= 0.02]
        losses = [c.replace("_", " ") for c in cats if d[c] <= -0.02]
        flat = [c.replace("_", " ") for c in cats if abs(d[c]) < 0.02]
        s = f"{_label(m)} vs SFT: gains on {', '.join(gains) or 'no category'}"
        s += f"; loses on {', '.join(losses)}" if losses else ""
        s += f"; no change (within ±0.02) on {', '.join(flat)}" if flat else ""
        s += "."
        if "closed_qa" in d:
            s += (" On closed QA — the control, where checking an answer is as hard as writing it — "
                  + ("it gains nothing, as expected at this scale." if d["closed_qa"] < 0.02 else
                     f"it gains {d['closed_qa']:+.2f}."))
        sentences.append(f"<p>{_e(s)}</p>")
    rows = [[_e(c.replace("_", " "))] + [_fmt(metrics.get(f"gold_category.{c}.{m}")) for m in models] for c in cats]
    return img + "".join(sentences) + _table(["category"] + [_label(m) for m in models], rows)


def _per_model_section(metrics: dict) -> str:
    plt = _plt()
    models = _models_in(metrics, ["gold", "rm_score"])
    if not models:
        return _note("No gold.* or rm_score.* keys: per-model scores not available.")
    series = [(p, t) for p, t in (("gold", "mean gold score"), ("rm_score", "mean RM score (proxy)"))
              if any(_num(metrics.get(f"{p}.{m}")) is not None for m in models)]
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 2.8), squeeze=False)
    for ax, (p, title) in zip(axes[0], series):
        names = [m for m in models if _num(metrics.get(f"{p}.{m}")) is not None]
        vals = [metrics[f"{p}.{m}"] for m in names]
        ax.bar([_label(m) for m in names], vals, color=[_color(m, i) for i, m in enumerate(names)])
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
        ax.axhline(0, color="#333", lw=0.8)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        if p == "gold":
            ax.set_ylim(0, 1)
    img = _img(fig, "gold and RM score per model")
    rows = []
    for m in models:
        rows.append([_e(_label(m)), _fmt(metrics.get(f"gold.{m}")), _fmt(metrics.get(f"rm_score.{m}")),
                     _fmt(metrics.get(f"kl.{m}"), 2), _fmt(metrics.get(f"kl_per_token.{m}"), 4),
                     _fmt(metrics.get(f"length.{m}"), 1)])
    return img + _table(["model", "gold", "RM score", "KL to SFT (nats/response)", "KL per token",
                         "mean length (chars)"], rows)


def _ppo_curves_section(logs: dict) -> str:
    plt = _plt()
    runs = {n: lg for n, lg in logs.items() if lg and ("score" in lg or "kl" in lg)}
    if not runs:
        return _note("No PPO logs (log.csv with score/kl columns) were found.")
    cols = [c for c in _PPO_CURVES if any(c[0] in lg for lg in runs.values())]
    n = len(cols)
    ncol = 3
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.6 * nrow), squeeze=False)
    for idx, (col, title, healthy) in enumerate(cols):
        ax = axes[idx // ncol][idx % ncol]
        for i, (name, lg) in enumerate(runs.items()):
            x = _x_of(lg)
            if x is None or col not in lg:
                continue
            xs, ys = _xy(lg, x, col)
            if not xs:
                continue
            c = _color(name, i)
            ax.plot(xs, ys, color=c, alpha=0.25, lw=1)
            ax.plot(xs, _smooth(ys), color=c, lw=1.6, label=_label(name))
        ax.set_title(title, loc="left")
        ax.set_title(f"healthy: {healthy}", loc="right", fontsize=7, color="#666")
        ax.set_xlabel(_x_of(next(iter(runs.values()))) or "")
        if idx == 0:
            ax.legend()
    for idx in range(n, nrow * ncol):
        axes[idx // ncol][idx % ncol].axis("off")
    missing = [c for c, _, _ in _PPO_CURVES if c not in {c for c, _, _ in cols}]
    note = _note("Columns not in the logs: " + ", ".join(missing)) if missing else ""
    return _img(fig, "PPO training curves") + note


def _hacking_section(logs: dict) -> str:
    plt = _plt()
    runs = {n: lg for n, lg in logs.items() if lg and "score" in lg and "gold" in lg}
    if not runs:
        return _note("Needs PPO logs with both 'score' (RM) and 'gold' columns; none found.")
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.0 * len(runs)), squeeze=False)
    texts = []
    for r, (name, lg) in enumerate(runs.items()):
        x = _x_of(lg)
        ax = axes[r][0]
        xs, score = _xy(lg, x, "score")
        xg, gold = _xy(lg, x, "gold")
        ax.plot(xs, score, color="#e07a1f", alpha=0.25)
        ax.plot(xs, _smooth(score), color="#e07a1f", lw=1.8, label="RM score (proxy)")
        ax.set_ylabel("RM score", color="#e07a1f")
        ax.set_xlabel(x)
        ax2 = ax.twinx()
        ax2.plot(xg, gold, color="#2f9e44", alpha=0.25)
        ax2.plot(xg, _smooth(gold), color="#2f9e44", lw=1.8, label="gold score")
        ax2.set_ylabel("gold score", color="#2f9e44")
        ax2.grid(False)
        ax.set_title(f"{_label(name)}: proxy vs gold over training", loc="left")
        t = _gold_trend(lg)
        if t and t["hacking"]:
            ax2.axvline(t["peak_at"], color="#c92a2a", ls="--", lw=1)
            ax2.annotate("gold peaks", (t["peak_at"], t["gold_peak"]), fontsize=8, color="#c92a2a",
                         xytext=(5, -12), textcoords="offset points")
        ax = axes[r][1]
        if "kl" in lg:
            kx, ky = [], []
            for k, s, g in zip(lg.get("kl", []), lg.get("score", []), lg.get("gold", [])):
                if k is not None and s is not None and g is not None:
                    kx.append(k)
                    ky.append((s, g))
            if kx:
                ax.scatter(kx, [s for s, _ in ky], s=8, color="#e07a1f", alpha=0.6, label="RM score")
                ax3 = ax.twinx()
                ax3.scatter(kx, [g for _, g in ky], s=8, color="#2f9e44", alpha=0.6, label="gold")
                ax3.set_ylabel("gold", color="#2f9e44")
                ax3.grid(False)
                ax.set_xlabel("KL to SFT (nats per response)")
                ax.set_ylabel("RM score", color="#e07a1f")
                ax.set_title("the same against KL spent", loc="left")
        else:
            ax.axis("off")
        if t:
            if t["hacking"]:
                texts.append(f"<b>{_e(_label(name))}: over-optimization.</b> Gold peaked at {t['gold_peak']:.3f} "
                             f"({_e(t['x'])} {t['peak_at']:.0f}) and ended at {t['gold_end']:.3f}, while the RM score "
                             f"went on from {t['score_at_peak']:.3f} to {t['score_end']:.3f}: past the peak the policy "
                             "exploits the reward model rather than getting better (Gao et al. 2022).")
            else:
                texts.append(f"<b>{_e(_label(name))}:</b> RM score {t['score_start']:.3f} → {t['score_end']:.3f}, "
                             f"gold {t['gold_start']:.3f} → {t['gold_end']:.3f} (peak {t['gold_peak']:.3f}): "
                             "no sign of reward hacking at this KL.")
    img = _img(fig, "RM score vs gold score over PPO training")
    return img + "<ul>" + "".join(f"<li>{t}</li>" for t in texts) + "</ul>"


def _stage_curves_section(logs: dict) -> str:
    plt = _plt()
    panels = []
    for name, groups in (("sft", _SFT_CURVES), ("rm", _RM_CURVES)):
        lg = logs.get(name)
        if not lg:
            continue
        x = _x_of(lg)
        for g in groups:
            present = [c for c in g if c in lg]
            if present and x:
                panels.append((name, x, present, lg))
    if not panels:
        return _note("No SFT or RM logs (log.csv with loss/accuracy columns) were found.")
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.5 * nrow), squeeze=False)
    for i, (name, x, cols, lg) in enumerate(panels):
        ax = axes[i // ncol][i % ncol]
        for j, c in enumerate(cols):
            xs, ys = _xy(lg, x, c)
            style = "o-" if len(xs) < 30 else "-"
            ax.plot(xs, ys, style, ms=3, lw=1.2, color=_PALETTE[j], label=c)
        ax.set_title(f"{name.upper()}: {', '.join(cols)}", loc="left")
        ax.set_xlabel(x)
        if len(cols) > 1:
            ax.legend()
    for i in range(len(panels), nrow * ncol):
        axes[i // ncol][i % ncol].axis("off")
    return _img(fig, "SFT and RM training curves")


def _tax_section(metrics: dict) -> str:
    plt = _plt()
    models = _models_in(metrics, ["tax.benchmark", "tax.pretrain_nll"])
    if not models:
        return _note("No tax.benchmark.* / tax.pretrain_nll.* keys: the alignment tax was not measured.")
    base = "base" if "base" in models else None
    rows = []
    for m in models:
        b, n = _num(metrics.get(f"tax.benchmark.{m}")), _num(metrics.get(f"tax.pretrain_nll.{m}"))
        db = dn = "–"
        if base and m != base:
            bb, bn = _num(metrics.get(f"tax.benchmark.{base}")), _num(metrics.get(f"tax.pretrain_nll.{base}"))
            if b is not None and bb is not None:
                d = 100 * (b - bb)
                db = f'<span class="{"bad" if d < -0.5 else "good" if d > 0.5 else ""}">{d:+.1f} pts</span>'
            if n is not None and bn is not None:
                d = n - bn
                dn = f'<span class="{"bad" if d > 0.01 else "good" if d < -0.01 else ""}">{d:+.3f}</span>'
        rows.append([_e(_label(m)), _pct(b, 1), db, _fmt(n), dn])
    table = _table(["model", "benchmark accuracy", "vs base", "pretraining NLL (nats/token)", "vs base"], rows)
    series = [(p, t) for p, t in (("tax.benchmark", "benchmark accuracy (higher is better)"),
                                   ("tax.pretrain_nll", "pretraining NLL (lower is better)"))
              if any(_num(metrics.get(f"{p}.{m}")) is not None for m in models)]
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 2.8), squeeze=False)
    for ax, (p, title) in zip(axes[0], series):
        names = [m for m in models if _num(metrics.get(f"{p}.{m}")) is not None]
        vals = [metrics[f"{p}.{m}"] for m in names]
        ax.bar([_label(m) for m in names], vals, color=[_color(m, i) for i, m in enumerate(names)])
        lo, hi = min(vals), max(vals)
        if p == "tax.pretrain_nll" and hi > 0:
            ax.set_ylim(max(0, lo - (hi - lo) * 1.5 - 0.05), hi + (hi - lo) * 0.5 + 0.05)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
    img = _img(fig, "alignment tax")
    # Per-task breakdown.
    tasks = sorted({k.split(".")[2] for k in metrics if k.startswith("tax.benchmark_task.") and k.count(".") == 3})
    extra = ""
    if tasks:
        trows = [[_e(t)] + [_pct(metrics.get(f"tax.benchmark_task.{t}.{m}")) for m in models] for t in tasks]
        extra = "<details><summary>Benchmark accuracy per task</summary>" + _table(
            ["task"] + [_label(m) for m in models], trows) + "</details>"
    return table + img + extra


def _hhh_section(metrics: dict) -> str:
    plt = _plt()
    kinds = (("refusal_harmful", "refuses harmful requests", "high"),
             ("idk_unanswerable", "says \"I don't know\" to unanswerable questions", "high"),
             ("over_refusal", "refuses / IDKs answerable prompts", "low"),
             ("constraint", "follows explicit constraints", "high"))
    models = _models_in(metrics, [f"hhh.{k}" for k, _, _ in kinds])
    if not models:
        return _note("No hhh.* keys: the world's HHH rates were not measured (real, non-world prompts?).")
    present = [k for k in kinds if any(f"hhh.{k[0]}.{m}" in metrics for m in models)]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(present))]
        vals = [_num(metrics.get(f"hhh.{k}.{m}")) or 0.0 for k, _, _ in present]
        ax.bar(xs, vals, width=width, color=_color(m, i), label=_label(m))
    ax.set_xticks(range(len(present)), [textwrap.fill(t, 26) + f"\n(want {w})" for _, t, w in present], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of prompts")
    ax.legend(ncol=len(models), loc="upper center", bbox_to_anchor=(0.5, 1.18))
    img = _img(fig, "helpful, honest, harmless rates")
    rows = [[_e(_label(m))] + [_pct(metrics.get(f"hhh.{k}.{m}"), 1) for k, _, _ in present] for m in models]
    return img + _table(["model"] + [f"{t} (want {w})" for _, t, w in present], rows)


def _bon_gap(metrics: dict) -> tuple[float, float, float, float] | None:
    """(sampled, rm pick, gold judge pick, share of the gap the RM's pick closes) when all are known."""
    sampled, picked, oracle = (_num(metrics.get(k)) for k in ("bon.gold_sampled", "bon.gold", "bon.gold_oracle"))
    if None in (sampled, picked, oracle) or oracle - sampled <= 1e-9:
        return None
    return sampled, picked, oracle, (picked - sampled) / (oracle - sampled)


def _bon_section(metrics: dict) -> str:
    if "bon.n" not in metrics and "bon.kl" not in metrics:
        return _note("Best-of-n was not evaluated (eval.best_of_n = 0 or no reward model).")
    n = metrics.get("bon.n")
    rows = [[f"best-of-{_e(n)} from SFT (the RM picks)", _fmt(metrics.get("bon.kl"), 2) + " (analytic: log n − (n−1)/n)",
             _fmt(metrics.get("bon.gold")), _fmt(metrics.get("bon.rm_score"))]]
    if _num(metrics.get("bon.gold_oracle")) is not None:
        rows.append([f"best-of-{_e(n)} from SFT, picked by the gold judge (ceiling)", "—",
                     _fmt(metrics.get("bon.gold_oracle")), ""])
    if _num(metrics.get("bon.gold_sampled")) is not None:
        rows.append([f"one SFT sample at T = 1 (mean of the {_e(n)})", "0", _fmt(metrics.get("bon.gold_sampled")),
                     _fmt(metrics.get("bon.rm_score_sampled"))])
    for m in ("sft", "ppo", "ppo_ptx"):
        if any(k in metrics for k in (f"gold.{m}", f"kl.{m}")):
            rows.append([_e(_label(m)), _fmt(metrics.get(f"kl.{m}"), 2) if m != "sft" else "0",
                         _fmt(metrics.get(f"gold.{m}")), _fmt(metrics.get(f"rm_score.{m}"))])
    key = next((k for k in metrics if k.startswith("winrate.bon")), None)
    extra = ""
    if key:
        lo, hi = _ci(metrics, "winrate", key[len("winrate."):])
        extra = _note(f"Best-of-{n} vs SFT win rate: {_pct(metrics[key], 1)} (95% CI {_pct(lo, 1)}–{_pct(hi, 1)}).")
    gap = _bon_gap(metrics)
    if gap:
        sampled, picked, oracle, share = gap
        extra += _note(f"How much the RM sees: among the same {n} samples per prompt, the gold judge's own pick scores "
                       f"{oracle:.3f} and a random one {sampled:.3f}; the RM's pick, {picked:.3f}, closes "
                       f"{_pct(share)} of that gap. A reward model can only steer PPO toward differences it can "
                       "see, so this share bounds what RLHF can gain over sampling from SFT.")
    intro = _note("Best-of-n spends KL far more efficiently than RL does (Gao et al. 2022); the RM score of "
                  "SFT answers is greedy here while best-of-n samples at T = 1.")
    return _table(["policy", "KL to SFT (nats)", "gold", "RM score"], rows) + extra + intro


#: The paper's Fig. 1 methods: (label, small model, large model).
_SIZE_METHODS = (("GPT (base)", "base", "base_large"), ("SFT", "sft", "sft_large"), ("PPO", "ppo", "ppo_large"),
                 ("PPO-ptx", "ppo_ptx", "ppo_ptx_large"))


def _sizes_section(metrics: dict) -> str:
    """Win rate against the large SFT model by model size and method (the paper's Fig. 1)."""
    if not any(k.startswith("winrate.") and k.endswith("_vs_sft_large") for k in metrics):
        return _note("Only the small model was aligned here; `--set align_large=true` (on in the paper preset) "
                     "takes the large base through SFT, PPO and PPO-ptx too.")
    sizes = (_num(metrics.get("params.base")), _num(metrics.get("params.base_large")))

    def wr(m: str) -> tuple[float | None, float | None, float | None]:
        if m == "sft_large":
            return 0.5, None, None  # the baseline against itself
        lo, hi = _ci(metrics, "winrate", f"{m}_vs_sft_large")
        return _num(metrics.get(f"winrate.{m}_vs_sft_large")), lo, hi

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    rows = []
    for i, (label, small, large) in enumerate(_SIZE_METHODS):
        both = (wr(small), wr(large))
        pts = [(x, *r) for x, r in zip(sizes, both) if x and r[0] is not None]
        if pts:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            err = [[p[1] - p[2] if p[2] is not None else 0 for p in pts], [p[3] - p[1] if p[3] is not None else 0 for p in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=_color(large, i), label=label)
        rows.append([_e(label)] + [f"{_pct(w, 1)}" + (f" ({_pct(lo, 1)}–{_pct(hi, 1)})" if lo is not None else "")
                                   for w, lo, hi in both]
                    + [_fmt(metrics.get(f"gold.{small}")), _fmt(metrics.get(f"gold.{large}"))])
    ax.axhline(0.5, color="#c92a2a", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("win rate vs the large SFT model")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    img = _img(fig, "win rate against the large SFT model by model size")
    small_p, large_p = (f"{int(x):,}" if x else "?" for x in sizes)
    return img + _table(["method", f"small ({small_p} params): win rate vs large SFT",
                         f"large ({large_p} params): win rate vs large SFT", "gold (small)", "gold (large)"], rows)


def _families_in(metrics: dict) -> list[str]:
    fams = {m.group(1) for k in metrics if (m := re.fullmatch(r"gold_family\.([^.]+)\.[^.]+", k))}
    fams |= {m.group(1) for k in metrics if (m := re.fullmatch(r"rm_family\.([^.]+)\.(rm|gold)", k)) and m.group(1) != "all"}
    return sorted(fams)


def _families_section(metrics: dict) -> str:
    fams = _families_in(metrics)
    if not fams:
        return _note("No gold_family.* / rm_family.* keys: per-family scores need the world's prompts.")
    models = _models_in(metrics, [f"gold_family.{f}" for f in fams])
    has_rm = any(f"rm_family.{f}.rm" in metrics for f in fams)
    delta_of = [m for m in ("ppo", "ppo_ptx") if m in models and "sft" in models]
    header = ["task family"] + [f"gold: {_label(m)}" for m in models] + [f"{_label(m)} − SFT" for m in delta_of]
    has_len = any(f"rm_family.{f}.rm_shorter" in metrics for f in fams)
    if has_rm:
        header += ["RM agrees with held-out labelers", "gold judge agrees with them"]
    if has_len:
        header += ["RM prefers the shorter answer", "labelers prefer the shorter answer"]
    rows = []
    for f in fams + (["all"] if has_rm else []):
        g = {m: _num(metrics.get(f"gold.{m}" if f == "all" else f"gold_family.{f}.{m}")) for m in models}
        row = [_e(f if f != "all" else "all prompts")] + [_fmt(g[m]) for m in models]
        for m in delta_of:
            d = None if g.get(m) is None or g.get("sft") is None else round(g[m] - g["sft"], 3) + 0.0  # no "-0.000"
            cls = "" if d is None or abs(d) < 0.02 else (' class="good"' if d > 0 else ' class="bad"')
            row.append(f"<span{cls}>{'' if d is None else f'{d:+.3f}'}</span>")
        if has_rm:
            r, gj = _num(metrics.get(f"rm_family.{f}.rm")), _num(metrics.get(f"rm_family.{f}.gold"))
            blind = r is not None and r <= 0.55
            row += [("<b>" if blind else "") + _pct(r, 1) + (" (≤ 55%: near or below chance)</b>" if blind else ""),
                    _pct(gj, 1)]
        if has_len:
            row += [_pct(metrics.get(f"rm_family.{f}.rm_shorter")), _pct(metrics.get(f"rm_family.{f}.labeler_shorter"))]
        rows.append(row)
    body = _table(header, rows)
    if has_rm:
        plt = _plt()
        present = [f for f in fams if _num(metrics.get(f"rm_family.{f}.rm")) is not None]
        fig, ax = plt.subplots(figsize=(10, 3.0))
        xs = range(len(present))
        ax.bar([x - 0.2 for x in xs], [metrics[f"rm_family.{f}.rm"] for f in present], width=0.4, color="#3e7cb1",
               label="reward model")
        ax.bar([x + 0.2 for x in xs], [_num(metrics.get(f"rm_family.{f}.gold")) or 0.0 for f in present], width=0.4,
               color="#ced4da", label="gold judge")
        ax.axhline(0.5, color="#c92a2a", lw=0.8, ls=":")
        ax.set_xticks(list(xs), present, rotation=20, fontsize=8)
        ax.set_ylim(0.3, 1.0)
        ax.set_ylabel("pairwise agreement")
        ax.legend(ncol=2, loc="upper center", bbox_to_anchor=(0.5, 1.2))
        body = _img(fig, "RM and gold judge agreement with held-out labelers per family") + body
    return body


def _labelers_section(metrics: dict) -> str:
    rows_def = (
        ("labelers.agreement", "agreement between two training labelers", "72.6% ± 1.5 (training), 77.3% (held-out)"),
        ("rm.val_accuracy", "RM accuracy on held-out comparisons", "72.4% ± 0.4 (labelers in its training set)"),
        ("rm.heldout_labeler_accuracy", "RM accuracy on held-out labelers", "69.6% ± 0.9"),
    )
    rows = [[_e(t), _pct(metrics.get(k), 1), _e(p)] for k, t, p in rows_def if k in metrics]
    if not rows:
        return _note("No labelers.agreement / rm.* accuracy keys in the metrics.")
    # Iterated RLHF: the RM of each earlier round (trained on fewer comparisons, none of its PPO's samples).
    for k in sorted(metrics):
        m = re.fullmatch(r"round(\d+)\.rm\.(val_accuracy|heldout_labeler_accuracy)", k)
        if not m:
            continue
        r, what = m.groups()
        rows.append([_e(f"round {r} RM: " + ("accuracy on held-out comparisons" if what == "val_accuracy"
                                             else "accuracy on held-out labelers")), _pct(metrics.get(k), 1), ""])
    plt = _plt()
    present = [(k, t, p) for k, t, p in rows_def if _num(metrics.get(k)) is not None]
    body = _table(["measure", "this run", "InstructGPT paper"], rows)
    if present:
        paper = {"labelers.agreement": 0.726, "rm.val_accuracy": 0.724, "rm.heldout_labeler_accuracy": 0.696}
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(present) + 1.0))
        ys = range(len(present))
        ax.barh([y - 0.18 for y in ys], [metrics[k] for k, _, _ in present], height=0.36, color="#3e7cb1", label="this run")
        ax.barh([y + 0.18 for y in ys], [paper[k] for k, _, _ in present], height=0.36, color="#ced4da", label="paper")
        ax.set_yticks(list(ys), [t for _, t, _ in present])
        ax.invert_yaxis()
        ax.set_xlim(0.4, 1.0)
        ax.axvline(0.5, color="#999", lw=0.8, ls=":")
        ax.legend(loc="lower right")
        body = _img(fig, "labeler agreement and RM accuracy") + body
    return body


def _sweep_rows(extra: dict) -> tuple[list[dict], list[dict]]:
    """(beta rows, gamma rows) from extra_plots' 'beta_sweep'/'gamma_sweep' or 'sweeps'+'sweep_logs'."""
    beta = [dict(r) for r in extra.get("beta_sweep", []) or []]
    gamma = [dict(r) for r in extra.get("gamma_sweep", []) or []]
    sweeps = extra.get("sweeps") or {}
    logs = extra.get("sweep_logs") or {}
    for name in sorted(set(sweeps) | set(logs)):
        m = re.match(r"\s*(beta|gamma|kl_coef|ptx_coef)\s*=\s*([-+0-9.eE]+)", name)
        if not m:
            continue
        row: dict[str, Any] = {}
        lg = read_log(logs[name]) if name in logs else {}
        # End-of-run values: the mean of the last 10% of updates (the final row alone is noisy).
        for col in ("kl", "score", "gold", "ptx_loss", "entropy", "response_length"):
            vals = [v for v in lg.get(col, []) if v is not None]
            if vals:
                tail = vals[-max(1, len(vals) // 10):]
                row[col] = sum(tail) / len(tail)
            elif _num((sweeps.get(name) or {}).get(col)) is not None:
                row[col] = float(sweeps[name][col])
        for k, v in (sweeps.get(name) or {}).items():
            if k not in row and _num(v) is not None:
                row[k] = float(v)
        row["_log"] = lg
        if m.group(1) in ("beta", "kl_coef"):
            row["kl_coef"] = float(m.group(2))
            beta.append(row)
        else:
            row["ptx_coef"] = float(m.group(2))
            gamma.append(row)
    beta.sort(key=lambda r: r.get("kl_coef", 0))
    gamma.sort(key=lambda r: r.get("ptx_coef", 0))
    return beta, gamma


def _sweeps_section(extra: dict | None, metrics: dict) -> str:
    if not extra:
        return _note("No sweeps in this run (the 'paper' preset sweeps β and γ).")
    plt = _plt()
    beta, gamma = _sweep_rows(extra)
    parts = []
    if beta:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
        for ax, col, title in ((axes[0], "gold", "gold score vs KL"), (axes[1], "score", "RM score vs KL")):
            for i, r in enumerate(beta):
                c = _PALETTE[i % len(_PALETTE)]
                lg = r.get("_log") or {}
                if "kl" in lg and col in lg:
                    pts = [(k, v) for k, v in zip(lg["kl"], lg[col]) if k is not None and v is not None]
                    if pts:
                        ax.plot([p[0] for p in pts], _smooth([p[1] for p in pts]), color=c, alpha=0.5, lw=1)
                if _num(r.get("kl")) is not None and _num(r.get(col)) is not None:
                    ax.scatter([r["kl"]], [r[col]], color=c, s=40, zorder=3, label=f"β = {r['kl_coef']:g}")
            if col == "gold" and _num(metrics.get("bon.kl")) is not None and _num(metrics.get("bon.gold")) is not None:
                ax.scatter([metrics["bon.kl"]], [metrics["bon.gold"]], marker="*", s=120, color="black",
                           label=f"best-of-{metrics.get('bon.n')}")
            ax.set_xlabel("KL to SFT (nats per response)")
            ax.set_title(title, loc="left")
            ax.legend(fontsize=7)
        parts.append("<h3>KL coefficient β</h3>" + _img(fig, "beta sweep: gold and RM score vs KL"))
        parts.append(_table(["β", "KL", "RM score", "gold"],
                            [[f"{r['kl_coef']:g}", _fmt(r.get("kl"), 2), _fmt(r.get("score")), _fmt(r.get("gold"))]
                             for r in beta]))
        parts.append(_note("Lines: each run's trajectory over training; dots: its end. A small β buys RM score "
                           "with KL; where gold stops following the RM score, the policy is over-optimizing."))
    if gamma:
        cols = [c for c in ("gold", "score", "kl", "ptx_loss", "tax.benchmark", "tax.pretrain_nll")
                if any(_num(r.get(c)) is not None for r in gamma)]
        titles = {"gold": "gold score", "score": "RM score", "kl": "KL to SFT", "ptx_loss": "pretraining NLL (ptx batches)",
                  "tax.benchmark": "benchmark accuracy", "tax.pretrain_nll": "held-out pretraining NLL"}
        if cols:
            fig, axes = plt.subplots(1, len(cols), figsize=(3.3 * len(cols), 2.8), squeeze=False)
            xs = [r["ptx_coef"] for r in gamma]
            for ax, c in zip(axes[0], cols):
                pts = [(x, r[c]) for x, r in zip(xs, gamma) if _num(r.get(c)) is not None]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#2f9e44")
                pos = [x for x in xs if x > 0]
                if pos and max(pos) / min(pos) > 20:  # wide sweeps: log-like axis, 0 kept
                    ax.set_xscale("symlog", linthresh=min(pos))
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
                ax.minorticks_off()
                ax.set_xlabel("γ (ptx_coef)")
                ax.set_title(titles.get(c, c), loc="left")
            parts.append("<h3>Pretraining mix γ</h3>" + _img(fig, "gamma sweep"))
            parts.append(_table(["γ"] + [titles.get(c, c) for c in cols],
                                [[f"{r['ptx_coef']:g}"] + [_fmt(r.get(c)) for c in cols] for r in gamma]))
    if not parts:
        return _note("extra_plots held no recognizable sweep (expected 'sweeps'/'sweep_logs' named beta=…/gamma=…, "
                     "or 'beta_sweep'/'gamma_sweep' rows).")
    return "".join(parts)


def _gold_or_none(prompt: str, response: str) -> float | None:
    try:
        from instructrl.world.judge import gold_score

        return float(gold_score(prompt, response))
    except Exception:
        return None


def _samples_section(samples: dict | None) -> str:
    if not samples or not samples.get("prompts") or not samples.get("models"):
        return _note("No sample answers were given (samples.json).")
    prompts = samples["prompts"]
    fams = samples.get("families") or [None] * len(prompts)
    models = [m for m in MODEL_ORDER if m in samples["models"]] + sorted(
        m for m in samples["models"] if m not in MODEL_ORDER)
    head = "".join(f"<th>{_e(_label(m))}</th>" for m in models)
    rows = []
    for i, p in enumerate(prompts):
        fam = fams[i] if i < len(fams) else None
        cells = []
        for m in models:
            answers = samples["models"][m]
            a = answers[i] if i < len(answers) else ""
            g = _gold_or_none(p, a)
            badge = ""
            if g is not None:
                cls = "good" if g >= 0.75 else "bad" if g < 0.4 else "even"
                badge = f'<span class="tag {cls}" title="gold score">{g:.2f}</span>'
            text = _e(a) if a.strip() else '<span class="empty">(empty)</span>'
            cells.append(f'<td><div class="answer">{text}</div>{badge}</td>')
        fam_tag = f'<span class="tag fam">{_e(fam)}</span>' if fam else ""
        rows.append(f'<tr><td class="prompt">{fam_tag}<div class="answer">{_e(p)}</div></td>{"".join(cells)}</tr>')
    t = samples.get("temperature")
    note = _note(f"Same prompts for every model; decoding temperature {t} ({'greedy' if t == 0 else 'sampled'}). "
                 "Badges: gold score.") if t is not None else ""
    return (f'<div class="scroll"><table class="samples"><thead><tr><th>prompt</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{note}')


def _timings_section(metrics: dict) -> str:
    times = {k[len("time_s."):]: _num(v) for k, v in metrics.items() if k.startswith("time_s.") and _num(v) is not None}
    if not times:
        return _note("No time_s.* keys in the metrics.")
    plt = _plt()
    total = times.pop("total", None)
    body = ""
    if times:
        names = list(times)
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.0))
        ax.barh(names, [times[n] for n in names], color="#7048e8")
        for i, n in enumerate(names):
            ax.text(times[n], i, f" {times[n]:.0f}s", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("seconds")
        body = _img(fig, "time per stage")
    rows = [[_e(n), f"{v:.1f}", _pct(v / total, 0) if total else "–"] for n, v in times.items()]
    if total is not None:
        rows.append(["<b>total</b>", f"<b>{total:.1f}</b>", "100%"])
    return body + _table(["stage", "seconds", "share"], rows)


def _all_metrics(metrics: dict) -> str:
    rows = []
    for k in sorted(metrics):
        v = metrics[k]
        if isinstance(v, (list, tuple)):
            s = "[" + ", ".join(_fmt(x, 4) for x in v) + "]"
        elif _num(v) is not None:
            s = _fmt(v, 4) if not float(v).is_integer() else str(int(v)) if abs(v) < 1e15 else _fmt(v)
        else:
            s = _e(v)
        rows.append([f"<code>{_e(k)}</code>", s])
    return "<details><summary>All metrics (metrics.json)</summary>" + _table(["key", "value"], rows) + "</details>"


_CSS = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--good:#2f9e44;--bad:#c92a2a;--even:#868e96;--accent:#3e7cb1}
*{box-sizing:border-box}
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
 margin:0;background:#f5f7fa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
header h1{margin:0 0 4px;font-size:26px}
header .sub{color:var(--muted);font-size:13px}
nav{margin:14px 0 6px;font-size:13px;display:flex;flex-wrap:wrap;gap:4px 14px}
nav a{color:var(--accent);text-decoration:none;white-space:nowrap}
section{border-top:1px solid var(--line);padding-top:14px;margin-top:22px}
h2{font-size:19px;margin:0 0 8px}
h3{font-size:15px;margin:16px 0 6px}
p.intro{color:var(--muted);margin:0 0 10px;font-size:14px}
p.note{color:var(--muted);font-size:13px;font-style:italic;margin:6px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0 14px}
.card{flex:1 1 200px;border-radius:10px;padding:12px 14px;border:1px solid var(--line);border-left:6px solid var(--even)}
.card.good{border-left-color:var(--good)}.card.bad{border-left-color:var(--bad)}
.card-title{font-size:13px;color:var(--muted)}
.card .big{font-size:34px;font-weight:700;line-height:1.1}
.card .small{font-size:12px;color:var(--muted)}
.card .verdict{font-size:13px;font-weight:600;margin-top:4px}
.card.good .verdict{color:var(--good)}.card.bad .verdict{color:var(--bad)}
ul.headline{font-size:15px;padding-left:20px}
ul.headline li{margin:4px 0}
img.plot{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}
td span.good,.tag.good{color:var(--good)}td span.bad,.tag.bad{color:var(--bad)}
.tag{display:inline-block;font-size:11px;border:1px solid currentColor;border-radius:9px;padding:0 6px;margin-top:3px}
.tag.even{color:var(--even)}.tag.na{color:var(--even)}.tag.fam{color:var(--accent);margin:0 0 4px}
.scroll{overflow-x:auto}
table.samples td{min-width:130px;max-width:260px}
table.samples td.prompt{background:#fafbfc;min-width:180px}
.answer{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.empty{color:var(--muted);font-style:italic}
details{margin:10px 0}summary{cursor:pointer;color:var(--accent);font-size:13px}
code{font-size:12px}
footer{margin-top:30px;color:var(--muted);font-size:12px}
"""


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------


def _discover_logs(run_dir: Path) -> dict[str, str]:
    out = {}
    for name in ("sft", "rm", "ppo", "ppo_ptx"):
        for cand in (run_dir / name / "log.csv", run_dir / name / "logs" / "log.csv"):
            if cand.is_file():
                out[name] = str(cand)
                break
    return out


def write_report(run_dir, metrics: dict, out_path, samples: dict | None = None,
                 logs: dict[str, str] | None = None, extra_plots: dict | None = None) -> Path:
    """Write the self-contained HTML report and return its path.

    ``metrics``: the flat metrics.json dict. ``samples``: ``{"prompts", "families", "models":
    {name: [answers]}, "judge", "temperature"}`` (evaluate_models' second result; default:
    ``run_dir/samples.json`` or ``run_dir/eval/samples.json`` when present). ``logs``: name ->
    CSV log path; names ``ppo``/``ppo_ptx`` (PPO curves, reward hacking), ``sft``, ``rm`` (default:
    ``run_dir/<name>/log.csv`` when present). ``extra_plots``: sweeps, see the module docstring.
    """
    run_dir = Path(run_dir) if run_dir is not None else Path(".")
    out_path = Path(out_path)
    metrics = dict(metrics or {})
    if samples is None:
        for cand in (run_dir / "samples.json", run_dir / "eval" / "samples.json"):
            if cand.is_file():
                try:
                    samples = json.loads(cand.read_text())
                except (OSError, json.JSONDecodeError):
                    samples = None
                break
    if logs is None:
        logs = _discover_logs(run_dir)
    parsed = {name: read_log(p) for name, p in (logs or {}).items() if p}
    ppo_logs = {n: lg for n, lg in parsed.items() if n not in ("sft", "rm")}
    judge_id = (samples or {}).get("judge") or "heldout_labelers"
    judge = {"heldout_labelers": "held-out simulated labelers", "reward_model": "the reward model",
             "gold": "the gold judge"}.get(judge_id, str(judge_id))

    sections = [
        ("headline", "Does RLHF work here?", _headline(metrics, ppo_logs, judge),
         f"Win rates on held-out prompts, judged by {_e(judge)} (ties count half; 95% bootstrap intervals)."),
        ("winrates", "Win rates", _winrate_section(metrics, judge),
         "How often the first model's answer is preferred. Right of the red line: the first model wins."),
        ("scores", "Gold and reward-model scores", _per_model_section(metrics),
         "The gold score is the world's hidden judge (never seen by the RM or PPO); the RM score is the proxy "
         "PPO optimizes."),
        ("ppo", "PPO training", _ppo_curves_section(ppo_logs),
         "Per update; faint lines raw, bold lines smoothed. docs/metrics.md explains every column."),
        ("hacking", "Reward hacking: RM score vs gold over PPO training", _hacking_section(ppo_logs),
         "While both rise, optimizing the proxy helps; when the RM score keeps rising and gold falls, the policy "
         "has found the reward model's blind spots."),
        ("stages", "SFT and reward-model training", _stage_curves_section(parsed), ""),
        ("tax", "Alignment tax", _tax_section(metrics),
         "Accuracy on the world's \"public NLP benchmarks\" (options scored by log-probability) and NLL on held-out "
         "pretraining text. PPO tends to pay a tax; PPO-ptx mixes pretraining gradients in to avoid it."),
        ("hhh", "Helpful, honest, harmless", _hhh_section(metrics), ""),
        ("rubric", "What the labelers' rubric sees: the paper's Fig. 4", _rubric_section(metrics),
         "How often each model's greedy answers fail to attempt the instruction, fail an explicit constraint, "
         "hallucinate (closed-domain prompts) or are inappropriate for a customer assistant, and the judge's other "
         "attributes (docs/rubric.md)."),
        ("categories", "Where RLHF gains and where it does not: prompt categories", _categories_section(metrics),
         "Mean gold score per InstructGPT Table 1 category (and the HHH probes)."),
        ("bon", "Best-of-n", _bon_section(metrics), ""),
        ("sizes", "Model sizes: every method against the large SFT model", _sizes_section(metrics),
         "The paper's Fig. 1: each method at each model size, judged against the large SFT model (ties count "
         "half; 95% intervals). The large models are aligned with the same reward model as the small ones."),
        ("families", "Where RLHF gains and loses: task families", _families_section(metrics),
         "Mean gold score per task family, and how often the final RM and the gold judge order a held-out "
         "labeler's pairs as that labeler did (ties count half). Where the RM is near 50%, it cannot see the "
         "quality differences the labelers rank by, and PPO can only exploit its other preferences there — "
         "such as length: the last two columns say how often the RM and the labelers prefer the shorter of two "
         "answers of different lengths."),
        ("labelers", "Labelers and reward model", _labelers_section(metrics), ""),
        ("sweeps", "Sweeps", _sweeps_section(extra_plots, metrics), ""),
        ("samples", "Sample answers, side by side", _samples_section(samples), ""),
        ("timings", "Timings", _timings_section(metrics), ""),
    ]
    short = {"headline": "Headline", "scores": "Scores", "ppo": "PPO curves", "stages": "SFT & RM",
             "rubric": "Fig. 4", "categories": "Categories",
             "hhh": "HHH", "sizes": "Sizes", "families": "Families", "labelers": "Labelers & RM", "samples": "Samples"}
    nav = "".join(f'<a href="#{a}">{_e(short.get(a, t.split(":")[0]))}</a>' for a, t, _, _ in sections)
    nav += '<a href="#all">All metrics</a>'

    body = "".join(_section(a, t, b, i) for a, t, b, i in sections)
    models = sorted({k.split(".")[-1] for k in metrics if k.startswith(("gold.", "tax.benchmark.", "length."))},
                    key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else 99, m))
    sub = f"run: {_e(run_dir)} · generated {datetime.now().strftime('%Y-%m-%d %H:%M')}"
    if models:
        sub += " · models: " + ", ".join(_e(_label(m)) for m in models)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>instructrl report: {_e(run_dir.name or run_dir)}</title><style>{_CSS}</style></head>"
        f"<body><main><header><h1>InstructGPT in miniature: report</h1><div class=\"sub\">{sub}</div></header>"
        f"<nav>{nav}</nav>{body}<section id=\"all\"><h2>All metrics</h2>{_all_metrics(metrics)}</section>"
        "<footer>Written by instructrl (SFT → K-wise RM → PPO / PPO-ptx, after Ouyang et al. 2022). "
        "Self-contained: no scripts, no external files.</footer></main></body></html>\n"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
