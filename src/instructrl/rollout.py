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

from instructrl import fast_decode
from instructrl.models import position_ids_from_mask

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

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def encode_prompts(tokenizer, prompts: list[str], max_prompt_len: int | None = None, device="cpu"):
    """Tokenize prompts and LEFT pad them: (ids (B,P) long, mask (B,P) bool).

    A prompt longer than `max_prompt_len` keeps its last tokens (the end of a prompt, where the
    question and the "A:" cue are, matters most); callers that must refuse instead check first.
    """
    seqs = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
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
    sampled tokens under logits / T (for T = 0, under the raw logits).
    """
    from transformers import DynamicCache

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

    tokens, lps, masks = [], [], []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        scaled = next_logits / temperature if temperature > 0 else next_logits
        logp = torch.log_softmax(scaled, dim=-1)
        if temperature > 0:
            tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
        else:
            tok = logp.argmax(-1)
        lp = logp.gather(1, tok[:, None]).squeeze(1)
        real = ~done
        tok = torch.where(real, tok, torch.full_like(tok, pad_token_id))
        tokens.append(tok)
        lps.append(torch.where(real, lp, torch.zeros_like(lp)))
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
    return Samples(prompt_ids, prompt_mask, response_ids, response_mask, torch.stack(lps, 1), ended)


def forward_logprobs(model, input_ids, attention_mask, n_prompt: int, temperature: float = 1.0,
                     return_logits: bool = False):
    """Log-probs (B, R) of the response tokens input_ids[:, n_prompt:] under logits / T.

    Logits at position t predict token t+1, so the response's predictors are positions
    n_prompt-1 .. T-2.
    """
    pos = position_ids_from_mask(attention_mask)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos).logits
    logits = logits[:, n_prompt - 1:-1, :].float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    labels = input_ids[:, n_prompt:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(2, labels.unsqueeze(-1)).squeeze(-1)
    return (logprobs, logits) if return_logits else logprobs


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


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 48, temperature: float = 1.0,
             batch_size: int = 64, seed: int = 0, max_prompt_len: int | None = None, progress=None) -> list[str]:
    """Sample one response per prompt (texts, EOS stripped). Deterministic for a given seed.

    ``max_prompt_len`` (default: the model's context minus ``max_new_tokens``) keeps the end of a
    longer prompt, so prompt and response always fit the model's positions."""
    device = next(model.parameters()).device
    if max_prompt_len is None:
        max_prompt_len = prompt_room(model, max_new_tokens)
    was_training = model.training
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed)
    texts: list[str] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = encode_prompts(tokenizer, prompts[i:i + batch_size], max_prompt_len, device)
        s = sample(model, ids, mask, max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id, temperature, g)
        texts.extend(decode_responses(tokenizer, s))
        if progress is not None:
            progress(len(texts))
    model.train(was_training)
    return texts
