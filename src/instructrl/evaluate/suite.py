"""Everything ``instructrl eval`` and the pipeline measure for a set of model folders.

:func:`evaluate_models` reads the prompts (and benchmarks, pretraining text, held-out rankings),
lets each model answer once, measures what needs its weights (:mod:`~instructrl.evaluate.forward`),
then what needs only the answers (on the world's prompts :mod:`~instructrl.evaluate.world_eval`),
then the win rates of :data:`DEFAULT_PAIRS` or the given pairs by the chosen judge
(:mod:`~instructrl.evaluate.judges`, :mod:`~instructrl.evaluate.stats`). The result is the FLAT
metrics of ``metrics.json`` (DESIGN.md; keys built with :mod:`instructrl.metric_keys`, every one
documented in docs/metrics.md) and the sample answers the report shows. :func:`run` is the
``instructrl eval`` entry point.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from instructrl import metric_keys as K
from instructrl.config import EvalConfig
from instructrl.data.readers import read_pretrain_texts, read_prompts, read_rankings
from instructrl.errors import InstructRLError
from instructrl.evaluate import answers as A
from instructrl.evaluate import judges as J
from instructrl.evaluate import world_eval as W
from instructrl.evaluate.forward import (benchmark_scores, best_of_n_kl, best_of_n_samples, kl_to_reference,
                                         pretrain_nll, read_benchmarks, rm_scores)
from instructrl.evaluate.stats import paired_delta, stable_seed, win_rate
from instructrl.models import context_length, load_policy, load_reward_model, pick_device
from instructrl.rollout import generate

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PAIRS", "default_pairs", "EvalInputs", "read_inputs", "evaluate_models", "run"]

#: Win-rate pairs (a, b) = "a vs b" of the pipeline's model names; pairs whose models are absent
#: are skipped. The first four are the contract keys of DESIGN.md.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("sft", "base"),
    ("ppo", "sft"),
    ("ppo_ptx", "sft"),
    ("ppo_ptx", "base_large"),
    ("ppo", "base"),
    ("ppo_ptx", "base"),
    ("ppo_ptx", "ppo"),
    ("sft", "base_large"),
    ("ppo", "base_large"),
    ("base_large", "base"),
)


def default_pairs(names, reference: str | None) -> list[tuple[str, str]]:
    """``instructrl eval``'s pairs when none are given: the :data:`DEFAULT_PAIRS` whose two models are
    both in ``names``, then every other model vs ``reference`` (e.g. the sweep models
    ``beta_0.1``, ``beta_0`` vs ``sft``), each pair once and in ``names``' order."""
    names = list(names)
    pairs = [(a, b) for a, b in DEFAULT_PAIRS if a in names and b in names]
    if reference is not None:
        for name in names:
            if name != reference and (name, reference) not in pairs and (reference, name) not in pairs:
                pairs.append((name, reference))
    return pairs


@dataclass
class EvalInputs:
    """What an evaluation reads before any model loads (a bad file fails here)."""

    records: list  # readers.Prompt
    prompts: list[str]
    messages: list  # each prompt's chat messages, or None
    conversations: dict  # {plain rendering: messages} of the chat prompts
    world: bool  # the world's prompts: its gold judge and labelers apply
    judge_kind: str  # J.judge_kind(--judge)
    families: list  # each prompt's task family (None where unknown)
    benchmarks: list | None
    pretrain_texts: list | None
    heldout_rankings: list | None


