"""The report's sections: each builds one section's HTML (prose, tables, figures from
:mod:`~instructrl.report.plots`) from the metrics, logs and samples it is given, or a short note
when its inputs are missing. :mod:`~instructrl.report.page` puts them in order.
"""

from __future__ import annotations

from typing import Sequence

from instructrl import metric_keys as K
from instructrl.report import plots
from instructrl.report.analysis import bon_gap, families_in, gold_trend, interval, num, sweep_rows, verdict_of, x_of
from instructrl.report.html import esc, fmt, html_table, model_label, note_html, pct

#: Contract win-rate pairs, in headline order: (key, plain-words label).
HEADLINE_PAIRS = (
    ("ppo_ptx_vs_sft", "PPO-ptx vs SFT"),
    ("ppo_vs_sft", "PPO vs SFT"),
    ("sft_vs_base", "SFT vs base"),
    ("ppo_ptx_vs_base_large", "small PPO-ptx vs the large base model"),
)


#: PPO log columns plotted, with titles and what healthy looks like (docs/metrics.md has more).
PPO_CURVES = (
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


SFT_CURVES = (("loss", "val_loss"), ("ptx_loss",), ("lr",))


RM_CURVES = (("loss", "val_loss"), ("accuracy", "val_accuracy"), ("margin",))


#: The paper's Fig. 1 methods: (label, small model, large model).
SIZE_METHODS = (("GPT (base)", "base", "base_large"), ("SFT", "sft", "sft_large"), ("PPO", "ppo", "ppo_large"),
                 ("PPO-ptx", "ppo_ptx", "ppo_ptx_large"))


def headline_section(metrics: dict, logs: dict, judge: str) -> str:
    """Does RLHF work here: the contract win rates as cards, then the verdict and what explains it."""
    cards = _headline_cards(metrics)
    sentences = _rlhf_verdict(metrics, judge) + _headline_context(metrics, logs)
    if not cards and not sentences:
        return note_html("No win rates or gold scores in the metrics: nothing to conclude yet.")
    body = f'<div class="cards">{"".join(cards)}</div>' if cards else ""
    body += "<ul class=\"headline\">" + "".join(f"<li>{s}</li>" for s in sentences) + "</ul>"
    return body


def _headline_cards(metrics: dict) -> list[str]:
    """One card per contract win rate present: the rate, its interval, the verdict."""
    cards = []
    for key, words in HEADLINE_PAIRS:
        wr = num(metrics.get(f"winrate.{key}"))
        if wr is None:
            continue
        lo, hi = interval(metrics, "winrate", key)
        cls, verdict = verdict_of(wr, lo, hi)
        ci_txt = f"95% CI {pct(lo)}–{pct(hi)}" if lo is not None else "no interval"
        cards.append(
            f'<div class="card {cls}"><div class="card-title">{esc(words)}</div>'
            f'<div class="big">{pct(wr)}</div><div class="small">{esc(ci_txt)}</div>'
            f'<div class="verdict">{esc(verdict)}</div></div>')
    return cards


def _rlhf_verdict(metrics: dict, judge: str) -> list[str]:
    """Sentences on the better of PPO / PPO-ptx against SFT: by the judge, by the gold judge, and
    (when the gold judge sees no gain) how much of the quality differences the RM sees."""
    sentences: list[str] = []
    rl = [(k, w) for k, w in HEADLINE_PAIRS[:2] if num(metrics.get(f"winrate.{k}")) is not None]
    if rl:
        k, words = max(rl, key=lambda kw: metrics[f"winrate.{kw[0]}"])
        wr = metrics[f"winrate.{k}"]
        lo, hi = interval(metrics, "winrate", k)
        cls, verdict = verdict_of(wr, lo, hi)
        a = words.split(" vs ")[0]
        ci = f" (95% CI {pct(lo)}–{pct(hi)})" if lo is not None else ""
        other = [(k2, w2) for k2, w2 in rl if k2 != k]
        if other:
            k2, w2 = other[0]
            lo2, hi2 = interval(metrics, "winrate", k2)
            ci += f"; {w2.split(' vs ')[0]}: {pct(metrics[f'winrate.{k2}'])} ({verdict_of(metrics[f'winrate.{k2}'], lo2, hi2)[1]})"
        g = num(metrics.get(f"gold_winrate.{k}"))
        glo, ghi = interval(metrics, "gold_winrate", k)
        gcls, gverdict = verdict_of(g, glo, ghi)
        if cls == "good":
            lead = "Yes, RLHF works here." if gcls in ("good", "na") else "Yes by the labelers, not by the gold judge."
            sentences.append(f"<b>{lead}</b> {judge.capitalize()} prefer {a}'s answers to SFT's "
                             f"{pct(wr)} of the time{ci}.")
        elif cls == "bad":
            sentences.append(f"<b>No: RLHF made things worse here.</b> {judge.capitalize()} prefer {a} to SFT only "
                             f"{pct(wr)} of the time{ci}.")
        else:
            sentences.append(f"<b>Not clearly.</b> {judge.capitalize()} prefer {a} to SFT {pct(wr)} of the time{ci}: "
                             "the interval includes 50%.")
        name = k.split("_vs_")[0]
        d, (dlo, dhi) = num(metrics.get(f"gold_delta.{k}")), interval(metrics, "gold_delta", k)
        if d is not None and dlo is not None:
            w1, (lo1, hi1) = num(metrics.get(f"winrate_t1.{k}")), interval(metrics, "winrate_t1", k)
            d1 = num(metrics.get(f"gold_delta_t1.{k}"))
            txt = (f"By the gold judge {a}'s mean score is {d:+.3f} against SFT's (95% CI {dlo:+.3f} to {dhi:+.3f}"
                   f"{': really better' if dlo > 0 else ': really worse' if dhi < 0 else ': no clear difference'}).")
            if w1 is not None:
                txt += (f" Sampled at T = 1 (the paper's rollout temperature): win rate {pct(w1)}"
                        + (f" ({pct(lo1)}–{pct(hi1)})" if lo1 is not None else "")
                        + (f", gold {d1:+.3f}" if d1 is not None else "") + ".")
            sentences.append(txt)
        # The labelers are noisy and have tastes (brevity...): say so when the hidden gold judge disagrees.
        if g is not None and gcls != cls:
            gci = f" (95% CI {pct(glo)}–{pct(ghi)})" if glo is not None else ""
            txt = (f"<b>The hidden gold judge disagrees:</b> by gold score {a} wins {pct(g)}{gci}, "
                   f"{esc(gverdict)}.")
            name = k.split("_vs_")[0]
            la, ls = num(metrics.get(f"length.{name}")), num(metrics.get("length.sft"))
            if gcls in ("even", "bad") and cls == "good" and la is not None and ls is not None and la < ls:
                txt += (f" The labelers' preference likely comes from their tastes rather than better answers: "
                        f"{a}'s answers are shorter ({la:.1f} vs {ls:.1f} characters), and the simulated labelers "
                        "have a mild taste for brevity that decides between answers of equal quality.")
            sentences.append(txt)
        # Why not (when the gold judge does not see a gain): how much of the quality differences the RM sees.
        gap = bon_gap(metrics)
        if g is not None and gcls != "good" and gap:
            sampled, picked, oracle, share = gap
            seen = (f"Among {esc(metrics.get('bon.n'))} SFT samples per prompt, the RM's pick scores gold {picked:.2f}, "
                    f"a random sample {sampled:.2f}, the gold judge's own pick {oracle:.2f}: the RM sees {pct(share)} "
                    "of the quality differences PPO would have to climb.")
            if share < 0.5:
                txt = "<b>What stands in the way is the reward model.</b> " + seen
            else:  # the RM would pick well: look at the optimisation instead
                txt = (seen + " The RM is not the main obstacle here; see the PPO curves (KL, the RM score vs gold) "
                       "for what the optimisation did with it.")
            r_all, g_all = num(metrics.get("rm_family.all.rm")), num(metrics.get("rm_family.all.gold"))
            if r_all is not None and g_all is not None:
                blind = [f for f in families_in(metrics) if (num(metrics.get(f"rm_family.{f}.rm")) or 1.0) <= 0.55]
                txt += (f" It orders held-out labelers' pairs as they do {pct(r_all, 1)} of the time (the gold judge: "
                        f"{pct(g_all, 1)})" + (f", near or below chance (≤ 55%) on {esc(', '.join(blind))}" if blind else "")
                        + " — see <a href=\"#families\">task families</a>.")
            sentences.append(txt)
    return sentences


def _headline_context(metrics: dict, logs: dict) -> list[str]:
    """Sentences on SFT vs base, the small aligned model vs the large base, gold per model, RLHF
    rounds, KL, the alignment tax and reward hacking in the PPO logs."""
    sentences: list[str] = []
    models = K.models_in(metrics, ["gold", "tax.benchmark", "length"]) or list(K.MODEL_ORDER)
    wr = num(metrics.get("winrate.sft_vs_base"))
    if wr is not None:
        lo, hi = interval(metrics, "winrate", "sft_vs_base")
        cls, verdict = verdict_of(wr, lo, hi)
        ci = f" ({pct(lo)}–{pct(hi)})" if lo is not None else ""
        if cls == "good":
            sentences.append(f"Supervised fine-tuning alone already beats the base model {pct(wr)} of the time{ci}.")
        else:
            sentences.append(f"SFT vs the base model: {pct(wr)}{ci}, {verdict}.")
    wr = num(metrics.get("winrate.ppo_ptx_vs_base_large"))
    if wr is not None:
        lo, hi = interval(metrics, "winrate", "ppo_ptx_vs_base_large")
        cls, _ = verdict_of(wr, lo, hi)
        ratio = ""
        ps, pl = num(metrics.get("params.base")), num(metrics.get("params.base_large"))
        if ps and pl:
            ratio = f" ({pl / ps:.0f}× the parameters)"
        verb = {"good": "beats", "bad": "loses to"}.get(cls, "is not clearly better than")
        sentences.append(f"The small aligned model {verb} the large base model{ratio}: {pct(wr)}"
                         + (f" ({pct(lo)}–{pct(hi)})." if lo is not None else ".")
                         + (" As in the paper, alignment matters more than size." if cls == "good" else ""))
    golds = [(m, num(metrics.get(f"gold.{m}"))) for m in models if num(metrics.get(f"gold.{m}")) is not None]
    if golds:
        chain = " → ".join(f"{esc(model_label(m))} {g:.2f}" for m, g in golds)
        sentences.append(f"Mean gold score (the hidden judge, 0–1): {chain}.")
    rounds = []  # (r, win rate of round r's PPO against SFT)
    for k in metrics:
        if k.startswith("winrate.") and num(metrics[k]) is not None:
            a, b = K.split_pair(k[len("winrate."):])
            if b == "sft" and K.round_of(a) is not None:
                rounds.append((K.round_of(a), metrics[k]))
    rounds.sort()
    if rounds and num(metrics.get("winrate.ppo_vs_sft")) is not None:
        def _state(name, wr):
            orf = num(metrics.get(f"hhh.over_refusal.{name}"))
            return f"{pct(wr)} vs SFT" + (f", over-refusal {pct(orf, 1)}" if orf is not None else "")
        steps = [f"round {r}: {_state(f'ppo_round{r}', wr)}" for r, wr in rounds]
        steps.append(f"round {rounds[-1][0] + 1} (final): {_state('ppo', metrics['winrate.ppo_vs_sft'])}")
        sentences.append("Iterated RLHF — each round's labelers rank the previous PPO policy's samples, so the "
                         "next RM sees what that policy exploited. PPO " + " → ".join(steps) + ".")
    kls = [(m, num(metrics.get(f"kl.{m}"))) for m in ("ppo", "ppo_ptx") if num(metrics.get(f"kl.{m}")) is not None]
    if kls:
        sentences.append("KL to SFT per response: " + ", ".join(f"{model_label(m)} {v:.2f} nats" for m, v in kls) + ".")
    tb = {m: num(metrics.get(f"tax.benchmark.{m}")) for m in K.MODEL_ORDER}
    if tb.get("ppo") is not None and (tb.get("sft") is not None or tb.get("base") is not None):
        ref = "sft" if tb.get("sft") is not None else "base"
        txt = (f"Alignment tax: benchmark accuracy {model_label(ref)} {pct(tb[ref], 1)}, PPO {pct(tb['ppo'], 1)}")
        if tb.get("ppo_ptx") is not None:
            txt += f", PPO-ptx {pct(tb['ppo_ptx'], 1)}"
        sentences.append(txt + ".")
    for name in ("ppo", "ppo_ptx"):
        t = gold_trend(logs.get(name, {})) if logs.get(name) else None
        if t and t["hacking"]:
            sentences.append(f"<b>Reward hacking in {model_label(name)}:</b> gold peaked at {t['gold_peak']:.2f} "
                             f"({t['x']} {t['peak_at']:.0f}) and fell to {t['gold_end']:.2f} while the RM score kept "
                             "rising (see below).")
    return sentences

def winrate_section(metrics: dict, judge: str) -> str:
    """Win rates of every pair: the figure, a table with verdicts, and the T = 1 / gold-difference table."""
    keys = [k[len("winrate."):] for k in metrics if k.startswith("winrate.") and num(metrics[k]) is not None]
    if not keys:
        return note_html("No win rates in the metrics (winrate.* keys).")
    order = [k for k, _ in HEADLINE_PAIRS if k in keys] + sorted(k for k in keys if k not in dict(HEADLINE_PAIRS))
    known = list(K.MODEL_ORDER) + [k.split("_vs_")[0] for k in order]
    labels = []
    for k in order:
        a, b = K.split_pair(k, known)
        labels.append(f"{model_label(a)} vs {model_label(b)}")
    has_gold = any(f"gold_winrate.{k}" in metrics for k in order)
    img = plots.winrates(has_gold, labels, order, judge, metrics)
    rows = []
    for k, lab in zip(order, labels):
        v = metrics.get(f"winrate.{k}")
        lo, hi = interval(metrics, "winrate", k)
        g = metrics.get(f"gold_winrate.{k}")
        cls, verdict = verdict_of(num(v), lo, hi)
        rows.append([esc(lab), pct(v, 1), f"{pct(lo, 1)} – {pct(hi, 1)}", pct(g, 1) if g is not None else "–",
                     f'<span class="tag {cls}">{esc(verdict)}</span>'])
    table = html_table(["pair", f"win rate ({judge})", "95% interval", "gold judge", "verdict"], rows)
    return img + table + _t1_table(metrics, order, labels, judge)


def _t1_table(metrics: dict, order: Sequence[str], labels: Sequence[str], judge: str) -> str:
    """The same pairs at T = 1 beside the greedy ones, and the gold judge's paired difference."""
    has = [(k, lab) for k, lab in zip(order, labels)
           if f"winrate_t1.{k}" in metrics or f"gold_delta.{k}" in metrics]
    if not has:
        return ""
    rows = []
    for k, lab in has:
        d, (dlo, dhi) = metrics.get(f"gold_delta.{k}"), interval(metrics, "gold_delta", k)
        d1, (d1lo, d1hi) = metrics.get(f"gold_delta_t1.{k}"), interval(metrics, "gold_delta_t1", k)
        w1, (lo1, hi1) = metrics.get(f"winrate_t1.{k}"), interval(metrics, "winrate_t1", k)

        def delta(v, lo, hi):
            if v is None:
                return "–"
            cls = ' class="good"' if lo is not None and lo > 0 else ' class="bad"' if hi is not None and hi < 0 else ""
            return f"<span{cls}>{v:+.3f}</span> [{fmt(lo)}, {fmt(hi)}]"
        rows.append([esc(lab), delta(d, dlo, dhi), pct(w1, 1) + (f" ({pct(lo1, 1)} – {pct(hi1, 1)})" if lo1 is not None else ""),
                     delta(d1, d1lo, d1hi)])
    return ("<p>Greedy answers above; the same pairs sampled at T = 1 (the paper's rollout temperature) here, "
            "with the gold judge's paired difference in mean score (95% bootstrap interval over prompts; green: "
            "the interval lies above 0).</p>"
            + html_table(["pair", "gold difference (greedy)", f"win rate at T = 1 ({judge})", "gold difference (T = 1)"], rows))


def rubric_section(metrics: dict, legend: dict | None = None) -> str:
    """The paper's Fig. 4 in miniature: how often each model's answers fail each rubric attribute.

    ``legend``: the rubric's attributes in words and which are Fig. 4's (``samples["rubric"]``, written
    by the world's evaluator); without it the attributes are named by their keys."""
    found = K.groups_in(metrics, "rubric")
    legend = legend or {}
    attributes = legend.get("attributes") or {a: a.replace("_", " ") for a in found}
    attrs = [a for a in attributes if a in found]
    if not attrs:
        return note_html("No rubric.* keys: the gold judge's attributes need the world's prompts.")
    fig4_all = legend.get("fig4") or attrs[:4]
    models = K.models_in(metrics, [f"rubric.{a}" for a in attrs])
    fig4 = [a for a in fig4_all if a in attrs]
    img = plots.rubric(fig4, models, attributes, metrics)
    rows = [[esc(attributes[a])] + [pct(metrics.get(f"rubric.{a}.{m}"), 1) for m in models] for a in attrs]
    verdict = ""
    if "sft" in models:
        better = [attributes[a] for a in fig4 for m in ("ppo_ptx", "ppo") if m in models
                  and (num(metrics.get(f"rubric.{a}.{m}")) or 0) < (num(metrics.get(f"rubric.{a}.sft")) or 0) - 0.01][:4]
        worse = [attributes[a] for a in attrs for m in ("ppo_ptx",) if m in models
                 and (num(metrics.get(f"rubric.{a}.{m}")) or 0) > (num(metrics.get(f"rubric.{a}.sft")) or 0) + 0.01]
        parts = []
        if better:
            parts.append("RLHF lowers: " + "; ".join(dict.fromkeys(better)) + ".")
        if worse:
            parts.append("PPO-ptx does more often than SFT: " + "; ".join(worse) + ".")
        verdict = f"<p>{esc(' '.join(parts) or 'RLHF changes none of these rates by more than a point.')}</p>"
    return img + verdict + html_table(["attribute (rate among the answers it applies to)"] + [model_label(m) for m in models], rows)


def categories_section(metrics: dict) -> str:
    """Gold per Table 1 category, and one sentence on where RLHF gains and where it does not."""
    cats = K.groups_in(metrics, "gold_category")
    if not cats:
        return note_html("No gold_category.* keys: per-category scores need the world's prompts.")
    models = K.models_in(metrics, [f"gold_category.{c}" for c in cats])
    img = plots.categories(models, cats, metrics)
    sentences = []
    for m in ("ppo_ptx", "ppo"):
        if m not in models or "sft" not in models:
            continue
        d = {c: (num(metrics.get(f"gold_category.{c}.{m}")) or 0) - (num(metrics.get(f"gold_category.{c}.sft")) or 0)
             for c in cats}
        gains = [c.replace("_", " ") for c in cats if d[c] >= 0.02]
        losses = [c.replace("_", " ") for c in cats if d[c] <= -0.02]
        flat = [c.replace("_", " ") for c in cats if abs(d[c]) < 0.02]
        s = f"{model_label(m)} vs SFT: gains on {', '.join(gains) or 'no category'}"
        s += f"; loses on {', '.join(losses)}" if losses else ""
        s += f"; no change (within ±0.02) on {', '.join(flat)}" if flat else ""
        s += "."
        if "closed_qa" in d:
            s += (" On closed QA — the control, where checking an answer is as hard as writing it — "
                  + ("it gains nothing, as expected at this scale." if d["closed_qa"] < 0.02 else
                     f"it gains {d['closed_qa']:+.2f}."))
        sentences.append(f"<p>{esc(s)}</p>")
    rows = [[esc(c.replace("_", " "))] + [fmt(metrics.get(f"gold_category.{c}.{m}")) for m in models] for c in cats]
    return img + "".join(sentences) + html_table(["category"] + [model_label(m) for m in models], rows)


def per_model_section(metrics: dict) -> str:
    """Gold and RM score, KL and length per model."""
    models = K.models_in(metrics, ["gold", "rm_score"])
    if not models:
        return note_html("No gold.* or rm_score.* keys: per-model scores not available.")
    series = [(p, t) for p, t in (("gold", "mean gold score"), ("rm_score", "mean RM score (proxy)"))
              if any(num(metrics.get(f"{p}.{m}")) is not None for m in models)]
    img = plots.per_model(series, models, metrics)
    rows = []
    for m in models:
        rows.append([esc(model_label(m)), fmt(metrics.get(f"gold.{m}")), fmt(metrics.get(f"rm_score.{m}")),
                     fmt(metrics.get(f"kl.{m}"), 2), fmt(metrics.get(f"kl_per_token.{m}"), 4),
                     fmt(metrics.get(f"length.{m}"), 1)])
    return img + html_table(["model", "gold", "RM score", "KL to SFT (nats/response)", "KL per token",
                         "mean length (chars)"], rows)


def ppo_curves_section(logs: dict) -> str:
    """PPO's log columns over training."""
    runs = {n: lg for n, lg in logs.items() if lg and ("score" in lg or "kl" in lg)}
    if not runs:
        return note_html("No PPO logs (log.csv with score/kl columns) were found.")
    cols = [c for c in PPO_CURVES if any(c[0] in lg for lg in runs.values())]
    missing = [c for c, _, _ in PPO_CURVES if c not in {c for c, _, _ in cols}]
    note = note_html("Columns not in the logs: " + ", ".join(missing)) if missing else ""
    return plots.ppo_curves(cols, runs) + note


def hacking_section(logs: dict) -> str:
    """RM score vs gold over PPO training, with the reward-hacking diagnosis of each run."""
    runs = {n: lg for n, lg in logs.items() if lg and "score" in lg and "gold" in lg}
    if not runs:
        return note_html("Needs PPO logs with both 'score' (RM) and 'gold' columns; none found.")
    texts = []
    for name, lg in runs.items():
        t = gold_trend(lg)
        if t:
            if t["hacking"]:
                texts.append(f"<b>{esc(model_label(name))}: over-optimization.</b> Gold peaked at {t['gold_peak']:.3f} "
                             f"({esc(t['x'])} {t['peak_at']:.0f}) and ended at {t['gold_end']:.3f}, while the RM score "
                             f"went on from {t['score_at_peak']:.3f} to {t['score_end']:.3f}: past the peak the policy "
                             "exploits the reward model rather than getting better (Gao et al. 2022).")
            else:
                texts.append(f"<b>{esc(model_label(name))}:</b> RM score {t['score_start']:.3f} → {t['score_end']:.3f}, "
                             f"gold {t['gold_start']:.3f} → {t['gold_end']:.3f} (peak {t['gold_peak']:.3f}): "
                             "no sign of reward hacking at this KL.")
    img = plots.hacking(runs)
    return img + "<ul>" + "".join(f"<li>{t}</li>" for t in texts) + "</ul>"


def stage_curves_section(logs: dict) -> str:
    """SFT and RM training curves."""
    panels = []
    for name, groups in (("sft", SFT_CURVES), ("rm", RM_CURVES)):
        lg = logs.get(name)
        if not lg:
            continue
        x = x_of(lg)
        for g in groups:
            present = [c for c in g if c in lg]
            if present and x:
                panels.append((name, x, present, lg))
    if not panels:
        return note_html("No SFT or RM logs (log.csv with loss/accuracy columns) were found.")
    return plots.stage_curves(panels)


def tax_section(metrics: dict) -> str:
    """The alignment tax: benchmark accuracy and pretraining NLL per model, against the base model."""
    models = K.models_in(metrics, ["tax.benchmark", "tax.pretrain_nll"])
    if not models:
        return note_html("No tax.benchmark.* / tax.pretrain_nll.* keys: the alignment tax was not measured.")
    base = "base" if "base" in models else None
    rows = []
    for m in models:
        b, n = num(metrics.get(f"tax.benchmark.{m}")), num(metrics.get(f"tax.pretrain_nll.{m}"))
        db = dn = "–"
        if base and m != base:
            bb, bn = num(metrics.get(f"tax.benchmark.{base}")), num(metrics.get(f"tax.pretrain_nll.{base}"))
            if b is not None and bb is not None:
                d = 100 * (b - bb)
                db = f'<span class="{"bad" if d < -0.5 else "good" if d > 0.5 else ""}">{d:+.1f} pts</span>'
            if n is not None and bn is not None:
                d = n - bn
                dn = f'<span class="{"bad" if d > 0.01 else "good" if d < -0.01 else ""}">{d:+.3f}</span>'
        rows.append([esc(model_label(m)), pct(b, 1), db, fmt(n), dn])
    table = html_table(["model", "benchmark accuracy", "vs base", "pretraining NLL (nats/token)", "vs base"], rows)
    series = [(p, t) for p, t in (("tax.benchmark", "benchmark accuracy (higher is better)"),
                                   ("tax.pretrain_nll", "pretraining NLL (lower is better)"))
              if any(num(metrics.get(f"{p}.{m}")) is not None for m in models)]
    img = plots.tax(series, models, metrics)
    # Per-task breakdown.
    tasks = sorted({k.split(".")[2] for k in metrics if k.startswith("tax.benchmark_task.") and k.count(".") == 3})
    extra = ""
    if tasks:
        trows = [[esc(t)] + [pct(metrics.get(f"tax.benchmark_task.{t}.{m}")) for m in models] for t in tasks]
        extra = "<details><summary>Benchmark accuracy per task</summary>" + html_table(
            ["task"] + [model_label(m) for m in models], trows) + "</details>"
    return table + img + extra


def hhh_section(metrics: dict) -> str:
    """Refusals of harmful requests, "I don't know" to unanswerable ones, over-refusal, constraints."""
    kinds = (("refusal_harmful", "refuses harmful requests", "high"),
             ("idk_unanswerable", "says \"I don't know\" to unanswerable questions", "high"),
             ("over_refusal", "refuses / IDKs answerable prompts", "low"),
             ("constraint", "follows explicit constraints", "high"))
    models = K.models_in(metrics, [f"hhh.{k}" for k, _, _ in kinds])
    if not models:
        return note_html("No hhh.* keys: the world's HHH rates were not measured (real, non-world prompts?).")
    present = [k for k in kinds if any(f"hhh.{k[0]}.{m}" in metrics for m in models)]
    img = plots.hhh(models, present, metrics)
    rows = [[esc(model_label(m))] + [pct(metrics.get(f"hhh.{k}.{m}"), 1) for k, _, _ in present] for m in models]
    return img + html_table(["model"] + [f"{t} (want {w})" for _, t, w in present], rows)


def bon_section(metrics: dict) -> str:
    """Best-of-n against the RM (and the gold judge's own pick) beside PPO, at their KLs."""
    if "bon.n" not in metrics and "bon.kl" not in metrics:
        return note_html("Best-of-n was not evaluated (eval.best_of_n = 0 or no reward model).")
    n = metrics.get("bon.n")
    rows = [[f"best-of-{esc(n)} from SFT (the RM picks)", fmt(metrics.get("bon.kl"), 2) + " (analytic: log n − (n−1)/n)",
             fmt(metrics.get("bon.gold")), fmt(metrics.get("bon.rm_score"))]]
    if num(metrics.get("bon.gold_oracle")) is not None:
        rows.append([f"best-of-{esc(n)} from SFT, picked by the gold judge (ceiling)", "—",
                     fmt(metrics.get("bon.gold_oracle")), ""])
    if num(metrics.get("bon.gold_sampled")) is not None:
        rows.append([f"one SFT sample at T = 1 (mean of the {esc(n)})", "0", fmt(metrics.get("bon.gold_sampled")),
                     fmt(metrics.get("bon.rm_score_sampled"))])
    for m in ("sft", "ppo", "ppo_ptx"):
        if any(k in metrics for k in (f"gold.{m}", f"kl.{m}")):
            rows.append([esc(model_label(m)), fmt(metrics.get(f"kl.{m}"), 2) if m != "sft" else "0",
                         fmt(metrics.get(f"gold.{m}")), fmt(metrics.get(f"rm_score.{m}"))])
    key = next((k for k in metrics if k.startswith("winrate.bon")), None)
    extra = ""
    if key:
        lo, hi = interval(metrics, "winrate", key[len("winrate."):])
        extra = note_html(f"Best-of-{n} vs SFT win rate: {pct(metrics[key], 1)} (95% CI {pct(lo, 1)}–{pct(hi, 1)}).")
    gap = bon_gap(metrics)
    if gap:
        sampled, picked, oracle, share = gap
        extra += note_html(f"How much the RM sees: among the same {n} samples per prompt, the gold judge's own pick scores "
                       f"{oracle:.3f} and a random one {sampled:.3f}; the RM's pick, {picked:.3f}, closes "
                       f"{pct(share)} of that gap. A reward model can only steer PPO toward differences it can "
                       "see, so this share bounds what RLHF can gain over sampling from SFT.")
    intro = note_html("Best-of-n spends KL far more efficiently than RL does (Gao et al. 2022); the RM score of "
                  "SFT answers is greedy here while best-of-n samples at T = 1.")
    return html_table(["policy", "KL to SFT (nats)", "gold", "RM score"], rows) + extra + intro


def sizes_section(metrics: dict) -> str:
    """Win rate against the large SFT model by model size and method (the paper's Fig. 1)."""
    if not any(k.startswith("winrate.") and k.endswith("_vs_sft_large") for k in metrics):
        return note_html("Only the small model was aligned here; `--set align_large=true` (on in the paper preset) "
                     "takes the large base through SFT, PPO and PPO-ptx too.")
    sizes = (num(metrics.get("params.base")), num(metrics.get("params.base_large")))

    def wr(m: str) -> tuple[float | None, float | None, float | None]:
        if m == "sft_large":
            return 0.5, None, None  # the baseline against itself
        lo, hi = interval(metrics, "winrate", f"{m}_vs_sft_large")
        return num(metrics.get(f"winrate.{m}_vs_sft_large")), lo, hi

    series, rows = [], []
    for label, small, large in SIZE_METHODS:
        both = (wr(small), wr(large))
        series.append((label, large, both))
        rows.append([esc(label)] + [f"{pct(w, 1)}" + (f" ({pct(lo, 1)}–{pct(hi, 1)})" if lo is not None else "")
                                   for w, lo, hi in both]
                    + [fmt(metrics.get(f"gold.{small}")), fmt(metrics.get(f"gold.{large}"))])
    img = plots.sizes(series, sizes)
    small_p, large_p = (f"{int(x):,}" if x else "?" for x in sizes)
    return img + html_table(["method", f"small ({small_p} params): win rate vs large SFT",
                         f"large ({large_p} params): win rate vs large SFT", "gold (small)", "gold (large)"], rows)


def families_section(metrics: dict) -> str:
    """Gold per task family, and how often the RM and the gold judge agree with held-out labelers."""
    fams = families_in(metrics)
    if not fams:
        return note_html("No gold_family.* / rm_family.* keys: per-family scores need the world's prompts.")
    models = K.models_in(metrics, [f"gold_family.{f}" for f in fams])
    has_rm = any(f"rm_family.{f}.rm" in metrics for f in fams)
    delta_of = [m for m in ("ppo", "ppo_ptx") if m in models and "sft" in models]
    header = ["task family"] + [f"gold: {model_label(m)}" for m in models] + [f"{model_label(m)} − SFT" for m in delta_of]
    has_len = any(f"rm_family.{f}.rm_shorter" in metrics for f in fams)
    if has_rm:
        header += ["RM agrees with held-out labelers", "gold judge agrees with them"]
    if has_len:
        header += ["RM prefers the shorter answer", "labelers prefer the shorter answer"]
    rows = []
    for f in fams + (["all"] if has_rm else []):
        g = {m: num(metrics.get(f"gold.{m}" if f == "all" else f"gold_family.{f}.{m}")) for m in models}
        row = [esc(f if f != "all" else "all prompts")] + [fmt(g[m]) for m in models]
        for m in delta_of:
            d = None if g.get(m) is None or g.get("sft") is None else round(g[m] - g["sft"], 3) + 0.0  # no "-0.000"
            cls = "" if d is None or abs(d) < 0.02 else (' class="good"' if d > 0 else ' class="bad"')
            row.append(f"<span{cls}>{'' if d is None else f'{d:+.3f}'}</span>")
        if has_rm:
            r, gj = num(metrics.get(f"rm_family.{f}.rm")), num(metrics.get(f"rm_family.{f}.gold"))
            blind = r is not None and r <= 0.55
            row += [("<b>" if blind else "") + pct(r, 1) + (" (≤ 55%: near or below chance)</b>" if blind else ""),
                    pct(gj, 1)]
        if has_len:
            row += [pct(metrics.get(f"rm_family.{f}.rm_shorter")), pct(metrics.get(f"rm_family.{f}.labeler_shorter"))]
        rows.append(row)
    body = html_table(header, rows)
    if has_rm:
        body = plots.families(fams, metrics) + body
    return body


def labelers_section(metrics: dict) -> str:
    """Labeler agreement and RM accuracy beside the paper's numbers (and earlier rounds' RMs)."""
    rows_def = (
        ("labelers.agreement", "agreement between two training labelers", "72.6% ± 1.5 (training), 77.3% (held-out)"),
        ("rm.val_accuracy", "RM accuracy on held-out comparisons", "72.4% ± 0.4 (labelers in its training set)"),
        ("rm.heldout_labeler_accuracy", "RM accuracy on held-out labelers", "69.6% ± 0.9"),
    )
    rows = [[esc(t), pct(metrics.get(k), 1), esc(p)] for k, t, p in rows_def if k in metrics]
    if not rows:
        return note_html("No labelers.agreement / rm.* accuracy keys in the metrics.")
    # Iterated RLHF: the RM of each earlier round (trained on fewer comparisons, none of its PPO's samples).
    for k in sorted(metrics):
        parsed = K.parse_round_rm(k)
        if not parsed:
            continue
        r, what = parsed
        rows.append([esc(f"round {r} RM: " + ("accuracy on held-out comparisons" if what == "val_accuracy"
                                             else "accuracy on held-out labelers")), pct(metrics.get(k), 1), ""])
    present = [(k, t, p) for k, t, p in rows_def if num(metrics.get(k)) is not None]
    body = html_table(["measure", "this run", "InstructGPT paper"], rows)
    if present:
        body = plots.labelers(present, metrics) + body
    return body + rubric_rm_table(metrics)


def rubric_rm_table(metrics: dict) -> str:
    """Per rubric attribute: does the RM put the flawless response first as the held-out labelers do?"""
    attrs = sorted({k.split(".")[1] for k in metrics if k.startswith("rm_rubric.") and k.endswith(".rm")})
    if not attrs:
        return ""
    rows = []
    for a in sorted(attrs, key=lambda a: -(num(metrics.get(f"rm_rubric.{a}.pairs")) or 0)):
        lab, rm = num(metrics.get(f"rm_rubric.{a}.labeler")), num(metrics.get(f"rm_rubric.{a}.rm"))
        blind = lab is not None and rm is not None and lab - rm >= 0.15
        rows.append([esc(a), str(int(num(metrics.get(f"rm_rubric.{a}.pairs")) or 0)), pct(lab, 1),
                     pct(metrics.get(f"rm_rubric.{a}.gold"), 1),
                     ("<b>" if blind else "") + pct(rm, 1) + (" (15+ points below the labelers)</b>" if blind else "")])
    return ("<h3>What the RM sees, per rubric attribute</h3>"
            + html_table(["attribute", "held-out pairs that differ in it", "labelers put the flawless first",
                          "gold judge", "RM"], rows)
            + note_html("Pairs of held-out labelers' rankings whose two responses differ in the attribute. "
                        "Where the RM is far below the labelers it has not learned the attribute, and PPO is "
                        "free to get worse at it."))


def sweeps_section(extra: dict | None, metrics: dict) -> str:
    """The β and γ sweeps, from the sweep rows of :func:`~instructrl.report.analysis.sweep_rows`."""
    if not extra:
        return note_html("No sweeps in this run (the 'paper' preset sweeps β and γ).")
    beta, gamma = sweep_rows(extra)
    parts = []
    if beta:
        parts.append("<h3>KL coefficient β</h3>" + plots.beta_sweep(beta, metrics))
        parts.append(html_table(["β", "KL", "RM score", "gold"],
                            [[f"{r['kl_coef']:g}", fmt(r.get("kl"), 2), fmt(r.get("score")), fmt(r.get("gold"))]
                             for r in beta]))
        parts.append(note_html("Lines: each run's trajectory over training; dots: its end. A small β buys RM score "
                           "with KL; where gold stops following the RM score, the policy is over-optimizing."))
    if gamma:
        cols = [c for c in ("gold", "score", "kl", "ptx_loss", "tax.benchmark", "tax.pretrain_nll")
                if any(num(r.get(c)) is not None for r in gamma)]
        titles = {"gold": "gold score", "score": "RM score", "kl": "KL to SFT", "ptx_loss": "pretraining NLL (ptx batches)",
                  "tax.benchmark": "benchmark accuracy", "tax.pretrain_nll": "held-out pretraining NLL"}
        if cols:
            parts.append("<h3>Pretraining mix γ</h3>" + plots.gamma_sweep(cols, gamma, titles))
            parts.append(html_table(["γ"] + [titles.get(c, c) for c in cols],
                                [[f"{r['ptx_coef']:g}"] + [fmt(r.get(c)) for c in cols] for r in gamma]))
    if not parts:
        return note_html("extra_plots held no recognizable sweep (expected 'sweeps' entries of sweeps.json, "
                     "or 'beta_sweep'/'gamma_sweep' rows).")
    return "".join(parts)


def samples_section(samples: dict | None) -> str:
    """The sample prompts answered by every model, side by side, with their gold scores when given."""
    if not samples or not samples.get("prompts") or not samples.get("models"):
        return note_html("No sample answers were given (samples.json).")
    prompts = samples["prompts"]
    golds = samples.get("gold") or {}  # the world's evaluator's gold score of each answer
    fams = samples.get("families") or [None] * len(prompts)
    models = [m for m in K.MODEL_ORDER if m in samples["models"]] + sorted(
        m for m in samples["models"] if m not in K.MODEL_ORDER)
    head = "".join(f"<th>{esc(model_label(m))}</th>" for m in models)
    rows = []
    for i, p in enumerate(prompts):
        fam = fams[i] if i < len(fams) else None
        cells = []
        for m in models:
            answers = samples["models"][m]
            a = answers[i] if i < len(answers) else ""
            g = golds.get(m, [])[i] if i < len(golds.get(m, [])) else None
            badge = ""
            if g is not None:
                cls = "good" if g >= 0.75 else "bad" if g < 0.4 else "even"
                badge = f'<span class="tag {cls}" title="gold score">{g:.2f}</span>'
            text = esc(a) if a.strip() else '<span class="empty">(empty)</span>'
            cells.append(f'<td><div class="answer">{text}</div>{badge}</td>')
        fam_tag = f'<span class="tag fam">{esc(fam)}</span>' if fam else ""
        rows.append(f'<tr><td class="prompt">{fam_tag}<div class="answer">{esc(p)}</div></td>{"".join(cells)}</tr>')
    t = samples.get("temperature")
    note = note_html(f"Same prompts for every model; decoding temperature {t} ({'greedy' if t == 0 else 'sampled'}). "
                 "Badges: gold score.") if t is not None else ""
    return (f'<div class="scroll"><table class="samples"><thead><tr><th>prompt</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{note}')


def timings_section(metrics: dict) -> str:
    """Time per stage and the total."""
    times = {k[len("time_s."):]: num(v) for k, v in metrics.items() if k.startswith("time_s.") and num(v) is not None}
    if not times:
        return note_html("No time_s.* keys in the metrics.")
    total = times.pop("total", None)
    body = ""
    if times:
        body = plots.timings(times)
    rows = [[esc(n), f"{v:.1f}", pct(v / total, 0) if total else "–"] for n, v in times.items()]
    if total is not None:
        rows.append(["<b>total</b>", f"<b>{total:.1f}</b>", "100%"])
    return body + html_table(["stage", "seconds", "share"], rows)
