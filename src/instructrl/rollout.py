"""Batched sampling with a KV cache, and the log-probs / values / scores PPO needs.

Layout of an episode batch (the [NB] convention): prompts are LEFT padded to (B, P), responses
RIGHT padded to (B, R); the concatenation (B, P+R) is what every model sees, with
`attention_mask = cat(prompt_mask, response_mask)` and position ids `cumsum(mask) - 1`, so padding
never shifts positions. `response_mask` is True on real response tokens, including the EOS;
tokens after EOS are pad and count for nothing.

Temperature: the sampled token's log-prob is computed from logits / T, and `forward_logprobs`
divides by the same T, so at step 0 the PPO ratio is exactly 1 ([NB] "divide logits by T").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from instructrl import fast_decode
from instructrl.losses import entropy_from_logits
from instructrl.models import position_ids_from_mask

#: How a token is drawn at T > 0. "multinomial": `torch.multinomial` (the default: it draws one
#: exponential variate per vocabulary entry, 1 ms per decode step at batch 64 x 1024 tokens, a
#: quarter of a small model's step). "inverse_cdf": one uniform per row and a search in the
#: cumulative probabilities: the same distribution, ~20x cheaper, but other tokens at a given seed,
#: so every sampled result of a run changes (not the default for that reason; issue 18).
SAMPLING = "multinomial"


def draw(probs: torch.Tensor, generator: torch.Generator | None = None, method: str | None = None) -> torch.Tensor:
    """One token per row of `probs` (B, V) (rows sum to 1 up to rounding), by `method` (default
    SAMPLING). inverse_cdf scales the uniform by the row's total and takes the first index whose
    cumulative probability exceeds it, so a zero-probability token is never drawn."""
    method = method or SAMPLING
    if method == "multinomial":
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    if method != "inverse_cdf":
        raise ValueError(f"unknown sampling method {method!r} (multinomial or inverse_cdf)")
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=cdf.dtype) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total even after rounding
    return torch.searchsorted(cdf, u, right=True).squeeze(1)


#: Rollout optimizations (same math): a static preallocated KV cache and a fused GPT-2 decode
#: step (`fast_decode`), and a prefill that computes logits for the last prompt position only.
#: False runs the generic transformers path everywhere (the reference for equality tests).
FAST = True


@dataclass
class Samples:
    """A batch of sampled episodes (all tensors on the model's device)."""

    prompt_ids: torch.Tensor  # (B, P) left padded
    prompt_mask: torch.Tensor  # (B, P) bool
    response_ids: torch.Tensor  # (B, R) right padded with pad after EOS
    response_mask: torch.Tensor  # (B, R) bool, True on real tokens incl. EOS
    logprobs: torch.Tensor  # (B, R) log-prob of each sampled token at temperature T (0 on padding)
    ended: torch.Tensor  # (B,) bool: the response ended with EOS
    entropy: torch.Tensor | None = None  # (B, R) entropy of the sampling distribution (0 on padding)

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def encode_prompts(tokenizer, prompts: list, max_prompt_len: int | None = None, device="cpu"):
    """Tokenize prompts and LEFT pad them: (ids (B,P) long, mask (B,P) bool).

    A prompt is a text, tokenized as it is, or a list of token ids (a prompt rendered and fitted
    by instructrl.data.render, which never cuts into a chat template's header). A prompt longer
    than `max_prompt_len` keeps its last tokens (the end of a prompt, where the question and the
    "A:" cue are, matters most); callers that must refuse instead check first.
    """
    seqs = [list(p) if not isinstance(p, str) else tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_prompt_len is not None:
        seqs = [s[-max_prompt_len:] for s in seqs]
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), P), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s:
            ids[i, P - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, P - len(s):] = True
    return ids.to(device), mask.to(device)


