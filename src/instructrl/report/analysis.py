"""What the report concludes, without plotting or HTML: numbers from metrics and CSV logs, verdicts,
the reward-hacking diagnosis, the best-of-n gap, the sweep rows.

Everything here reads ``metrics.json`` values, ``log.csv`` columns and the sweep entries the
pipeline hands over (``sweeps.json``); nothing calls a judge or a model.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from instructrl import metric_keys as K

__all__ = ["num", "read_log", "xy", "x_of", "smooth", "interval", "verdict_of", "gold_trend", "bon_gap",
           "families_in", "sweep_rows"]


def num(v: Any) -> float | None:
    """A finite float, or None (missing, not a number, bool, NaN, inf)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


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
            cols[k].append(num(r.get(k)))
    return {k: v for k, v in cols.items() if any(x is not None for x in v)}


def xy(log: dict, x: str, y: str) -> tuple[list[float], list[float]]:
    """The (x, y) points of two log columns where both are numbers."""
    xs, ys = [], []
    for a, b in zip(log.get(x, []), log.get(y, [])):
        if a is not None and b is not None:
            xs.append(a)
            ys.append(b)
    return xs, ys


def x_of(log: dict) -> str | None:
    """The x column of a log: episodes, else update, else step."""
    for x in ("episodes", "update", "step"):
        if x in log:
            return x
    return None


def smooth(ys: Sequence[float], frac: float = 0.1) -> list[float]:
    """Centered moving average over ~frac of the points (at least 1)."""
    n = len(ys)
    w = max(1, int(n * frac)) | 1
    h = w // 2
    out = []
    for i in range(n):
        seg = ys[max(0, i - h): i + h + 1]
        out.append(sum(seg) / len(seg))
    return out


def interval(metrics: dict, prefix: str, key: str) -> tuple[float | None, float | None]:
    """(lo, hi) of ``<prefix>_ci95.<key>``, (None, None) when absent."""
    ci = metrics.get(K.ci(prefix, key))
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return num(ci[0]), num(ci[1])
    return None, None


def verdict_of(wr: float | None, lo: float | None, hi: float | None) -> tuple[str, str]:
    """(css class, words) for a win rate of A over B."""
    if wr is None:
        return "na", "not measured"
    if lo is not None and lo > 0.5:
        return "good", "preferred"
    if hi is not None and hi < 0.5:
        return "bad", "dispreferred"
    return "even", "no clear difference"


def gold_trend(log: dict) -> dict | None:
    """Reward-hacking diagnosis of one PPO log: does the proxy rise while gold stalls or falls?"""
    x = x_of(log)
    if x is None or "score" not in log or "gold" not in log:
        return None
    xs, score = xy(log, x, "score")
    xg, gold = xy(log, x, "gold")
    if len(gold) < 3 or len(score) < 3:
        return None
    sg, ss = smooth(gold), smooth(score)
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
    out["kl_end"] = smooth(xy(log, x, "kl")[1])[-1] if "kl" in log and xy(log, x, "kl")[1] else None
    return out


def bon_gap(metrics: dict) -> tuple[float, float, float, float] | None:
    """(sampled, rm pick, gold judge pick, share of the gap the RM's pick closes) when all are known."""
    sampled, picked, oracle = (num(metrics.get(k)) for k in ("bon.gold_sampled", "bon.gold", "bon.gold_oracle"))
    if None in (sampled, picked, oracle) or oracle - sampled <= 1e-9:
        return None
    return sampled, picked, oracle, (picked - sampled) / (oracle - sampled)


def families_in(metrics: dict) -> list[str]:
    """Task families with a ``gold_family.<family>.<m>`` or ``rm_family.<family>.{rm,gold}`` key."""
    fams = set(K.groups_in(metrics, "gold_family")) | (set(K.groups_in(metrics, "rm_family", "rm|gold")) - {"all"})
    return sorted(fams)


def sweep_rows(extra: dict) -> tuple[list[dict], list[dict]]:
    """(beta rows, gamma rows), each sorted by its coefficient.

    From ``extra["sweeps"]``: the pipeline's sweep entries (``sweeps.json``: ``{"field": "kl_coef" |
    "ptx_coef", "value", "kl_coef", "ptx_coef", "log", "metrics"}``), and ``extra["beta_sweep"]`` /
    ``extra["gamma_sweep"]``: rows given directly (``{"kl_coef" | "ptx_coef", "kl", "score", "gold", ...}``).
    A row holds its run's end-of-run values (the mean of the last 10% of updates of its log, else its
    final metrics), its other final metrics, and ``trajectory``: its log's columns.
    """
    beta = [dict(r) for r in extra.get("beta_sweep", []) or []]
    gamma = [dict(r) for r in extra.get("gamma_sweep", []) or []]
    for entry in extra.get("sweeps") or []:
        final = entry.get("metrics") or {}
        lg = read_log(entry["log"]) if entry.get("log") else {}
        row: dict[str, Any] = {}
        # End-of-run values: the mean of the last 10% of updates (the final row alone is noisy).
        for col in ("kl", "score", "gold", "ptx_loss", "entropy", "response_length"):
            vals = [v for v in lg.get(col, []) if v is not None]
            if vals:
                tail = vals[-max(1, len(vals) // 10):]
                row[col] = sum(tail) / len(tail)
            elif num(final.get(col)) is not None:
                row[col] = float(final[col])
        for k, v in final.items():
            if k not in row and num(v) is not None:
                row[k] = float(v)
        row["trajectory"] = lg
        if entry["field"] == "kl_coef":
            row["kl_coef"] = float(entry["kl_coef"])
            beta.append(row)
        else:
            row["ptx_coef"] = float(entry["ptx_coef"])
            gamma.append(row)
    beta.sort(key=lambda r: r.get("kl_coef", 0))
    gamma.sort(key=lambda r: r.get("ptx_coef", 0))
    return beta, gamma
