"""A static-KV-cache decode step for GPT-2, used by `rollout.sample` when `rollout.FAST` is on.

Same math as transformers' GPT-2 forward with a cache (same ops in the same order: LayerNorm,
Conv1D as ``addmm``, scaled-dot-product attention over the cached keys/values with the padding
mask, the model's own activation module, tied LM head), without the per-step costs of the
generic path: no cache concatenation (keys/values are written in place into buffers
preallocated for prompt + max_new_tokens), no attention-mask rebuild, no module dispatch or
output dataclasses. The prompt itself is still run through the model's own forward (prefill).

Only plain ``GPT2LMHeadModel`` with SDPA attention is handled; `supports` says whether a model
qualifies, and every other model (Llama, Qwen2, NeoX, LoRA-wrapped, ...) takes the generic path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


#: "sdpa" (default: bit-identical to transformers) or "matmul"; see `StaticGPT2Decoder._attend`.
DECODE_ATTENTION = "sdpa"


def supports(model) -> bool:
    """True for a plain GPT-2 LM (no adapters, no cross-attention, SDPA or eager attention)."""
    if type(model).__name__ != "GPT2LMHeadModel" or getattr(model, "peft_config", None):
        return False
    c = model.config
    return (not getattr(c, "add_cross_attention", False) and not getattr(c, "reorder_and_upcast_attn", False)
            and getattr(c, "_attn_implementation", "sdpa") in ("sdpa", None)
            and not model.training)


class StaticGPT2Decoder:
    """Holds the preallocated K/V buffers of one sampling call and runs one token per step."""

    def __init__(self, model, cache, prompt_mask: torch.Tensor, max_new_tokens: int):
        self.model = model
        tr = model.transformer
        c = model.config
        self.blocks = list(tr.h)
        self.wte, self.wpe, self.ln_f = tr.wte.weight, tr.wpe.weight, tr.ln_f
        self.lm_head = model.lm_head.weight
        self.H = c.n_head
        self.d = c.n_embd
        self.hd = self.d // self.H
        self.eps = c.layer_norm_epsilon
        B, P = prompt_mask.shape
        self.B, self.t = B, P
        total = P + max_new_tokens
        layers = cache.layers if hasattr(cache, "layers") else None
        self.k, self.v = [], []
        for i in range(len(self.blocks)):
            k0 = layers[i].keys if layers is not None else cache[i][0]
            v0 = layers[i].values if layers is not None else cache[i][1]
            # In the weights' dtype: a prefill under autocast (mixed precision) caches bf16 keys/values,
            # while these steps run in the weights' precision.
            k = k0.new_empty((B, self.H, total, self.hd), dtype=self.wte.dtype)
            v = v0.new_empty((B, self.H, total, self.hd), dtype=self.wte.dtype)
            k[:, :, :P] = k0
            v[:, :, :P] = v0
            self.k.append(k)
            self.v.append(v)
        self.mask = torch.ones((B, 1, 1, total), dtype=torch.bool, device=prompt_mask.device)
        self.mask[:, 0, 0, :P] = prompt_mask.bool()
        self.scaling = [b.attn.scaling for b in self.blocks]

    @staticmethod
    def _attend(q, k, v, mask, scale):
        """softmax(q k^T * scale, masked) v for one query per row. SDPA's CPU flash kernel is tuned
        for long queries; "matmul" (two batched matmuls) may be faster for one query but differs in rounding.
        The default, "sdpa", is the kernel transformers uses (bit-identical logits)."""
        if DECODE_ATTENTION == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        w = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).masked_fill_(~mask, float("-inf"))
        return torch.matmul(torch.softmax(w, dim=-1), v)

    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) for the next token, given the last token (B,) at positions (B,)."""
        B, d, H, hd, t = self.B, self.d, self.H, self.hd, self.t
        x = F.embedding(tok, self.wte) + F.embedding(pos, self.wpe)
        mask = self.mask[..., :t + 1]
        for i, blk in enumerate(self.blocks):
            h = F.layer_norm(x, (d,), blk.ln_1.weight, blk.ln_1.bias, self.eps)
            qkv = torch.addmm(blk.attn.c_attn.bias, h, blk.attn.c_attn.weight)
            q, k, v = qkv.view(B, 3, H, hd).unbind(1)
            self.k[i][:, :, t] = k
            self.v[i][:, :, t] = v
            a = self._attend(q.unsqueeze(2), self.k[i][:, :, :t + 1], self.v[i][:, :, :t + 1], mask, self.scaling[i])
            a = torch.addmm(blk.attn.c_proj.bias, a.reshape(B, d), blk.attn.c_proj.weight)
            x = a + x
            h = F.layer_norm(x, (d,), blk.ln_2.weight, blk.ln_2.bias, self.eps)
            m = blk.mlp.act(torch.addmm(blk.mlp.c_fc.bias, h, blk.mlp.c_fc.weight))
            x = x + torch.addmm(blk.mlp.c_proj.bias, m, blk.mlp.c_proj.weight)
        x = self.ln_f(x)
        self.t = t + 1
        return F.linear(x, self.lm_head)
