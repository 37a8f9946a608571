"""Can a model copy from its context? Per-token loss on a random sequence of the world's words,
then on the same sequence again (a diagnostic outside the method; Olsson et al. 2022's
"induction heads" test, on in-distribution words).

A model with an in-context copy mechanism predicts the second copy far better than the first
(the loss falls towards 0); one without it scores both copies alike. The world's prompt-dependent
checks need that mechanism, in the policy and in the reward model alike: "use the word X" asks to
copy X from the prompt into the answer, and verifying it asks to match a word of the answer with
one of the prompt; a summary is faithful when its names are copied from the context.

A second, in-distribution measure reads the same mechanism where the world asks for it: after
"Q: Write a sentence about a P that uses the word W.\nA: The A kept the", the log-probability of
W against another object W' in that slot (the lookup margin), and how often W is the likelier.

Prints a markdown table: per model, the mean loss (nats per token) on the first copy and on the
second, their difference (the copy gain), the top-1 accuracy on each copy, and the lookup margin
and rate.

    python scripts/copy_probe.py runs/default/base_small runs/default/base_large runs/default/sft
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence

import torch


def copy_losses(logits_fn: Callable[[torch.Tensor], torch.Tensor],
                sequences: Sequence[Sequence[int]]) -> dict[str, float]:
    """Loss on a sequence and on its repetition.

    Each token sequence ``a`` (length L >= 2) is fed as ``a + a`` (one row, no padding);
    ``logits_fn`` maps ids [1, 2L] to logits [1, 2L, V]. Loss of token t is
    ``-log softmax(logits[t-1])[ids[t]]``; the first copy averages it over t = 1..L-1 (token 0 has
    no context), the second over t = L+1..2L-1 (the same L-1 positions within their copy, so both
    means cover identical tokens). Returns the token-weighted means ``first`` and ``second``,
    ``gain = first - second`` and ``top1_first`` / ``top1_second``, how often the argmax at t-1
    is ``ids[t]`` on each copy (with a subword tokenizer a word's later pieces are easy in both).
    """
    s1 = s2 = n = hits1 = hits2 = 0.0
    for a in sequences:
        L = len(a)
        if L < 2:
            raise ValueError(f"copy_losses: a sequence needs at least 2 tokens, got {L}")
        ids = torch.tensor([list(a) + list(a)])
        with torch.no_grad():
            logits = logits_fn(ids)[0, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]  # lp[t-1] = log p(ids[t])
        s1 += -lp[: L - 1].sum().item()
        s2 += -lp[L:].sum().item()
        hits1 += (logits[: L - 1].argmax(-1) == ids[0, 1:L]).sum().item()
        hits2 += (logits[L:].argmax(-1) == ids[0, L + 1:]).sum().item()
        n += L - 1
    return {"first": s1 / n, "second": s2 / n, "gain": (s1 - s2) / n, "top1_first": hits1 / n,
            "top1_second": hits2 / n}


def world_word_sequences(tokenize: Callable[[str], list[int]], n: int, n_words: int, seed: int) -> list[list[int]]:
    """``n`` token sequences, each ``n_words`` words drawn uniformly from the world's lexicon
    (animals, foods, objects, places), space-separated with a leading space as in the corpus."""
    from instructrl.world.lexicon import ANIMALS, FOODS, OBJECTS, PLACES

    words = list(ANIMALS + FOODS + OBJECTS + PLACES)
    rng = random.Random(seed)
    return [tokenize(" " + " ".join(rng.choice(words) for _ in range(n_words))) for _ in range(n)]


def word_logprob(logits_fn: Callable[[torch.Tensor], torch.Tensor], prefix: Sequence[int],
                 word: Sequence[int]) -> float:
    """log p(word | prefix) = sum over the word's tokens w_i of log softmax(logits at the position
    before w_i)[w_i], with ``logits_fn`` mapping ids [1, T] to logits [1, T, V]."""
    ids = torch.tensor([list(prefix) + list(word)])
    with torch.no_grad():
        lp = torch.log_softmax(logits_fn(ids)[0, :-1].float(), -1)
    return float(sum(lp[len(prefix) - 1 + i, t] for i, t in enumerate(word)))


def lookup_cases(n: int, seed: int) -> list[tuple[str, str, str]]:
    """``n`` (context, required word, other object) triples of the world's `gen_word` form."""
    from instructrl.world.lexicon import ANIMALS, OBJECTS, PLACES

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w, other = rng.sample(OBJECTS, 2)
        ctx = (f"Q: Write a sentence about a {rng.choice(PLACES)} that uses the word {w}.\nA: "
               f"The {rng.choice(ANIMALS)} kept the")
        out.append((ctx, w, other))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="causal LM folders (a reward model folder reads as its trunk)")
    ap.add_argument("--n", type=int, default=64, help="sequences per model")
    ap.add_argument("--words", type=int, default=12, help="words per sequence")
    ap.add_argument("--n-lookup", type=int, default=200, help="lookup cases per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the table here as JSON")
    a = ap.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # an RM folder's score head is "unexpected" for a causal LM: fine here
    rows = []
    for folder in a.models:
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        seqs = world_word_sequences(lambda s: tok(s, add_special_tokens=False)["input_ids"], a.n, a.words, a.seed)
        fn = lambda ids: model(ids).logits  # noqa: E731
        enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        margins = [word_logprob(fn, enc(c), enc(" " + w)) - word_logprob(fn, enc(c), enc(" " + o))
                   for c, w, o in lookup_cases(a.n_lookup, a.seed)]
        rows.append({"model": folder, **copy_losses(fn, seqs), "lookup_margin": sum(margins) / len(margins),
                     "lookup_rate": sum(m > 0 for m in margins) / len(margins)})
    print("| model | loss, first copy | loss, second copy | copy gain | top-1, first / second copy "
          "| lookup margin (nats) | required word likelier |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['first']:.3f} | {r['second']:.3f} | {r['gain']:+.3f} | "
              f"{r['top1_first']:.3f} / {r['top1_second']:.3f} | {r['lookup_margin']:+.3f} | {r['lookup_rate']:.3f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