@torch.no_grad()
def sample(model, prompt_ids, prompt_mask, max_new_tokens: int, eos_token_id: int, pad_token_id: int,
           temperature: float = 1.0, generator: torch.Generator | None = None) -> Samples:
    """Sample responses with a KV cache. temperature 0 means greedy.

    Stops early once every row has produced EOS. Returns `Samples` with per-token log-probs of the
    sampled tokens under logits / T (for T = 0, under the raw logits) and the entropy of that
    distribution at each step (what PPO logs; with `reuse_sample_logprobs` both replace a forward).
    """
    B = prompt_ids.shape[0]
    device = prompt_ids.device
    attn = prompt_mask.long()
    pos = position_ids_from_mask(attn)
    cache = DynamicCache()
    fast = FAST and fast_decode.supports(model)
    extra = {"logits_to_keep": 1} if fast else {}
    out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=pos, cache=cache, use_cache=True, **extra)
    next_logits = out.logits[:, -1, :].float()
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None) or cache
    next_pos = pos[:, -1] + 1
    decoder = fast_decode.StaticGPT2Decoder(model, cache, prompt_mask, max_new_tokens) if fast else None
    if decoder is not None:
        del cache, out

    tokens, lps, ents, masks = [], [], [], []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        scaled = next_logits / temperature if temperature > 0 else next_logits
        logp = torch.log_softmax(scaled, dim=-1)
        probs = logp.exp()
        if temperature > 0:
            tok = draw(probs, generator)
        else:
            tok = logp.argmax(-1)
        lp = logp.gather(1, tok[:, None]).squeeze(1)
        # H = -sum_v p_v log p_v (= losses.entropy_from_logits of the scaled logits); p log p is 0 where p is.
        ent = -torch.where(probs > 0, probs * logp, torch.zeros_like(logp)).sum(-1)
        real = ~done
        tok = torch.where(real, tok, torch.full_like(tok, pad_token_id))
        tokens.append(tok)
        lps.append(torch.where(real, lp, torch.zeros_like(lp)))
        ents.append(torch.where(real, ent, torch.zeros_like(ent)))
        masks.append(real)
        done = done | (tok == eos_token_id)
        if bool(done.all()):
            break
        if decoder is not None:
            next_logits = decoder.step(tok, next_pos).float()
            next_pos = next_pos + 1
            continue
        attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=device)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None], cache=cache, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None) or cache
        next_logits = out.logits[:, -1, :].float()
        next_pos = next_pos + 1

    response_ids = torch.stack(tokens, 1)
    response_mask = torch.stack(masks, 1)
    ended = (response_ids == eos_token_id).any(1)
    return Samples(prompt_ids, prompt_mask, response_ids, response_mask, torch.stack(lps, 1), ended,
                   torch.stack(ents, 1))


def split_generators(generator: torch.Generator | None, n: int = 2) -> list[torch.Generator]:
    """``n`` generators seeded by draws from ``generator`` (the global RNG when None): independent
    streams for parts of a batch sampled at once in threads (PPOConfig.side_by_side_sampling), each
    deterministic at a fixed seed, which one generator shared by two threads would not be."""
    seeds = torch.randint(0, 2 ** 62, (n,), generator=generator)
    device = generator.device if generator is not None else "cpu"
    return [torch.Generator(device=device).manual_seed(int(x)) for x in seeds]


def concat_samples(parts: list[Samples], pad_token_id: int) -> Samples:
    """The rows of several `Samples` of the same prompt width as one batch, in order; responses
    right padded to the longest (pad id, mask False, log-prob and entropy 0 where added)."""
    R = max(p.response_ids.shape[1] for p in parts)

    def cat(name, fill):
        ts = [getattr(p, name) for p in parts]
        return torch.cat([torch.nn.functional.pad(t, (0, R - t.shape[1]), value=fill) for t in ts])

    return Samples(torch.cat([p.prompt_ids for p in parts]), torch.cat([p.prompt_mask for p in parts]),
                   cat("response_ids", pad_token_id), cat("response_mask", False), cat("logprobs", 0.0),
                   torch.cat([p.ended for p in parts]), cat("entropy", 0.0))


#: A forward whose full logits (batch x sequence x vocabulary) would hold more elements than this
#: (256 MiB in fp32) computes logits only at the response positions (``logits_to_keep``), and,
#: without gradients, in chunks of rows: a real model's 50k-token vocabulary times a long chat
#: prompt made these the largest tensors of a PPO run. Smaller forwards (the world's) take the
#: plain path, so their numbers are exactly what they were.
LOGITS_BUDGET = 2 ** 26


def _vocab_size(model) -> int:
    for m in (model, getattr(model, "module", None), getattr(model, "adapter_view_of", None)):
        v = getattr(getattr(m, "config", None), "vocab_size", None)
        if isinstance(v, int):
            return v
    return 0


def _logits(model, input_ids, attention_mask, position_ids, keep: int | None):
    """Logits of the last `keep` positions (all when None); models without `logits_to_keep` slice."""
    if keep is None:
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    try:
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     logits_to_keep=keep).logits
    except TypeError as e:
        if "logits_to_keep" not in str(e):
            raise
        return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits[:, -keep:]


