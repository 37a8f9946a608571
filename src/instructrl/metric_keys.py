"""Keys of metrics.json: the one module that builds and parses them (evaluate, pipeline, report).

metrics.json is flat (DESIGN.md, docs/metrics.md): a key is dot-separated parts, most often
``<measure>.<model>`` (``gold.ppo``), ``<measure>.<group>.<model>`` (``rubric.<attribute>.<model>``,
``gold_category.<category>.<model>``, ``gold_family.<family>.<model>``) or ``<measure>.<a>_vs_<b>``
for a pair of models (``winrate.ppo_vs_sft``), whose 95% interval is ``<measure>_ci95.<a>_vs_<b>``.
Model names are the pipeline's (:data:`MODEL_ORDER`, ``ppo_round<r>`` for earlier RLHF rounds,
``bon<n>`` for best-of-n); a name never holds a dot, but may hold ``_vs_`` parts (``base_large``).

Sweep runs are not keys: the pipeline hands them to the report as data (``sweeps.json``).
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

__all__ = ["MODEL_ORDER", "put", "key", "pair", "ci", "split_pair", "models_in", "groups_in", "bon_name", "bon_size",
           "round_model", "round_of", "rm_prefix", "parse_round_rm"]

#: The pipeline's model names, in the order the report lists them.
MODEL_ORDER = ("base", "base_large", "sft", "ppo", "ppo_ptx", "sft_large", "ppo_large", "ppo_ptx_large")

_BON = re.compile(r"bon(\d+)")
_ROUND = re.compile(r"ppo_round(\d+)")
_ROUND_RM = re.compile(r"round(\d+)\.rm\.(val_accuracy|heldout_labeler_accuracy)")


def put(metrics: dict, k: str, value) -> None:
    """``metrics[k] = value``, except that a missing (None) or non-finite value is left out."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        return
    metrics[k] = value


def key(*parts) -> str:
    """``key("gold_category", "chat", "ppo")`` -> ``"gold_category.chat.ppo"``."""
    return ".".join(str(p) for p in parts)


def pair(a: str, b: str) -> str:
    """The pair part of a key: ``a_vs_b`` (model a against model b)."""
    return f"{a}_vs_{b}"


def ci(measure: str, rest: str) -> str:
    """The key of the 95% interval ``[lo, hi]`` of ``<measure>.<rest>``: ``<measure>_ci95.<rest>``."""
    return f"{measure}_ci95.{rest}"


def split_pair(pair_key: str, models: Sequence[str] = ()) -> tuple[str, str]:
    """``'ppo_ptx_vs_base_large'`` -> ``('ppo_ptx', 'base_large')``; the longest known model name that
    begins the key wins (names may contain '_vs_'), else the first '_vs_' splits."""
    for a in sorted(models, key=len, reverse=True):
        if pair_key.startswith(a + "_vs_"):
            return a, pair_key[len(a) + 4:]
    a, _, b = pair_key.partition("_vs_")
    return a, b


def models_in(metrics: Iterable[str], measures: Sequence[str]) -> list[str]:
    """Model names appearing as ``<measure>.<model>`` keys, those of :data:`MODEL_ORDER` first."""
    found = set()
    for k in metrics:
        for p in measures:
            if k.startswith(p + ".") and k.count(".") == p.count(".") + 1:
                found.add(k[len(p) + 1:])
    known = [m for m in MODEL_ORDER if m in found]
    return known + sorted(found - set(known))


def groups_in(metrics: Iterable[str], measure: str, last: str | None = None) -> list[str]:
    """The sorted ``<group>`` names of ``<measure>.<group>.<last>`` keys (any model when ``last`` is
    None): the categories of ``gold_category``, the families of ``gold_family``, the tasks of
    ``tax.benchmark_task``."""
    tail = r"[^.]+" if last is None else f"(?:{last})"
    pat = re.compile(rf"{re.escape(measure)}\.([^.]+)\.{tail}")
    return sorted({m.group(1) for k in metrics if (m := pat.fullmatch(k))})


def bon_name(n: int) -> str:
    """The model name of the RM's best-of-n of the SFT policy."""
    return f"bon{n}"


def bon_size(name: str) -> int | None:
    """n of a best-of-n model name, else None."""
    m = _BON.fullmatch(name)
    return int(m.group(1)) if m else None


def round_model(r: int) -> str:
    """The model name of round ``r``'s PPO policy (iterated RLHF, every round but the last)."""
    return f"ppo_round{r}"


def round_of(name: str) -> int | None:
    """The round of a ``ppo_round<r>`` model name, else None."""
    m = _ROUND.fullmatch(name)
    return int(m.group(1)) if m else None


def rm_prefix(r: int | None = None) -> str:
    """The key prefix of an RM's accuracies: ``rm`` (the last round's), ``round<r>.rm`` (an earlier one)."""
    return "rm" if r is None else f"round{r}.rm"


def parse_round_rm(k: str) -> tuple[int, str] | None:
    """``'round1.rm.val_accuracy'`` -> ``(1, 'val_accuracy')``; None for any other key."""
    m = _ROUND_RM.fullmatch(k)
    return (int(m.group(1)), m.group(2)) if m else None