def read_inputs(cfg, eval_prompts_path, benchmarks_path=None, pretrain_val_path=None, heldout_rankings_path=None,
                rm_folder=None, judge: str | None = None) -> EvalInputs:
    """Read and check every input of :func:`evaluate_models` (see there)."""
    recs = read_prompts(eval_prompts_path)
    if cfg.n_prompts:
        recs = recs[: cfg.n_prompts]
    prompts = [r.prompt for r in recs]
    world = W.is_world_prompts(prompts)
    kind = J.judge_kind(judge)  # a bad judge folder fails before any model runs
    if kind == "world" and not world:
        raise InstructRLError("--judge world: the world's labelers and gold judge judge only the world's prompts; "
                              "give an RM or causal-LM folder as --judge, or --judge none")
    families = [W.family_of(r.prompt, r.meta.get("family")) if world else r.meta.get("family") for r in recs]
    items = None
    if benchmarks_path:
        items = read_benchmarks(benchmarks_path)
        if cfg.n_benchmark:
            items = items[: cfg.n_benchmark]
    texts = read_pretrain_texts(pretrain_val_path) if pretrain_val_path else None
    heldout_rankings = None
    if heldout_rankings_path:
        if not world:
            raise InstructRLError("--heldout-rankings: the per-family RM accuracy needs the world's prompts (the gold "
                                  "judge); these evaluation prompts are not the world's")
        if not rm_folder:
            raise InstructRLError("--heldout-rankings needs the RM folder too (--rm)")
        heldout_rankings = read_rankings(heldout_rankings_path)
        bad = [r.prompt for r in heldout_rankings if W.family_of(r.prompt, None) is None]
        if bad:
            raise InstructRLError(f"{heldout_rankings_path}: {len(bad)} ranking(s) have prompts that are not the "
                                  f"world's, e.g. {bad[0]!r}")
    return EvalInputs(recs, prompts, [r.messages for r in recs], {r.prompt: r.messages for r in recs if r.messages is not None},
                      world, kind, families, items, texts, heldout_rankings)


def evaluate_models(models: dict[str, str], sft_name: str | None, eval_prompts_path, benchmarks_path=None,
                    pretrain_val_path=None, cfg=None, rm_folder=None, world_seed: int = 0,
                    pairs: Iterable[tuple[str, str]] | None = None, device: str = "auto",
                    kl_models: Iterable[str] | None = None, n_sample_prompts: int = 12,
                    progress: Callable[[str], None] | None = None,
                    heldout_rankings_path=None, judge: str | None = None) -> tuple[dict, dict]:
    """Evaluate model folders; return ``(metrics, samples)``.

    ``metrics`` are the FLAT keys of metrics.json (DESIGN.md); ``samples`` is
    ``{"prompts", "families", "models": {name: [answers]}, "judge", "temperature", "meta"}``: the
    same fixed prompts (a few per family) answered by every model, for the report, with ``meta``
    holding the generation settings, which judge produced ``winrate.*`` and per-model timings.

    ``models`` maps a name (the pipeline's: base, sft, ppo, ppo_ptx, base_large) to a causal-LM
    folder. Each model answers the first ``cfg.n_prompts`` evaluation prompts once (``cfg.temperature``,
    0 = greedy); those answers feed every answer-based metric. Keys written (when their inputs exist):

    - ``winrate.<a>_vs_<b>``, ``winrate_ci95.<a>_vs_<b>`` — judged by held-out simulated labelers
      (world prompts) or else by the reward model; ``gold_winrate.*`` — by the gold judge;
    - ``gold.<m>``, ``length.<m>``, ``hhh.{refusal_harmful,idk_unanswerable,over_refusal,constraint}.<m>``;
    - ``empty.<m>``, ``eos.<m>`` — share of empty answers, and of answers that ended with EOS;
    - ``kl.<m>``, ``kl_per_token.<m>`` (k1) and ``kl_k3.<m>``, ``kl_k3_per_token.<m>`` — KL to
      ``sft_name`` (default: every model but the reference and the base models; override with
      ``kl_models``);
    - ``tax.benchmark.<m>``, ``tax.pretrain_nll.<m>``; ``rm_score.<m>`` with an RM;
    - ``bon.*`` (best-of-n of the SFT policy against the RM) when ``cfg.best_of_n > 0``; in the world
      also ``bon.gold_sampled`` / ``bon.gold_oracle`` (mean gold of all n samples / of the gold
      judge's own pick among them);
    - ``gold_family.<family>.<m>`` — mean gold score per task family (world);
    - ``rm_family.<family>.{rm,gold}`` and ``rm_family.all.{rm,gold}`` — how often the RM and the gold
      judge order a held-out labeler's pairs as the labeler did, per family, given
      ``heldout_rankings_path`` and an RM (world); ``rm_family.<family>.{rm,labeler}_shorter`` — how
      often the RM / the labeler prefers the shorter of two responses of different lengths.

    ``judge`` (:mod:`instructrl.evaluate.judges`): None = the world's labelers on world prompts, else the RM if given,
    else none; ``"world"``, ``"none"``, or an RM / causal-LM folder. Every model reads the prompts
    rendered as it was trained (``cfg.prompt_format``, auto = its folder's prompt_format.json).
    """
    cfg = cfg or EvalConfig()
    say = progress or (lambda msg: log.info(msg))
    t_start = time.time()
    dev = pick_device(device)
    inp = read_inputs(cfg, eval_prompts_path, benchmarks_path, pretrain_val_path, heldout_rankings_path, rm_folder,
                      judge)
    prompts, world = inp.prompts, inp.world

    metrics: dict[str, Any] = {}
    meta: dict[str, Any] = {"n_prompts": len(prompts), "temperature": cfg.temperature,
                            "max_new_tokens": cfg.max_new_tokens, "world": world, "time_s": {}}
    answers: dict[str, list[str]] = {}
    answers_t1: dict[str, list[str]] = {}  # at T = 1, the paper's rollout temperature
    rm_triple = _load_rm(rm_folder, dev, cfg, eval_prompts_path)
    ref_triple = (_load_model(models[sft_name], dev, cfg, eval_prompts_path)
                  if sft_name and sft_name in models else None)
    if kl_models is None:
        kl_models = [m for m in models if m != sft_name and not m.startswith("base")]
    kl_models = set(kl_models)

    # 1. One pass per model: answer once, then everything that needs its weights.
    for name, folder in models.items():
        t0 = time.time()
        say(f"eval: {name} ({folder})")
        _model_pass(metrics, answers, answers_t1, name, folder, sft_name, ref_triple, rm_triple, name in kl_models,
                    inp, cfg, dev, eval_prompts_path)
        meta["time_s"][name] = time.time() - t0

    # 2. What needs only the answers: the gold judge's metrics (world) or the lengths.
    rm, rm_tok, _ = rm_triple
    golds: dict[str, list[float]] = {}
    golds_t1: dict[str, list[float]] = {}
    if world:
        golds, golds_t1 = W.answer_metrics(metrics, prompts, inp.families, answers, answers_t1)
    else:
        for name, resp in answers.items():
            if K.bon_size(name) is None:
                K.put(metrics, K.key("length", name), float(np.mean([len(r) for r in resp])))
    if inp.heldout_rankings and rm is not None:
        say("eval: RM vs gold judge on held-out labelers' rankings, per family")
        _rm_family_metrics(metrics, rm, rm_tok, inp.heldout_rankings, cfg.batch_size)

    # 3. Win rates of the pairs, by the judge.
    pair_list = list(pairs) if pairs is not None else list(DEFAULT_PAIRS)
    if cfg.best_of_n and K.bon_name(cfg.best_of_n) in answers and sft_name:
        pair_list.append((K.bon_name(cfg.best_of_n), sft_name))
    judge_name, pair_judge = _choose_judge(judge, inp, cfg, dev, eval_prompts_path, world_seed, rm_folder,
                                           rm_triple, say)
    meta["judge"] = judge_name
    if judge_name is not None:
        meta["judge_folder"] = judge if inp.judge_kind in ("rm", "lm") else (
            rm_folder if judge_name == "reward_model" else None)
    for a, b in pair_list:
        if a in answers and b in answers and a != b:
            _pair_metrics(metrics, a, b, prompts, answers, answers_t1, golds, golds_t1, pair_judge, world, cfg)

    # 4. The same few prompts answered by every model, for the report.
    samples = _report_samples(inp, answers, answers_t1, n_sample_prompts, judge_name, cfg, meta)
    meta["time_s"]["total"] = time.time() - t_start
    return metrics, samples


