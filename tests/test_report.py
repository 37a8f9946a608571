"""report.html from synthetic metrics and logs: valid, self-contained, escaped, degrades gracefully."""

from __future__ import annotations

import base64
import csv
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from instructrl.report import read_log, write_report

MODELS = ("base", "base_large", "sft", "ppo", "ppo_ptx")


def synthetic_metrics() -> dict:
    m = {}
    wr = {"sft_vs_base": (0.81, 0.77, 0.85), "ppo_vs_sft": (0.62, 0.58, 0.66), "ppo_ptx_vs_sft": (0.6, 0.55, 0.64),
          "ppo_ptx_vs_base_large": (0.71, 0.67, 0.75), "ppo_ptx_vs_ppo": (0.48, 0.44, 0.53)}
    for k, (v, lo, hi) in wr.items():
        m[f"winrate.{k}"] = v
        m[f"winrate_ci95.{k}"] = [lo, hi]
        m[f"gold_winrate.{k}"] = min(1.0, v + 0.03)
        m[f"gold_winrate_ci95.{k}"] = [lo, min(1.0, hi + 0.03)]
    for i, name in enumerate(MODELS):
        m[f"gold.{name}"] = [0.1, 0.15, 0.5, 0.62, 0.6][i]
        m[f"rm_score.{name}"] = [-2.0, -1.5, 0.0, 1.2, 1.0][i]
        m[f"tax.benchmark.{name}"] = [0.55, 0.7, 0.52, 0.45, 0.54][i]
        m[f"tax.pretrain_nll.{name}"] = [0.9, 0.7, 0.95, 1.1, 0.96][i]
        m[f"hhh.refusal_harmful.{name}"] = [0.0, 0.0, 0.9, 0.97, 0.95][i]
        m[f"hhh.idk_unanswerable.{name}"] = [0.0, 0.05, 0.6, 0.7, 0.7][i]
        m[f"hhh.over_refusal.{name}"] = [0.0, 0.0, 0.05, 0.08, 0.06][i]
        m[f"hhh.constraint.{name}"] = [0.1, 0.2, 0.6, 0.7, 0.68][i]
        m[f"length.{name}"] = [40.0, 38.0, 12.0, 10.0, 11.0][i]
        for task in ("capital", "add"):
            m[f"tax.benchmark_task.{task}.{name}"] = 0.5
    m.update({"kl.ppo": 3.2, "kl.ppo_ptx": 2.9, "kl_per_token.ppo": 0.3, "kl_per_token.ppo_ptx": 0.27,
              "labelers.agreement": 0.74, "rm.val_accuracy": 0.7, "rm.heldout_labeler_accuracy": 0.68,
              "bon.n": 16, "bon.kl": math.log(16) - 15 / 16, "bon.gold": 0.58, "bon.rm_score": 0.9,
              "winrate.bon16_vs_sft": 0.6, "winrate_ci95.bon16_vs_sft": [0.55, 0.65],
              "params.base": 120000, "params.base_large": 1000000,
              "time_s.world": 2.0, "time_s.base_small": 180.0, "time_s.sft": 120.0, "time_s.rm": 60.0,
              "time_s.ppo": 300.0, "time_s.ppo_ptx": 320.0, "time_s.eval": 90.0, "time_s.total": 1072.0})
    return m


def write_ppo_log(path: Path, n: int = 60, hacking: bool = False, ptx: bool = False) -> str:
    cols = ["update", "episodes", "score", "gold", "kl", "kl_k3", "kl_coef", "entropy", "clipfrac", "approx_kl",
            "policy_loss", "value_loss", "explained_variance", "response_length", "eos_fraction", "ptx_loss"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for u in range(1, n + 1):
            t = u / n
            gold = 0.5 + 0.2 * t - (0.35 * max(0.0, t - 0.5) if hacking else 0.0)
            w.writerow([u, 64 * u, 2 * t + 0.05 * math.sin(u), gold, 4 * t, 4 * t, 0.02, 2 - t, 0.1, 0.01,
                        -0.01, 1 / u, t, 12 + t, 0.98, 1.0 + 0.01 * t if ptx else ""])
    return str(path)


def write_simple_log(path: Path, cols: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(cols.values())))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for i in range(n):
            w.writerow([cols[c][i] for c in cols])
    return str(path)


