"""Grammar-constrained sampling with a KV cache, batched over variations.

This is our own loop rather than `model.generate()`: at this model size a step is dominated by
per-step Python overhead, and `generate()` adds its logits-processor, stopping-criteria and
cache bookkeeping to every step (bench/generate.py measures both side by side). The grammar
mask comes first, then temperature, top-k and top-p, as in `generate()`'s processor order.
`GrammarLogitsProcessor` offers the same mask to `generate()` for users who prefer it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from .tokenizer import Grammar


def warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on a batch of logits."""
    logits = logits / max(temperature, 1e-5)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keeps at least the top token
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def masks(grammars: list[Grammar], device: torch.device) -> torch.Tensor:
    return torch.stack([g.allowed() for g in grammars]).to(device)


@torch.inference_mode()
def sample(model, prompts: list[list[int]], style: int, grammars: list[Grammar],
           generator: torch.Generator, temperature: float, top_k: int, top_p: float,
           max_new: int, use_cache: bool = True) -> list[list[int]]:
    """Extend each prompt until its grammar reaches EOS; returns the new tokens of each.

    Prompts may differ in length: they are left-padded, with an attention mask and positions
    that start at each prompt's first real token."""
    device = next(model.parameters()).device
    n = len(prompts)
    width = max(len(p) for p in prompts)
    ids = torch.zeros((n, width), dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        attn[i, width - len(p):] = 1
    ids, attn = ids.to(device), attn.to(device)
    styles = torch.full((n,), style, dtype=torch.long, device=device)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    past, step_ids, step_pos = None, ids, positions
    out = [[] for _ in range(n)]
    for step in range(max_new):
        if use_cache:
            result = model(input_ids=step_ids, style_ids=styles, attention_mask=attn,
                           position_ids=step_pos, past_key_values=past, use_cache=True)
            past = result.past_key_values
        else:
            result = model(input_ids=ids, style_ids=styles, attention_mask=attn,
                           position_ids=positions, use_cache=False)
        logits = result.logits[:, -1].float()
        logits = logits.masked_fill(~masks(grammars, device), float("-inf"))
        probs = warp(logits, temperature, top_k, top_p).softmax(-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        done = True
        for i, g in enumerate(grammars):
            t = int(nxt[i])
            if g.state.phase != "DONE":
                out[i].append(t)
                g.advance(t)
            done &= g.state.phase == "DONE"
        if done:
            break
        step_ids = nxt
        step_pos = step_pos[:, -1:] + 1
        ids = torch.cat([ids, nxt], dim=1)
        attn = torch.cat([attn, attn.new_ones((n, 1))], dim=1)
        positions = torch.cat([positions, step_pos], dim=1)
        for g in grammars:  # leave room to close every bar before the context runs out
            g.budget = max_new - step - 1
    return out


class GrammarLogitsProcessor(LogitsProcessor):
    """The tokenizer's grammar as a `generate()` logits processor (one grammar per row)."""

    def __init__(self, grammars: list[Grammar], prompt_length: int):
        self.grammars = grammars
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        if input_ids.shape[1] > self.prompt_length:
            for g, t in zip(self.grammars, input_ids[:, -1].tolist()):
                if g.state.phase != "DONE":
                    g.advance(t)
        return scores.masked_fill(~masks(self.grammars, scores.device), float("-inf"))