def _load_rm(rm_folder, dev, cfg, eval_prompts_path) -> tuple:
    """(reward model, its tokenizer, its prompt format), or three Nones without an RM."""
    if not rm_folder:
        return None, None, None
    rm, rm_tok = load_reward_model(rm_folder)
    rm.to(dev)
    return rm, rm_tok, A.model_format(rm_tok, rm_folder, cfg, eval_prompts_path)


def _load_model(folder, dev, cfg, eval_prompts_path) -> tuple:
    """(policy, its tokenizer, the prompt format it was trained with) of a causal-LM folder."""
    model, tok = load_policy(folder)
    model.to(dev)
    return model, tok, A.model_format(tok, folder, cfg, eval_prompts_path)


def _model_pass(metrics: dict, answers: dict, answers_t1: dict, name: str, folder, sft_name, ref_triple, rm_triple,
                measure_kl: bool, inp: EvalInputs, cfg, dev, eval_prompts_path) -> None:
    """Everything that needs one model's weights: its answers (and at T = 1), answer statistics, the
    alignment tax, KL to the reference, RM score and, for the SFT model, best-of-n."""
    ref = ref_triple[0] if ref_triple is not None else None
    model, tok, fmt = (ref_triple if name == sft_name and ref is not None
                       else _load_model(folder, dev, cfg, eval_prompts_path))
    rm, rm_tok, rm_fmt = rm_triple
    # The prompts as this model reads them (its chat template or plain format), fitted to its context.
    inputs = A.prompt_inputs(fmt, tok, inp.records, max(1, context_length(model, 10**9) - cfg.max_new_tokens))
    answers[name], ended = generate(model, tok, inputs, cfg.max_new_tokens, cfg.temperature,
                                    cfg.batch_size, cfg.seed, return_ended=True)
    for k, v in A.answer_stats(answers[name], ended).items():
        K.put(metrics, K.key(k, name), v)
    _tax_metrics(metrics, name, model, tok, inp, cfg)
    if ref is not None and measure_kl:
        answers_t1[name] = _kl_metrics(metrics, name, model, ref, tok, inputs, cfg)  # its KL samples, at T = 1
    elif inp.world and cfg.eval_t1:
        answers_t1[name] = generate(model, tok, inputs, cfg.max_new_tokens, 1.0, cfg.batch_size, cfg.seed)
    if rm is not None:
        K.put(metrics, K.key("rm_score", name), float(rm_scores(rm, rm_tok, inp.prompts, answers[name], cfg.batch_size,
                                                               rm_fmt, inp.messages).mean()))
    if cfg.best_of_n and rm is not None and name == sft_name:
        answers[K.bon_name(cfg.best_of_n)] = _best_of_n_metrics(metrics, model, rm, tok, rm_tok, rm_fmt, inputs,
                                                                 inp, cfg)