def synthetic_samples() -> dict:
    prompts = ["Q: How do I rob a bank?\nA:", "Q: Reverse the word 'cat'.\nA:", "Q: What is 2 + 3?\nA:"]
    models = {
        "base": [" Q: How do I rob a train?", " <script>alert('x')</script>", " 7 & more </td></table>"],
        "sft": [" I can't help with that.", " tac", " 5"],
        "ppo": [" I can't help with that.", " tac", " 5"],
        "ppo_ptx": [" I can't help with that.", " tca", ""],
    }
    return {"prompts": prompts, "families": ["harmful", "reverse", "add"], "models": models,
            "judge": "heldout_labelers", "temperature": 0.0}


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    logs = {
        "ppo": write_ppo_log(d / "ppo" / "log.csv", hacking=True),
        "ppo_ptx": write_ppo_log(d / "ppo_ptx" / "log.csv", ptx=True),
        "sft": write_simple_log(d / "sft" / "log.csv", {"step": list(range(1, 21)), "epoch": [s // 5 for s in range(20)],
                                                       "loss": [2 / (s + 1) for s in range(20)], "lr": [1e-3] * 20,
                                                       "val_loss": [""] * 19 + [0.2]}),
        "rm": write_simple_log(d / "rm" / "log.csv", {"step": list(range(1, 11)), "loss": [0.69 - 0.02 * s for s in range(10)],
                                                     "accuracy": [0.5 + 0.02 * s for s in range(10)],
                                                     "margin": [0.1 * s for s in range(10)]}),
    }
    # Sweep runs as the pipeline hands them over (sweeps.json): the swept coefficients as numbers.
    sweeps = [{"field": "kl_coef", "value": b, "kl_coef": b, "ptx_coef": 0.0, "metrics": {"kl": 1.0, "score": 0.5, "gold": 0.5},
               "log": write_ppo_log(d / "sweeps" / f"b{b}" / "log.csv", hacking=b < 0.01)} for b in (0.0, 0.02, 0.1)]
    sweeps += [{"field": "ptx_coef", "value": g, "kl_coef": 0.02, "ptx_coef": g, "metrics": {"kl": 1.0, "score": 0.5, "gold": 0.5},
                "log": write_ppo_log(d / "sweeps" / f"g{g}" / "log.csv", ptx=True)} for g in (0.5, 2.0)]
    extra = {"sweeps": sweeps}
    return d, logs, extra


class _Checker(HTMLParser):
    """Records tags, and checks that non-void elements are properly nested and closed."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.imgs, self.ids, self.text = [], [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Checker:
    c = _Checker()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    return c


def test_full_report_is_valid_self_contained_html(run_dir, tmp_path):
    d, logs, extra = run_dir
    out = write_report(d, synthetic_metrics(), d / "report.html", samples=synthetic_samples(), logs=logs,
                       extra_plots=extra)
    assert out == d / "report.html" and out.is_file()
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    c = _parse(out)
    assert not c.errors, c.errors[:5]
    assert not c.stack, f"unclosed: {c.stack}"
    for anchor in ("headline", "winrates", "scores", "ppo", "hacking", "stages", "tax", "hhh", "bon", "labelers",
                   "sweeps", "samples", "timings", "all"):
        assert anchor in c.ids, anchor
    # Plots: embedded PNGs only, at least one per plotted section.
    assert len(c.imgs) >= 10
    for src in c.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Self-contained: no scripts, no external resources.
    assert "script" not in {t for t in c.tags}
    assert "http://" not in page and "https://" not in page and "<link" not in page
    text = " ".join(c.text)
    assert "Yes, RLHF works here" in text
    assert "81%" in text and "Reward hacking in PPO" in text  # the hacking log is diagnosed
    assert "over-optimization" in text


def test_sample_answers_are_escaped(run_dir):
    d, logs, extra = run_dir
    out = write_report(d, synthetic_metrics(), d / "r.html", samples=synthetic_samples(), logs=logs)
    page = out.read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "7 &amp; more &lt;/td&gt;&lt;/table&gt;" in page
    c = _parse(out)
    assert not c.errors and "script" not in c.tags
    # The answer text survives verbatim for the reader.
    assert "<script>alert('x')</script>" in " ".join(c.text)


def test_missing_inputs_degrade_gracefully(tmp_path):
    out = write_report(tmp_path, {}, tmp_path / "empty.html")
    c = _parse(out)
    assert not c.errors and not c.stack
    page = out.read_text()
    assert "No win rates" in page and "No sample answers" in page and "No sweeps" in page
    # Partial metrics: only win rates; logs that do not exist are ignored.
    m = {"winrate.sft_vs_base": 0.45, "winrate_ci95.sft_vs_base": [0.40, 0.52]}
    out = write_report(tmp_path, m, tmp_path / "partial.html", logs={"ppo": str(tmp_path / "nope.csv")})
    c = _parse(out)
    assert not c.errors and len(c.imgs) == 1
    assert "no clear difference" in out.read_text()


def test_run_dir_defaults_find_logs_and_samples(run_dir):
    import json

    d, logs, _ = run_dir
    (d / "samples.json").write_text(json.dumps(synthetic_samples()))
    out = write_report(d, synthetic_metrics(), d / "auto.html")
    page = out.read_text()
    assert "No PPO logs" not in page and "No sample answers" not in page


def test_read_log_numbers_and_blanks(tmp_path):
    p = write_simple_log(tmp_path / "l.csv", {"update": [1, 2, 3], "kl": ["0.5", "", "nan"], "note": ["a", "b", "c"]})
    lg = read_log(p)
    assert lg["update"] == [1.0, 2.0, 3.0] and lg["kl"] == [0.5, None, None] and "note" not in lg
    assert read_log(tmp_path / "missing.csv") == {}


def _chromium() -> str | None:
    for cand in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome")):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium not found (/usr/bin/chromium or chromium on PATH); "
                    "install it (apt-get install chromium) to run the screenshot test")
    d, logs, extra = run_dir
    out = write_report(d, synthetic_metrics(), d / "report.html", samples=synthetic_samples(), logs=logs,
                       extra_plots=extra)
    png = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,2400",
           out.resolve().as_uri()]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish the screenshot within 120 s")
    assert png.is_file(), f"no screenshot; chromium said: {proc.stderr[-2000:]}"
    assert png.stat().st_size > 20_000
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(png)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1200
    flat = img[..., :3].reshape(-1, 3)
    # Not one colour: many distinct colours, and a good share of non-white pixels (text and plots).
    assert len(np.unique((flat[::97] * 255).astype(int), axis=0)) > 50
    assert (flat.min(axis=1) < 0.9).mean() > 0.05


def test_headline_says_when_the_gold_judge_disagrees_with_the_labelers(tmp_path):
    m = {"winrate.ppo_ptx_vs_sft": 0.53, "winrate_ci95.ppo_ptx_vs_sft": [0.51, 0.55],
         "gold_winrate.ppo_ptx_vs_sft": 0.49, "gold_winrate_ci95.ppo_ptx_vs_sft": [0.48, 0.51],
         "length.ppo_ptx": 9.9, "length.sft": 11.0}
    page = write_report(tmp_path, m, tmp_path / "r.html").read_text()
    assert "Yes by the labelers, not by the gold judge." in page and "Yes, RLHF works here." not in page
    assert "gold judge disagrees" in page and "shorter (9.9 vs 11.0 characters)" in page
    # Both agree: the plain verdict, no caveat.
    m.update({"gold_winrate.ppo_ptx_vs_sft": 0.56, "gold_winrate_ci95.ppo_ptx_vs_sft": [0.53, 0.59]})
    page = write_report(tmp_path, m, tmp_path / "r2.html").read_text()
    assert "Yes, RLHF works here." in page and "disagrees" not in page


def test_headline_follows_the_rlhf_rounds(tmp_path):
    m = {"winrate.ppo_vs_sft": 0.52, "winrate_ci95.ppo_vs_sft": [0.49, 0.54],
         "winrate.ppo_round1_vs_sft": 0.44, "winrate_ci95.ppo_round1_vs_sft": [0.42, 0.46],
         "hhh.over_refusal.ppo_round1": 0.278, "hhh.over_refusal.ppo": 0.098, "round1.rm.val_accuracy": 0.56,
         "rm.val_accuracy": 0.57, "gold.ppo_round1": 0.42, "gold.ppo": 0.47}
    page = write_report(tmp_path, m, tmp_path / "r.html").read_text()
    assert "round 1: 44% vs SFT, over-refusal 27.8% → round 2 (final): 52% vs SFT, over-refusal 9.8%" in page
    assert "PPO (round 1)" in page and "round 1 RM" in page


def _diagnostic_metrics() -> dict:
    m = {"winrate.ppo_vs_sft": 0.52, "winrate_ci95.ppo_vs_sft": [0.49, 0.54],
         "gold_winrate.ppo_vs_sft": 0.48, "gold_winrate_ci95.ppo_vs_sft": [0.46, 0.50],
         "gold.sft": 0.49, "gold.ppo": 0.47, "bon.n": 16, "bon.kl": 1.84, "bon.gold": 0.45,
         "bon.gold_sampled": 0.43, "bon.gold_oracle": 0.68, "bon.rm_score": 0.3,
         "rm_family.all.rm": 0.532, "rm_family.all.gold": 0.754}
    for fam, (s, p, r, g) in {"count": (0.61, 0.63, 0.43, 0.87), "harmful": (1.0, 0.79, 0.86, 0.74)}.items():
        m.update({f"gold_family.{fam}.sft": s, f"gold_family.{fam}.ppo": p,
                  f"rm_family.{fam}.rm": r, f"rm_family.{fam}.gold": g,
                  f"rm_family.{fam}.rm_shorter": 0.81 if fam == "count" else 0.5, f"rm_family.{fam}.labeler_shorter": 0.53})
    return m


def test_families_section_and_what_stands_in_the_way(tmp_path):
    page = write_report(tmp_path, _diagnostic_metrics(), tmp_path / "r.html").read_text()
    assert 'id="families"' in page and "Where RLHF gains and loses" in page
    assert "+0.020" in page and "-0.210" in page               # PPO − SFT per family
    assert "43.0% (≤ 55%: near or below chance)" in page and "86.0%" in page
    assert "RM prefers the shorter answer" in page and "<td>81%</td><td>53%</td>" in page
    # The RM's best-of-16 closes (0.45 − 0.43) / (0.68 − 0.43) = 8% of the gap to the gold judge's pick.
    assert "closes 8% of that gap" in page
    assert "What stands in the way is the reward model." in page and "near or below chance (≤ 55%) on count" in page
    assert "harmful" not in page.split("below chance (≤ 55%) on")[1].split("—")[0]
    # An RM that would pick well (closes ≥ half the gap) is not blamed.
    m = _diagnostic_metrics()
    m["bon.gold"] = 0.60
    page2 = write_report(tmp_path, m, tmp_path / "r1.html").read_text()
    assert "What stands in the way" not in page2 and "The RM is not the main obstacle here" in page2
    # When the gold judge sees a gain, no "what stands in the way".
    m = _diagnostic_metrics()
    m.update({"gold_winrate.ppo_vs_sft": 0.6, "gold_winrate_ci95.ppo_vs_sft": [0.57, 0.63]})
    assert "What stands in the way" not in write_report(tmp_path, m, tmp_path / "r2.html").read_text()
    # Without per-family keys: a note, no crash.
    page = write_report(tmp_path, {"gold.sft": 0.5}, tmp_path / "r3.html").read_text()
    assert "per-family scores need the world" in page


def test_sizes_section_plots_both_model_sizes(tmp_path):
    m = {"params.base": 120000, "params.base_large": 1000000, "gold.sft": 0.49, "gold.sft_large": 0.6}
    for name, (w, lo, hi) in {"base": (0.05, 0.03, 0.07), "sft": (0.3, 0.27, 0.33), "ppo": (0.35, 0.32, 0.38),
                              "ppo_ptx": (0.36, 0.33, 0.39), "base_large": (0.1, 0.08, 0.12),
                              "ppo_large": (0.62, 0.59, 0.65), "ppo_ptx_large": (0.6, 0.57, 0.63)}.items():
        m[f"winrate.{name}_vs_sft_large"] = w
        m[f"winrate_ci95.{name}_vs_sft_large"] = [lo, hi]
    page = write_report(tmp_path, m, tmp_path / "r.html").read_text()
    assert 'id="sizes"' in page and "win rate against the large SFT model by model size" in page
    assert "62.0% (59.0%–65.0%)" in page and "50.0%" in page  # PPO (large); the large SFT against itself
    assert "small (120,000 params)" in page and "large (1,000,000 params)" in page
    page = write_report(tmp_path, {"gold.sft": 0.5}, tmp_path / "r2.html").read_text()
    assert "align_large=true" in page


def test_sweeps_are_read_from_the_run_folder_as_data(run_dir):
    """The pipeline's sweeps.json entries carry beta and gamma as numbers; the report reads them, not folder names."""
    import json

    d, logs, extra = run_dir
    for e in extra["sweeps"]:
        e["folder"] = str(d / "sweeps" / "a folder name that says nothing")
    (d / "sweeps.json").write_text(json.dumps(extra["sweeps"]))
    page = write_report(d, synthetic_metrics(), d / "r.html", logs=logs).read_text(encoding="utf-8")
    assert "KL coefficient β" in page and "Pretraining mix γ" in page
    for v in ("0.02", "0.1", "0.5", "2"):
        assert f"<td>{v}</td>" in page, v


def test_rubric_rm_table_marks_what_the_rm_misses(tmp_path):
    m = {"labelers.agreement": 0.70, "rm.heldout_labeler_accuracy": 0.56,
         "rm_rubric.fails_attempt.pairs": 695, "rm_rubric.fails_attempt.labeler": 0.934,
         "rm_rubric.fails_attempt.gold": 0.967, "rm_rubric.fails_attempt.rm": 0.614,
         "rm_rubric.padding.pairs": 741, "rm_rubric.padding.labeler": 0.656,
         "rm_rubric.padding.gold": 0.642, "rm_rubric.padding.rm": 0.924}
    page = write_report(tmp_path, m, tmp_path / "r.html").read_text()
    assert "What the RM sees, per rubric attribute" in page
    # the largest table first (padding, 741 pairs); only the attribute 15+ points below the labelers is marked
    assert page.index("<td>padding</td>") < page.index("<td>fails_attempt</td>")
    assert "<b>61.4% (15+ points below the labelers)</b>" in page and "92.4%</td>" in page
    assert "What the RM sees" not in write_report(tmp_path, {"labelers.agreement": 0.7}, tmp_path / "r2.html").read_text()
