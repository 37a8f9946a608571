"""The report's figures: one function per figure, data in, an embedded PNG ``<img>`` out.

matplotlib (Agg backend) is imported on first use (:func:`pyplot`), so reading this package costs
nothing until a figure is drawn. Colours: one per known model (:data:`COLORS`), else :data:`PALETTE`.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap

from instructrl.report.analysis import gold_trend, interval, num, smooth, x_of, xy
from instructrl.report.html import esc, model_label

COLORS = {
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
PALETTE = ["#3e7cb1", "#e07a1f", "#2f9e44", "#c92a2a", "#7048e8", "#0c8599", "#e8590c", "#5c940d"]


def pyplot():
    """matplotlib's pyplot with the Agg backend and the report's style (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 100, "font.size": 9, "axes.titlesize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.25, "legend.frameon": False, "legend.fontsize": 8,
    })
    return plt


def png_img(fig, alt: str) -> str:
    """An <img> with the figure as an embedded base64 PNG (the figure is closed)."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def model_color(name: str, i: int = 0) -> str:
    """A model's colour: its own, else the ``i``-th of the palette."""
    return COLORS.get(name, PALETTE[i % len(PALETTE)])


def winrates(has_gold, labels, order, judge, metrics) -> str:
    """Horizontal bars of each pair's win rate by the judge (and the gold judge), 95% intervals as error bars."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(order) + 1.2))
    h = 0.38 if has_gold else 0.6
    ys = list(range(len(order)))
    for j, (prefix, color, name) in enumerate((("winrate", "#3e7cb1", judge), ("gold_winrate", "#adb5bd", "gold judge"))):
        if prefix == "gold_winrate" and not has_gold:
            continue
        vals, errs_lo, errs_hi, yy = [], [], [], []
        for i, k in enumerate(order):
            v = num(metrics.get(f"{prefix}.{k}"))
            if v is None:
                continue
            lo, hi = interval(metrics, prefix, k)
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
    return png_img(fig, "win rates with 95% intervals")


def rubric(fig4, models, attributes, metrics) -> str:
    """The paper's Fig. 4: per attribute of ``fig4``, the rate of each model's answers that fail it."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(fig4), figsize=(2.6 * len(fig4), 2.8), squeeze=False)
    for ax, a in zip(axes[0], fig4):
        vals = [num(metrics.get(f"rubric.{a}.{m}")) or 0.0 for m in models]
        ax.bar(range(len(models)), vals, color=[model_color(m, i) for i, m in enumerate(models)])
        ax.set_xticks(range(len(models)), [model_label(m) for m in models], rotation=45, fontsize=7, ha="right")
        ax.set_title(textwrap.fill(attributes[a], 28), fontsize=8)
        ax.set_ylim(0, max(0.05, max(vals) * 1.25))
    axes[0][0].set_ylabel("fraction of answers")
    return png_img(fig, "rubric attributes per model (the paper's Fig. 4)")


def _grouped_bars(ax, models, values) -> None:
    """Side-by-side bars: one group per x position, one bar per model (``values[i]``: model i's row)."""
    width = 0.8 / len(models)
    for i, (m, vals) in enumerate(zip(models, values)):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(vals))]
        ax.bar(xs, vals, width=width, color=model_color(m, i), label=model_label(m))


def categories(models, cats, metrics) -> str:
    """Mean gold score per prompt category, one bar per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    _grouped_bars(ax, models, [[num(metrics.get(f"gold_category.{c}.{m}")) or 0.0 for c in cats] for m in models])
    ax.set_xticks(range(len(cats)), [c.replace("_", " ") for c in cats], rotation=20, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean gold score")
    ax.legend(ncol=min(len(models), 6), loc="upper center", bbox_to_anchor=(0.5, 1.22), fontsize=8)
    return png_img(fig, "gold score per prompt category")


def _bar_panel(ax, metrics: dict, measure: str, title: str, models, nd: int) -> list[float]:
    """One bar per model of ``<measure>.<model>``, each labelled with its value (``nd`` decimals)."""
    names = [m for m in models if num(metrics.get(f"{measure}.{m}")) is not None]
    vals = [metrics[f"{measure}.{m}"] for m in names]
    ax.bar([model_label(m) for m in names], vals, color=[model_color(m, i) for i, m in enumerate(names)])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.{nd}f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    return vals


def per_model(series, models, metrics) -> str:
    """Gold and RM score per model, one panel per measure of ``series``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 2.8), squeeze=False)
    for ax, (p, title) in zip(axes[0], series):
        _bar_panel(ax, metrics, p, title, models, 2)
        ax.axhline(0, color="#333", lw=0.8)
        if p == "gold":
            ax.set_ylim(0, 1)
    return png_img(fig, "gold and RM score per model")