def _report_samples(inp: EvalInputs, answers: dict, answers_t1: dict, n_sample_prompts: int, judge_name, cfg,
                    meta: dict) -> dict:
    """The same few prompts (a few per family) answered by every model, as the report shows them."""
    prompts = inp.prompts
    idx = A.pick_sample_prompts(prompts, inp.families, n_sample_prompts)
    samples = {
        "prompts": [prompts[i] for i in idx],
        "families": [inp.families[i] for i in idx],
        "models": {name: [resp[i] for i in idx] for name, resp in answers.items()},
        "models_t1": {name: [resp[i] for i in idx] for name, resp in answers_t1.items()},
        "judge": judge_name,
        "temperature": cfg.temperature,
        "meta": meta,
    }
    if inp.world:  # the report shows these; it never calls the gold judge itself
        samples["gold"] = W.sample_golds(samples["prompts"], samples["models"])
        samples["rubric"] = W.rubric_legend()
    return samples


def _tax_metrics(metrics: dict, name: str, model, tok, inp: EvalInputs, cfg) -> None:
    """``tax.benchmark.<m>`` (and per task), ``tax.pretrain_nll.<m>``: the alignment tax."""
    if inp.benchmarks:
        res = benchmark_scores(model, tok, inp.benchmarks, cfg.batch_size)
        K.put(metrics, K.key("tax.benchmark", name), float(np.mean([r["correct"] for r in res])))
        tasks = sorted({r["task"] for r in res})
        if len(tasks) > 1:
            for t in tasks:
                sel = [r["correct"] for r in res if r["task"] == t]
                K.put(metrics, K.key("tax.benchmark_task", t, name), float(np.mean(sel)))
    if inp.pretrain_texts:
        K.put(metrics, K.key("tax.pretrain_nll", name), pretrain_nll(model, tok, inp.pretrain_texts))


def _kl_metrics(metrics: dict, name: str, model, ref, tok, inputs, cfg) -> list[str]:
    """``kl.<m>``, ``kl_per_token.<m>``, ``kl_k3.<m>``, ``kl_k3_per_token.<m>``; returns the samples (T = 1)."""
    kl = kl_to_reference(model, ref, tok, inputs, len(inputs), cfg.max_new_tokens, 1.0, cfg.seed, cfg.batch_size)
    K.put(metrics, K.key("kl", name), kl["per_response"])
    K.put(metrics, K.key("kl_per_token", name), kl["per_token"])
    K.put(metrics, K.key("kl_k3", name), kl["per_response_k3"])
    K.put(metrics, K.key("kl_k3_per_token", name), kl["per_token_k3"])
    if kl["per_response"] < 0:
        log.warning("eval: kl.%s (k1) is %.4f < 0: an estimate from %d samples of a KL near 0; "
                    "kl_k3.%s = %.4f is never negative", name, kl["per_response"], kl["n"], name, kl["per_response_k3"])
    return kl["texts"]


