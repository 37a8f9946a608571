"""report.html: one self-contained page that shows whether RLHF worked, what it cost, and where
reward hacking starts.

`write_report(run_dir, metrics, out_path, samples=None, logs=None, extra_plots=None)` writes ONE
HTML file: inline CSS, plots as embedded base64 PNGs (matplotlib, Agg backend), no scripts and no
external assets, so it can be mailed, archived or opened offline. Every section is built from
whatever metrics/logs exist; a section whose inputs are missing is replaced by a short note.

Sections, top to bottom:

1. **Headline** — does RLHF work here: the key win rates with 95% intervals, in words and numbers.
2. **Win rates** — bars with 95% interval error bars (the judge; gold judge beside them), and at T = 1.
3. **Gold and RM score per model**, KL to SFT.
4. **PPO training curves** from ``log.csv`` (every known column that exists).
5. **Reward hacking** — RM (proxy) score vs gold score over PPO training, with a diagnosis.
6. **SFT / RM training curves**.
7. **Alignment tax** — benchmark accuracy and pretraining NLL per model (+ per benchmark task).
8. **HHH** — refusal of harmful requests, "I don't know" to unanswerable ones, over-refusal.
9. **Rubric** — the labelers' rubric attributes per model (the paper's Fig. 4).
10. **Categories** — gold score per prompt category (the paper's Table 1).
11. **Best-of-n** vs PPO at their KLs.
12. **Model sizes** — every method against the large SFT model (the paper's Fig. 1), when aligned.
13. **Task families** — gold per family, and the RM's and gold judge's agreement with held-out labelers.
14. **Labelers and reward model** — agreement and RM accuracy beside the paper's numbers.
15. **Sweeps** (β: gold and RM score vs KL; γ: gold, score, pretraining loss vs γ), when given.
16. **Sample answers** — the same prompts answered by every model, side by side (HTML-escaped).
17. **Timings** per stage, and the full metrics table.

``extra_plots`` (all optional): ``{"sweeps": [entry, ...], "beta_sweep": [row, ...], "gamma_sweep":
[row, ...]}``, where an entry is one sweep run as the pipeline writes it to ``sweeps.json``
(``{"field": "kl_coef" | "ptx_coef", "value", "kl_coef", "ptx_coef", "log", "metrics"}``: the swept
coefficients as numbers, never parsed from a name) and a row is given directly (``{"kl_coef" |
"ptx_coef", "kl", "score", "gold", ...}``). Without ``extra_plots``, ``run_dir/sweeps.json`` is read.

The package, by concern: :mod:`~instructrl.report.analysis` (numbers and verdicts, no plotting),
:mod:`~instructrl.report.plots` (one function per figure), :mod:`~instructrl.report.html`
(formatting), :mod:`~instructrl.report.sections` (one builder per section),
:mod:`~instructrl.report.page` (the page). Metric keys are read with :mod:`instructrl.metric_keys`;
the report never calls a judge or a model: the gold scores of sample answers and the rubric's
words come in ``samples`` (``"gold"``, ``"rubric"``) from :mod:`instructrl.evaluate.world_eval`.
"""

from instructrl.metric_keys import MODEL_ORDER
from instructrl.report.analysis import read_log
from instructrl.report.html import MODEL_LABELS
from instructrl.report.page import write_report

__all__ = ["write_report", "read_log", "MODEL_ORDER", "MODEL_LABELS"]
