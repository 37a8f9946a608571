"""Evaluation: win rates with 95% intervals, KL to the SFT model, the alignment tax, HHH rates.

Split by concern ([IG] §3.6, PAPER_NOTES A5); every name below is importable from here:

- :mod:`~instructrl.evaluate.stats` — win rates, bootstrap intervals, paired differences (numbers only);
- :mod:`~instructrl.evaluate.judges` — the judge interface and the judges outside the world (an RM,
  a causal LM), ``--judge`` parsing;
- :mod:`~instructrl.evaluate.world_eval` — the world's gold judge and held-out labelers, HHH and
  rubric rates, per-family RM accuracy: the only module of evaluation that imports the world;
- :mod:`~instructrl.evaluate.forward` — what needs a model's weights: RM scores, KL, benchmark
  accuracy, pretraining NLL, best-of-n;
- :mod:`~instructrl.evaluate.answers` — each model's prompt format, answer statistics, sample prompts;
- :mod:`~instructrl.evaluate.suite` — :func:`evaluate_models` (all of it for a set of model folders,
  as the flat metrics of ``metrics.json``) and :func:`run`, the ``instructrl eval`` entry point.

Every metric is documented in docs/metrics.md; keys are built with :mod:`instructrl.metric_keys`.
"""

from instructrl.evaluate.answers import answer_stats, model_format, pick_sample_prompts, prompt_inputs
from instructrl.evaluate.forward import (benchmark_accuracy, benchmark_scores, best_of_n, best_of_n_kl,
                                         best_of_n_samples, kl_to_reference, option_logprobs, pretrain_nll,
                                         read_benchmarks, rm_scores)
from instructrl.evaluate.judges import (DEFAULT_JUDGE_TEMPLATE, NO_JUDGE, Judge, LMJudge, RMJudge, judge_kind,
                                        load_judge_template, judge_prompt_text, rm_judge)
from instructrl.evaluate.stats import bootstrap_ci, paired_delta, win_rate
from instructrl.evaluate.suite import DEFAULT_PAIRS, default_pairs, evaluate_models, run
from instructrl.evaluate.world_eval import (family_of, gold_judge, gold_scores, heldout_labeler_judge, hhh_rates,
                                            is_world_prompts, oracle_best_of_n, ranking_accuracy_by_attribute,
                                            ranking_accuracy_by_family,
                                            rubric_details, rubric_rates, world_labelers)

__all__ = [
    "win_rate", "bootstrap_ci", "paired_delta",
    "Judge", "heldout_labeler_judge", "gold_judge", "rm_judge", "RMJudge", "LMJudge", "judge_kind",
    "load_judge_template", "judge_prompt_text", "DEFAULT_JUDGE_TEMPLATE", "NO_JUDGE",
    "gold_scores", "hhh_rates", "rubric_details", "rubric_rates", "family_of", "is_world_prompts", "world_labelers",
    "rm_scores", "kl_to_reference", "option_logprobs", "read_benchmarks", "benchmark_scores", "benchmark_accuracy",
    "pretrain_nll", "best_of_n", "best_of_n_samples", "best_of_n_kl", "oracle_best_of_n", "ranking_accuracy_by_family",
    "ranking_accuracy_by_attribute",
    "model_format", "prompt_inputs", "answer_stats", "pick_sample_prompts",
    "DEFAULT_PAIRS", "default_pairs", "evaluate_models", "run",
]