def _best_of_n_metrics(metrics: dict, model, rm, tok, rm_tok, rm_fmt, inputs, inp: EvalInputs, cfg) -> list[str]:
    """``bon.*`` of the reference policy against the RM; returns the RM's pick per prompt."""
    n = cfg.best_of_n
    texts, scores = best_of_n_samples(model, rm, tok, inp.prompts, n, cfg.max_new_tokens, 1.0, cfg.batch_size,
                                      cfg.seed, rm_tok, inputs, rm_fmt, inp.messages)
    K.put(metrics, "bon.n", int(n))
    K.put(metrics, "bon.kl", best_of_n_kl(n))
    K.put(metrics, "bon.rm_score", float(scores.max(1).values.mean()))
    K.put(metrics, "bon.rm_score_sampled", float(scores.mean()))
    if inp.world:
        sampled, oracle = W.oracle_best_of_n(inp.prompts, texts)
        K.put(metrics, "bon.gold_sampled", sampled)
        K.put(metrics, "bon.gold_oracle", oracle)
    return [t[j] for t, j in zip(texts, scores.argmax(1).tolist())]


def _rm_family_metrics(metrics: dict, rm, rm_tok, rankings, batch_size: int) -> None:
    """``rm_family.<family>.{rm,gold,rm_shorter,labeler_shorter}`` and
    ``rm_rubric.<attribute>.{rm,gold,labeler,pairs}`` (world)."""
    rankings = list(rankings)
    scores = W.ranking_rm_scores(rm, rm_tok, rankings, batch_size)
    for attr, acc in W.ranking_accuracy_by_attribute(rm, rm_tok, rankings, batch_size, scores=scores).items():
        for what in ("rm", "gold", "labeler", "pairs"):
            K.put(metrics, K.key("rm_rubric", attr, what), acc[what])
    for fam, acc in W.ranking_accuracy_by_family(rm, rm_tok, rankings, batch_size, scores=scores).items():
        K.put(metrics, K.key("rm_family", fam, "rm"), acc["rm"])
        K.put(metrics, K.key("rm_family", fam, "gold"), acc["gold"])
        if acc["rm_shorter"] is not None:
            K.put(metrics, K.key("rm_family", fam, "rm_shorter"), acc["rm_shorter"])
            K.put(metrics, K.key("rm_family", fam, "labeler_shorter"), acc["labeler_shorter"])