def forward_logprobs(model, input_ids, attention_mask, n_prompt: int, temperature: float = 1.0,
                     return_logits: bool = False, return_entropy: bool = False):
    """Log-probs (B, R) of the response tokens input_ids[:, n_prompt:] under logits / T.

    Logits at position t predict token t+1, so the response's predictors are positions
    n_prompt-1 .. T-2. `return_entropy`: also the per-token entropy (B, R) of the policy there
    (losses.entropy_from_logits); `return_logits`: also the logits (B, R, V). Beyond
    LOGITS_BUDGET, logits are computed at those positions only, and without gradients in row
    chunks (then `return_logits` is refused: they are what must not be held at once).
    """
    B, T = input_ids.shape
    R = T - n_prompt
    pos = position_ids_from_mask(attention_mask)
    labels = input_ids[:, n_prompt:]
    big = B * T * _vocab_size(model) > LOGITS_BUDGET
    rows = B
    if big and not torch.is_grad_enabled():
        if return_logits:
            raise ValueError("forward_logprobs: return_logits on a forward beyond LOGITS_BUDGET; use return_entropy")
        rows = max(1, LOGITS_BUDGET // max(1, (R + 1) * _vocab_size(model)))
    lps, ents, kept = [], [], []
    for i in range(0, B, rows):
        sl = slice(i, i + rows)
        if big:
            logits = _logits(model, input_ids[sl], attention_mask[sl], pos[sl], R + 1)[:, :-1].float()
        else:
            logits = _logits(model, input_ids[sl], attention_mask[sl], pos[sl], None)[:, n_prompt - 1:-1, :].float()
        if temperature > 0 and temperature != 1.0:
            logits = logits / temperature
        lps.append(torch.log_softmax(logits, dim=-1).gather(2, labels[sl].unsqueeze(-1)).squeeze(-1))
        if return_entropy:
            ents.append(entropy_from_logits(logits))
        if return_logits:
            kept.append(logits)
        del logits
    logprobs = lps[0] if len(lps) == 1 else torch.cat(lps)
    out = (logprobs,)
    if return_logits:
        out += (kept[0] if len(kept) == 1 else torch.cat(kept),)
    if return_entropy:
        out += (ents[0] if len(ents) == 1 else torch.cat(ents),)
    return out if len(out) > 1 else logprobs


def decode_responses(tokenizer, samples: Samples) -> list[str]:
    """Response texts without the EOS and padding."""
    out = []
    eos = tokenizer.eos_token_id
    for ids, m in zip(samples.response_ids.tolist(), samples.response_mask.tolist()):
        ids = [t for t, keep in zip(ids, m) if keep and t != eos]
        out.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out


@torch.no_grad()
def prompt_room(model, max_new_tokens: int) -> int | None:
    """How many prompt tokens fit beside ``max_new_tokens`` in the model's context (None: unknown)."""
    cfg = getattr(model, "config", None)
    n_pos = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    return max(1, n_pos - max_new_tokens) if n_pos else None


def generate(model, tokenizer, prompts: list, max_new_tokens: int = 48, temperature: float = 1.0,
             batch_size: int = 64, seed: int = 0, max_prompt_len: int | None = None, progress=None,
             return_ended: bool = False):
    """Sample one response per prompt (texts, EOS stripped). Deterministic for a given seed.

    `prompts`: texts, or token-id lists (rendered by instructrl.data.render, which fits a prompt
    without cutting into a chat template's header). ``max_prompt_len`` (default: the model's context
    minus ``max_new_tokens``) keeps the end of a longer prompt, so prompt and response always fit
    the model's positions. `return_ended`: also return, per response, whether it ended with EOS
    (else it hit max_new_tokens).
    """
    device = next(model.parameters()).device
    if max_prompt_len is None:
        max_prompt_len = prompt_room(model, max_new_tokens)
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    texts: list[str] = []
    ended: list[bool] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(tokenizer, prompts[i:i + batch_size], max_prompt_len, device)
        s = sample(model, ids, mask, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id, temperature, g)
        texts.extend(decode_responses(tokenizer, s))
        ended.extend(s.ended.tolist())
        if progress is not None:
            progress(len(texts))
    model.train(was_training)
    return (texts, ended) if return_ended else texts
