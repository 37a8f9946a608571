"""The report page: the sections in order, the navigation, CSS and the atomic write of report.html.

:func:`write_report` writes ONE self-contained HTML file: inline CSS, plots as embedded base64 PNGs,
no scripts and no external assets, so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from instructrl import metric_keys as K
from instructrl.report import sections as S
from instructrl.report.analysis import num, read_log
from instructrl.report.html import esc, fmt, html_table, model_label, section_html

__all__ = ["CSS", "write_report", "discover_logs", "all_metrics"]

def all_metrics(metrics: dict) -> str:
    """Every key of metrics.json in a folded table."""
    rows = []
    for k in sorted(metrics):
        v = metrics[k]
        if isinstance(v, (list, tuple)):
            s = "[" + ", ".join(fmt(x, 4) for x in v) + "]"
        elif num(v) is not None:
            s = fmt(v, 4) if not float(v).is_integer() else str(int(v)) if abs(v) < 1e15 else fmt(v)
        else:
            s = esc(v)
        rows.append([f"<code>{esc(k)}</code>", s])
    return "<details><summary>All metrics (metrics.json)</summary>" + html_table(["key", "value"], rows) + "</details>"


CSS = """
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


def discover_logs(run_dir: Path) -> dict[str, str]:
    """The stage logs of a run folder: ``<name>/log.csv`` (or ``<name>/logs/log.csv``) of sft, rm, ppo, ppo_ptx."""
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
        logs = discover_logs(run_dir)
    if extra_plots is None and (run_dir / "sweeps.json").is_file():  # the pipeline's sweep runs, as data
        try:
            extra_plots = {"sweeps": json.loads((run_dir / "sweeps.json").read_text())}
        except (OSError, json.JSONDecodeError):
            extra_plots = None
    parsed = {name: read_log(p) for name, p in (logs or {}).items() if p}
    ppo_logs = {n: lg for n, lg in parsed.items() if n not in ("sft", "rm")}
    judge_id = (samples or {}).get("judge") or "heldout_labelers"
    judge = {"heldout_labelers": "held-out simulated labelers", "reward_model": "the reward model",
             "gold": "the gold judge"}.get(judge_id, str(judge_id))

    sections = [
        ("headline", "Does RLHF work here?", S.headline_section(metrics, ppo_logs, judge),
         f"Win rates on held-out prompts, judged by {esc(judge)} (ties count half; 95% bootstrap intervals)."),
        ("winrates", "Win rates", S.winrate_section(metrics, judge),
         "How often the first model's answer is preferred. Right of the red line: the first model wins."),
        ("scores", "Gold and reward-model scores", S.per_model_section(metrics),
         "The gold score is the world's hidden judge (never seen by the RM or PPO); the RM score is the proxy "
         "PPO optimizes."),
        ("ppo", "PPO training", S.ppo_curves_section(ppo_logs),
         "Per update; faint lines raw, bold lines smoothed. docs/metrics.md explains every column."),
        ("hacking", "Reward hacking: RM score vs gold over PPO training", S.hacking_section(ppo_logs),
         "While both rise, optimizing the proxy helps; when the RM score keeps rising and gold falls, the policy "
         "has found the reward model's blind spots."),
        ("stages", "SFT and reward-model training", S.stage_curves_section(parsed), ""),
        ("tax", "Alignment tax", S.tax_section(metrics),
         "Accuracy on the world's \"public NLP benchmarks\" (options scored by log-probability) and NLL on held-out "
         "pretraining text. PPO tends to pay a tax; PPO-ptx mixes pretraining gradients in to avoid it."),
        ("hhh", "Helpful, honest, harmless", S.hhh_section(metrics), ""),
        ("rubric", "What the labelers' rubric sees: the paper's Fig. 4", S.rubric_section(metrics, (samples or {}).get("rubric")),
         "How often each model's greedy answers fail to attempt the instruction, fail an explicit constraint, "
         "hallucinate (closed-domain prompts) or are inappropriate for a customer assistant, and the judge's other "
         "attributes (docs/rubric.md)."),
        ("categories", "Where RLHF gains and where it does not: prompt categories", S.categories_section(metrics),
         "Mean gold score per InstructGPT Table 1 category (and the HHH probes)."),
        ("bon", "Best-of-n", S.bon_section(metrics), ""),
        ("sizes", "Model sizes: every method against the large SFT model", S.sizes_section(metrics),
         "The paper's Fig. 1: each method at each model size, judged against the large SFT model (ties count "
         "half; 95% intervals). The large models are aligned with the same reward model as the small ones."),
        ("families", "Where RLHF gains and loses: task families", S.families_section(metrics),
         "Mean gold score per task family, and how often the final RM and the gold judge order a held-out "
         "labeler's pairs as that labeler did (ties count half). Where the RM is near 50%, it cannot see the "
         "quality differences the labelers rank by, and PPO can only exploit its other preferences there — "
         "such as length: the last two columns say how often the RM and the labelers prefer the shorter of two "
         "answers of different lengths."),
        ("labelers", "Labelers and reward model", S.labelers_section(metrics), ""),
        ("sweeps", "Sweeps", S.sweeps_section(extra_plots, metrics), ""),
        ("samples", "Sample answers, side by side", S.samples_section(samples), ""),
        ("timings", "Timings", S.timings_section(metrics), ""),
    ]
    short = {"headline": "Headline", "scores": "Scores", "ppo": "PPO curves", "stages": "SFT & RM",
             "rubric": "Fig. 4", "categories": "Categories",
             "hhh": "HHH", "sizes": "Sizes", "families": "Families", "labelers": "Labelers & RM", "samples": "Samples"}
    nav = "".join(f'<a href="#{a}">{esc(short.get(a, t.split(":")[0]))}</a>' for a, t, _, _ in sections)
    nav += '<a href="#all">All metrics</a>'

    body = "".join(section_html(a, t, b, i) for a, t, b, i in sections)
    models = sorted({k.split(".")[-1] for k in metrics if k.startswith(("gold.", "tax.benchmark.", "length."))},
                    key=lambda m: (K.MODEL_ORDER.index(m) if m in K.MODEL_ORDER else 99, m))
    sub = f"run: {esc(run_dir)} · generated {datetime.now().strftime('%Y-%m-%d %H:%M')}"
    if models:
        sub += " · models: " + ", ".join(esc(model_label(m)) for m in models)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>instructrl report: {esc(run_dir.name or run_dir)}</title><style>{CSS}</style></head>"
        f"<body><main><header><h1>InstructGPT in miniature: report</h1><div class=\"sub\">{sub}</div></header>"
        f"<nav>{nav}</nav>{body}<section id=\"all\"><h2>All metrics</h2>{all_metrics(metrics)}</section>"
        "<footer>Written by instructrl (SFT → K-wise RM → PPO / PPO-ptx, after Ouyang et al. 2022). "
        "Self-contained: no scripts, no external files.</footer></main></body></html>\n"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out_path)
    return out_path