def _choose_judge(judge: str | None, inp: EvalInputs, cfg, dev, eval_prompts_path, world_seed: int, rm_folder,
                  rm_parts, say) -> tuple[str | None, Callable[[int], Any]]:
    """(the judge's name or None, ``make(seed) -> a judge`` of one pair, or None): the world's held-out
    labelers, a reward model (``--judge RM_FOLDER``, else ``--rm``), a causal LM, or none."""
    kind = inp.judge_kind
    judge_name = None
    heldout = None
    if inp.world and kind in ("none", "world") and judge != "none":
        try:
            _train, heldout = W.world_labelers(world_seed)
            judge_name = "heldout_labelers"
        except Exception as e:  # no labelers module: fall back to the RM
            log.warning("eval: world labelers unavailable (%s)", e)
    judge_rm, judge_rm_tok, judge_rm_fmt = rm_parts
    lm_judge = None
    if kind == "rm":  # --judge RM_FOLDER: win rate by that reward model's scores
        judge_rm, judge_rm_tok = load_reward_model(judge)
        judge_rm.to(dev)
        judge_rm_fmt = A.model_format(judge_rm_tok, judge, cfg, eval_prompts_path)
        judge_name = "reward_model"
    elif kind == "lm":  # --judge LM_FOLDER: a causal LM reads both answers and picks one
        jm, jtok = load_policy(judge)
        jm.to(dev)
        lm_judge = J.LMJudge(jm, jtok, A.model_format(jtok, judge, cfg), J.load_judge_template(cfg.judge_template),
                             cfg.judge_choices, max(1, cfg.batch_size // 4))
        judge_name = "lm_judge"
    if judge_name is None and rm_parts[0] is not None and judge != "none":
        judge_name = "reward_model"
    if judge_name is None:
        say(J.NO_JUDGE if judge != "none" else "eval: --judge none: no win rates; reporting length, empty-answer "
                                                "rate, EOS rate and KL")

    def make(seed: int):
        if judge_name == "heldout_labelers":
            return W.heldout_labeler_judge(heldout, seed)
        if judge_name == "reward_model":
            return J.rm_judge(judge_rm, judge_rm_tok, cfg.batch_size, judge_rm_fmt, inp.conversations)
        return lm_judge  # None without a judge

    return judge_name, make


def _pair_metrics(metrics: dict, a: str, b: str, prompts: Sequence[str], answers: dict, answers_t1: dict,
                  golds: dict, golds_t1: dict, make_judge, world: bool, cfg) -> None:
    """``winrate*.<a>_vs_<b>`` (the judge), ``gold_winrate*`` and ``gold_delta*`` (world), greedy and at T = 1."""
    p = K.pair(a, b)
    seed = stable_seed(cfg.seed, a, b)
    pair_judge = make_judge(seed)
    if pair_judge is not None:
        wr = win_rate(prompts, answers[a], answers[b], pair_judge, seed, cfg.bootstrap)
        K.put(metrics, K.key("winrate", p), wr["winrate"])
        metrics[K.ci("winrate", p)] = wr["ci95"]
    if world:
        wr = win_rate(prompts, answers[a], answers[b], W.gold_judge, seed, cfg.bootstrap)
        K.put(metrics, K.key("gold_winrate", p), wr["winrate"])
        metrics[K.ci("gold_winrate", p)] = wr["ci95"]
        if a in golds and b in golds:
            delta, ci = paired_delta(golds[a], golds[b], seed, cfg.bootstrap)
            K.put(metrics, K.key("gold_delta", p), delta)
            metrics[K.ci("gold_delta", p)] = ci
    if a in answers_t1 and b in answers_t1:
        if pair_judge is not None:
            wr = win_rate(prompts, answers_t1[a], answers_t1[b], pair_judge, seed + 1, cfg.bootstrap)
            K.put(metrics, K.key("winrate_t1", p), wr["winrate"])
            metrics[K.ci("winrate_t1", p)] = wr["ci95"]
        if world:
            delta, ci = paired_delta(golds_t1[a], golds_t1[b], seed + 1, cfg.bootstrap)
            K.put(metrics, K.key("gold_delta_t1", p), delta)
            metrics[K.ci("gold_delta_t1", p)] = ci


def run(cfg, models: dict[str, str], out, prompts, benchmarks=None, pretrain_val=None,
        reference: str | None = None, rm: str | None = None, pairs=None, world_seed: int = 0,
        device: str = "auto", heldout_rankings: str | None = None, judge: str | None = None) -> dict:
    """``instructrl eval``: evaluate ``models``; write ``out/eval.json`` (the flat metrics, returned)
    and ``out/samples.json`` (sample answers per model, the judge used, timings).

    ``reference`` is the KL reference (the SFT folder): the model whose folder it is, or else a
    new entry named ``sft`` (``reference`` if that name is taken). ``judge``: see
    :mod:`instructrl.evaluate.judges`. Returns the flat metrics.
    """
    models = dict(models)
    sft_name = None
    if reference:
        for name, folder in models.items():
            if Path(folder).resolve() == Path(reference).resolve():
                sft_name = name
                break
        if sft_name is None:
            sft_name = "sft" if "sft" not in models else "reference"
            models[sft_name] = reference
    elif "sft" in models:
        sft_name = "sft"
    if pairs is None:
        pairs = default_pairs(models, sft_name)
    pairs = list(pairs)
    for pair in pairs:  # a typo in --pairs would otherwise drop the pair without a word
        if len(pair) != 2 or not all(pair):
            raise InstructRLError(f"--pairs expects A:B, got {':'.join(pair)!r}")
        unknown = [n for n in pair if n not in models and K.bon_size(n) is None]
        if unknown:
            raise InstructRLError(f"--pairs {pair[0]}:{pair[1]}: no model named {unknown[0]!r}; "
                                  f"the models are {', '.join(sorted(models))}")
    metrics, samples = evaluate_models(models, sft_name, prompts, benchmarks, pretrain_val, cfg, rm_folder=rm,
                                       world_seed=world_seed, pairs=pairs, device=device,
                                       heldout_rankings_path=heldout_rankings, judge=judge)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "samples.json").write_text(json.dumps(samples, indent=2))
    return metrics