def ppo_curves(cols, runs) -> str:
    """The PPO log columns ``cols`` over training, one panel each, every run of ``runs`` (raw and smoothed)."""
    plt = pyplot()
    n = len(cols)
    ncol = 3
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.6 * nrow), squeeze=False)
    for idx, (col, title, healthy) in enumerate(cols):
        ax = axes[idx // ncol][idx % ncol]
        for i, (name, lg) in enumerate(runs.items()):
            x = x_of(lg)
            if x is None or col not in lg:
                continue
            xs, ys = xy(lg, x, col)
            if not xs:
                continue
            c = model_color(name, i)
            ax.plot(xs, ys, color=c, alpha=0.25, lw=1)
            ax.plot(xs, smooth(ys), color=c, lw=1.6, label=model_label(name))
        ax.set_title(title, loc="left")
        ax.set_title(f"healthy: {healthy}", loc="right", fontsize=7, color="#666")
        ax.set_xlabel(x_of(next(iter(runs.values()))) or "")
        if idx == 0:
            ax.legend()
    for idx in range(n, nrow * ncol):
        axes[idx // ncol][idx % ncol].axis("off")
    return png_img(fig, "PPO training curves")


def hacking(runs: dict) -> str:
    """Per PPO run: RM score and gold over training (the peak of gold marked when it is hacked), and
    both against KL."""
    plt = pyplot()
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.0 * len(runs)), squeeze=False)
    for r, (name, lg) in enumerate(runs.items()):
        x = x_of(lg)
        ax = axes[r][0]
        xs, score = xy(lg, x, "score")
        xg, gold = xy(lg, x, "gold")
        ax.plot(xs, score, color="#e07a1f", alpha=0.25)
        ax.plot(xs, smooth(score), color="#e07a1f", lw=1.8, label="RM score (proxy)")
        ax.set_ylabel("RM score", color="#e07a1f")
        ax.set_xlabel(x)
        ax2 = ax.twinx()
        ax2.plot(xg, gold, color="#2f9e44", alpha=0.25)
        ax2.plot(xg, smooth(gold), color="#2f9e44", lw=1.8, label="gold score")
        ax2.set_ylabel("gold score", color="#2f9e44")
        ax2.grid(False)
        ax.set_title(f"{model_label(name)}: proxy vs gold over training", loc="left")
        t = gold_trend(lg)
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
    return png_img(fig, "RM score vs gold score over PPO training")


def stage_curves(panels) -> str:
    """The SFT and RM log columns of ``panels`` over training."""
    plt = pyplot()
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(11, 2.5 * nrow), squeeze=False)
    for i, (name, x, cols, lg) in enumerate(panels):
        ax = axes[i // ncol][i % ncol]
        for j, c in enumerate(cols):
            xs, ys = xy(lg, x, c)
            style = "o-" if len(xs) < 30 else "-"
            ax.plot(xs, ys, style, ms=3, lw=1.2, color=PALETTE[j], label=c)
        ax.set_title(f"{name.upper()}: {', '.join(cols)}", loc="left")
        ax.set_xlabel(x)
        if len(cols) > 1:
            ax.legend()
    for i in range(len(panels), nrow * ncol):
        axes[i // ncol][i % ncol].axis("off")
    return png_img(fig, "SFT and RM training curves")


def tax(series, models, metrics) -> str:
    """Benchmark accuracy and pretraining NLL per model, one panel per measure of ``series``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 2.8), squeeze=False)
    for ax, (p, title) in zip(axes[0], series):
        vals = _bar_panel(ax, metrics, p, title, models, 3)
        lo, hi = min(vals), max(vals)
        if p == "tax.pretrain_nll" and hi > 0:
            ax.set_ylim(max(0, lo - (hi - lo) * 1.5 - 0.05), hi + (hi - lo) * 0.5 + 0.05)
    return png_img(fig, "alignment tax")


def hhh(models, present, metrics) -> str:
    """The HHH rates of ``present`` per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    _grouped_bars(ax, models, [[num(metrics.get(f"hhh.{k}.{m}")) or 0.0 for k, _, _ in present] for m in models])
    ax.set_xticks(range(len(present)), [textwrap.fill(t, 26) + f"\n(want {w})" for _, t, w in present], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of prompts")
    ax.legend(ncol=len(models), loc="upper center", bbox_to_anchor=(0.5, 1.18))
    return png_img(fig, "helpful, honest, harmless rates")


def sizes(series, params) -> str:
    """Win rate against the large SFT model by model size: ``series`` = [(method, large model name,
    [(win rate, lo, hi) of the small model, of the large one])], ``params`` = (small, large) sizes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (label, large, both) in enumerate(series):
        pts = [(x, *r) for x, r in zip(params, both) if x and r[0] is not None]
        if pts:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            err = [[p[1] - p[2] if p[2] is not None else 0 for p in pts], [p[3] - p[1] if p[3] is not None else 0 for p in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=model_color(large, i), label=label)
    ax.axhline(0.5, color="#c92a2a", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("win rate vs the large SFT model")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return png_img(fig, "win rate against the large SFT model by model size")


def families(fams, metrics) -> str:
    """The RM's and the gold judge's agreement with held-out labelers per task family."""
    plt = pyplot()
    present = [f for f in fams if num(metrics.get(f"rm_family.{f}.rm")) is not None]
    fig, ax = plt.subplots(figsize=(10, 3.0))
    xs = range(len(present))
    ax.bar([x - 0.2 for x in xs], [metrics[f"rm_family.{f}.rm"] for f in present], width=0.4, color="#3e7cb1",
           label="reward model")
    ax.bar([x + 0.2 for x in xs], [num(metrics.get(f"rm_family.{f}.gold")) or 0.0 for f in present], width=0.4,
           color="#ced4da", label="gold judge")
    ax.axhline(0.5, color="#c92a2a", lw=0.8, ls=":")
    ax.set_xticks(list(xs), present, rotation=20, fontsize=8)
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("pairwise agreement")
    ax.legend(ncol=2, loc="upper center", bbox_to_anchor=(0.5, 1.2))
    return png_img(fig, "RM and gold judge agreement with held-out labelers per family")


def labelers(present, metrics) -> str:
    """Labeler agreement and RM accuracy of this run beside the paper's."""
    plt = pyplot()
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
    return png_img(fig, "labeler agreement and RM accuracy")


def beta_sweep(beta, metrics) -> str:
    """Gold and RM score against KL for each β run (trajectory and end), best-of-n as a star."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, col, title in ((axes[0], "gold", "gold score vs KL"), (axes[1], "score", "RM score vs KL")):
        for i, r in enumerate(beta):
            c = PALETTE[i % len(PALETTE)]
            lg = r.get("trajectory") or {}
            if "kl" in lg and col in lg:
                pts = [(k, v) for k, v in zip(lg["kl"], lg[col]) if k is not None and v is not None]
                if pts:
                    ax.plot([p[0] for p in pts], smooth([p[1] for p in pts]), color=c, alpha=0.5, lw=1)
            if num(r.get("kl")) is not None and num(r.get(col)) is not None:
                ax.scatter([r["kl"]], [r[col]], color=c, s=40, zorder=3, label=f"β = {r['kl_coef']:g}")
        if col == "gold" and num(metrics.get("bon.kl")) is not None and num(metrics.get("bon.gold")) is not None:
            ax.scatter([metrics["bon.kl"]], [metrics["bon.gold"]], marker="*", s=120, color="black",
                       label=f"best-of-{metrics.get('bon.n')}")
        ax.set_xlabel("KL to SFT (nats per response)")
        ax.set_title(title, loc="left")
        ax.legend(fontsize=7)
    return png_img(fig, "beta sweep: gold and RM score vs KL")


def gamma_sweep(cols, gamma, titles) -> str:
    """Each column of ``cols`` against γ."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cols), figsize=(3.3 * len(cols), 2.8), squeeze=False)
    xs = [r["ptx_coef"] for r in gamma]
    for ax, c in zip(axes[0], cols):
        pts = [(x, r[c]) for x, r in zip(xs, gamma) if num(r.get(c)) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#2f9e44")
        pos = [x for x in xs if x > 0]
        if pos and max(pos) / min(pos) > 20:  # wide sweeps: log-like axis, 0 kept
            ax.set_xscale("symlog", linthresh=min(pos))
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("γ (ptx_coef)")
        ax.set_title(titles.get(c, c), loc="left")
    return png_img(fig, "gamma sweep")


def timings(times) -> str:
    """Seconds per pipeline stage."""
    plt = pyplot()
    names = list(times)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.0))
    ax.barh(names, [times[n] for n in names], color="#7048e8")
    for i, n in enumerate(names):
        ax.text(times[n], i, f" {times[n]:.0f}s", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    return png_img(fig, "time per stage")
