"""Grammar-constrained sampling with a KV cache, batched over variations.

This is our own loop rather than `model.generate()`: at this model size a step is dominated by
per-step Python overhead, not arithmetic. `generate()` adds its processor, stopping-criteria and
cache bookkeeping to every step, and even a plain loop over the Hugging Face forward with its
`DynamicCache` spends most of a step in module dispatch and mask building. `FastDecoder` runs
the same weights as straight tensor calls with a preallocated cache; bench/generate.py measures
it against the Hugging Face cached loop, `generate()` and the naive no-cache loop, and
tests/test_generate.py checks that it picks the same tokens as the naive loop. On CPU the
default engine is `onnx_decoder.OnnxDecoder` instead, which runs the step and the draw below
as one ONNX Runtime graph (`_onnx_draw`); the same tests hold it to the same tokens. The grammar
mask comes first, then temperature, top-k and top-p, as in `generate()`'s processor order.
`GrammarLogitsProcessor` offers the grammar's mask to `generate()` (bench/generate.py times
it). It does not know how many tokens `generate()` may still add, so it never closes bars
early as `sample` does near the end of the context: give `max_new_tokens` room for the bars
asked, or a groove can be cut off before its last bar.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor

from .tokenizer import Grammar

WEIGHTS = ("auto", "fp16", "own")  # FastDecoder's matrices ($DRUMGEN_WEIGHTS); see its docstring
#: the cached decoders `sample` can step with ($DRUMGEN_ENGINE): "onnx" is onnx_decoder's
#: OnnxDecoder, "fast" FastDecoder; "auto" is onnx on a CPU where onnxruntime is installed
DECODERS = ("auto", "onnx", "fast")
NUCLEUS_CANDIDATES = 64  # top-p looks at this many best tokens first; see `warp`


def warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on a batch of logits.

    Top-p needs the tokens in order of probability. Sorting the whole vocabulary every step
    cost more than the rest of the sampling together, so the best NUCLEUS_CANDIDATES of each
    row come from `topk`; only the rows where they hold less than `top_p` of the mass (flat
    rows: a hit's many velocity and timing bins) are sorted in full. Either way the kept set
    is the same: the smallest prefix, in order of probability, whose mass reaches top_p."""
    if temperature != 1:  # the shipped default: no op at all
        logits = logits / max(temperature, 1e-5)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        probs = logits.softmax(-1)
        best, order = torch.topk(probs, min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
        keep = _nucleus(best, order, top_p, probs.shape[-1])
        short = best.sum(-1) < top_p
        if bool(short.any()):
            rows = short.nonzero()[:, 0]
            keep[rows] = _nucleus(*torch.sort(probs[rows], descending=True, dim=-1), top_p,
                                  probs.shape[-1])
        logits = logits.masked_fill(~keep, float("-inf"))
    return logits


def _nucleus(best: torch.Tensor, order: torch.Tensor, top_p: float, size: int) -> torch.Tensor:
    """The kept-token mask from probabilities in descending order and their token ids."""
    drop = best.cumsum(-1) - best >= top_p  # keeps at least the top token
    keep = torch.zeros((best.shape[0], size), dtype=torch.bool, device=best.device)
    return keep.scatter(-1, order, ~drop)


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row from `probs` (rows sum to 1), by inverting the cumulative
    distribution with one uniform number per row. Equivalent to `torch.multinomial(probs, 1)`,
    whose CPU kernel took 0.2 ms a step at batch 8, more than the model's attention."""
    cdf = probs.cumsum(-1)
    u = uniforms(probs.shape[0], generator, probs.device)
    return (cdf < u * cdf[:, -1:]).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)


def uniforms(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`draw`'s random numbers, one per row, in (0, 1], so that the first index whose cdf
    reaches u * total has nonzero probability; every engine draws them here, so they all
    consume the random stream alike."""
    return 1 - torch.rand((n, 1), generator=generator, device=device)


class FastDecoder:
    """Inference-only forward over a `DrumGPT`'s own weights with a preallocated KV cache.

    `weights`: "own" multiplies by the model's own matrices; "fp16" by fp16 copies of them,
    packed once per model for fbgemm's fp16 linear (activations and sums stay fp32: the
    weights are rounded to fp16, nothing else is). A decoding step reads every matrix once
    and does little arithmetic with it, so half the bytes made a batch-1 step about 30%
    faster here (bench/generate.py measures both). "auto" is fp16 on CPU where this torch
    has the op, else "own" (on CUDA the model itself is fp16)."""

    def __init__(self, model, weights: str = "auto"):
        t = model.transformer
        self.model, self.t = model, t
        self.heads = model.config.n_head
        self.weights = resolve_weights(weights, t.wte.weight)
        # plain tensors, looked up once: nn.Module attribute access was a measurable share of
        # a decoding step
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        if self.weights == "fp16":
            linears, self.head, self.wte = _half_packed(model)
        else:  # GPT-2's Conv1D is x @ W + b
            linears = [[_addmm(layer.bias, layer.weight) for layer in _step_layers(b)]
                       for b in t.h]
            self.head = _matmul(model.lm_head.weight.T)
        self.blocks = [(b.ln_1.weight, b.ln_1.bias, b.ln_2.weight, b.ln_2.bias, *lin)
                       for b, lin in zip(t.h, linears, strict=True)]
        self.eps = model.config.layer_norm_epsilon
        self.width = t.wte.weight.shape[1]
        self.ln_f = (t.ln_f.weight, t.ln_f.bias, t.ln_f.eps)

    def start(self, ids: torch.Tensor, attn: torch.Tensor, style_ids: torch.Tensor,
              max_len: int, style_strength: float = 1.0) -> torch.Tensor:
        """Run the left-padded prompt; returns the last position's logits."""
        n, width = ids.shape
        hd = self.t.wte.weight.shape[1] // self.heads
        dtype, device = self.t.wte.weight.dtype, ids.device
        # empty, not zeros: a position is written before any step reads it
        self.cache = [torch.empty((2, n, self.heads, max_len, hd), dtype=dtype, device=device)
                      for _ in self.blocks]
        self.valid = torch.zeros((n, max_len), dtype=torch.bool, device=device)
        self.valid[:, :width] = attn.bool()
        self.pos = (attn.cumsum(-1) - 1).clamp(min=0)
        self.style = self.model.style_vector(style_ids, style_strength)[:, None, :].to(
            self.wte.dtype)
        self.length = 0
        # Masks only when prompts are padded: SDPA's unmasked path is the fast one on CPU.
        self.padded = bool((attn == 0).any())
        mask = None
        if self.padded:
            causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
            mask = causal[None, None] & self.valid[:, None, None, :width]
            mask |= torch.eye(width, dtype=torch.bool, device=device)[None, None]  # pad rows
        return self._forward(ids, self.pos, mask, causal=not self.padded)

    def keep(self, rows: torch.Tensor) -> None:
        """Drop finished rows: later steps compute only `rows` (indices into the live rows)."""
        used = self.length  # copy only the filled part of the cache, not all of max_len
        self.cache = [self._take(c, rows, used) for c in self.cache]
        self.valid, self.pos, self.style = self.valid[rows], self.pos[rows], self.style[rows]

    @staticmethod
    def _take(cache: torch.Tensor, rows: torch.Tensor, used: int) -> torch.Tensor:
        out = cache.new_empty((cache.shape[0], len(rows), *cache.shape[2:]))
        out[:, :, :, :used] = cache[:, rows, :, :used]
        return out

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per live row; returns the logits after it."""
        self.pos = self.pos[:, -1:] + 1
        self.valid[:, self.length] = True
        mask = self.valid[:, None, None, : self.length + 1] if self.padded else None
        return self._forward(ids, self.pos, mask)

    def _forward(self, ids, pos, mask, causal: bool = False) -> torch.Tensor:
        # torch.* rather than the nn.functional wrappers and modules: each wrapper's checks
        # cost microseconds, and a step makes about 70 calls
        n, width, c, eps = ids.shape[0], ids.shape[1], (self.width,), self.eps
        x = (F.embedding(ids, self.wte) + F.embedding(pos, self.wpe) + self.style).view(
            n * width, -1)
        start, end = self.length, self.length + width
        for block, cache in zip(self.blocks, self.cache, strict=True):
            ln1_w, ln1_b, ln2_w, ln2_b, qkv_in, out, fc, proj = block
            h = torch.layer_norm(x, c, ln1_w, ln1_b, eps)
            qkv = qkv_in(h).view(n, width, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            cache[:, :, :, start:end] = qkv[1:]  # keys and values in one copy
            k, v = cache[:, :, :, :end]
            a = F.scaled_dot_product_attention(qkv[0], k, v, attn_mask=mask,
                                               is_causal=causal and width > 1)
            x = x + out(a.transpose(1, 2).reshape(n * width, -1))
            x = x + proj(F.gelu(fc(torch.layer_norm(x, c, ln2_w, ln2_b, eps)),
                                approximate="tanh"))
        self.length = end
        last = x.view(n, width, -1)[:, -1]
        return self.head(torch.layer_norm(last, c, *self.ln_f))


def _addmm(bias: torch.Tensor, weight: torch.Tensor):
    return lambda x: torch.addmm(bias, x, weight)


def _matmul(weight: torch.Tensor):
    return lambda x: x @ weight


def _half_linear(packed):
    op = torch.ops.quantized.linear_dynamic_fp16  # looked up once: torch.ops is slow to walk
    return lambda x: op(x, packed)


@functools.cache
def half_weights_available() -> bool:
    """Whether this torch has fbgemm's fp16-weight linear (x86 CPU builds do)."""
    try:
        torch.ops.quantized.linear_prepack_fp16(torch.zeros(1, 1), None)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return True


def resolve_weights(weights: str, model_weight: torch.Tensor) -> str:
    """"fp16" or "own" for a `weights` setting and a model (one of its weight tensors)."""
    can = (model_weight.device.type == "cpu" and model_weight.dtype == torch.float32
           and half_weights_available())
    return _choose("weights", weights, WEIGHTS, can, "fp16", "own",
                   "an fp32 model on the CPU and fbgemm's fp16 linear, which this torch lacks")


def resolve_engine(engine: str, model_weight: torch.Tensor) -> str:
    """"onnx" or "fast" for a `DECODERS` setting and a model (one of its weight tensors)."""
    from . import onnx_decoder
    can = model_weight.device.type == "cpu" and onnx_decoder.available()
    return _choose("engine", engine, DECODERS, can, "onnx", "fast",
                   "onnxruntime and onnx installed and the model on the CPU")


def _choose(name: str, value: str, choices: tuple, can: bool, best: str, plain: str,
            needs: str) -> str:
    """A setting among `choices`: "auto" is `best` where the machine `can`, else `plain`;
    asking for `best` where it cannot is an error that says what it `needs`."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    if value == best and not can:
        raise ValueError(f"{name}={best!r} needs {needs}; use {name}={plain!r}")
    if value == "auto":
        return best if can else plain
    return value


def _step_layers(block) -> tuple:
    return block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj


def _half_packed(model) -> tuple[list, object, torch.Tensor]:
    """fbgemm-packed fp16 copies of the step's matrices, the head and the token embedding
    rounded like it (they are one tied matrix), made once per model (packing took 27 ms, a
    tenth of a groove) and remade when any weight changes in place."""
    t = model.transformer
    layers = [_step_layers(b) for b in t.h]
    tensors = [w for group in layers for layer in group for w in (layer.weight, layer.bias)]
    tensors.append(t.wte.weight)
    key = tuple((w.data_ptr(), w._version) for w in tensors)
    cached = model.__dict__.get("_drumgen_half_packed")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            pack = torch.ops.quantized.linear_prepack_fp16
            wte = t.wte.weight.detach().half().float()
            packed = ([[_half_linear(pack(layer.weight.detach().T.contiguous(),
                                          layer.bias.detach())) for layer in group]
                       for group in layers], _half_linear(pack(wte, None)), wte)
        cached = model.__dict__["_drumgen_half_packed"] = (key, packed)
    return cached[1]


def half_rounded(model):
    """A copy of `model` whose matrices are rounded to fp16 exactly as FastDecoder's "fp16"
    weights round them (the block matrices and the tied embedding and head): the reference
    engines on it compute what the fp16 decoder computes."""
    import copy
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for block in twin.transformer.h:
            for layer in _step_layers(block):
                layer.weight.copy_(layer.weight.half().float())
        twin.transformer.wte.weight.copy_(twin.transformer.wte.weight.half().float())
    return twin


def masks(grammars: list[Grammar], device: torch.device) -> torch.Tensor:
    return torch.stack([g.allowed() for g in grammars]).to(device)


@torch.inference_mode()
def sample(model, prompts: list[list[int]], style: int, grammars: list[Grammar],
           generator: torch.Generator, temperature: float, top_k: int, top_p: float,
           max_new: int, engine: str = "fast", style_strength: float = 1.0,
           observe=None, weights: str = "auto",
           bias: torch.Tensor | None = None) -> list[list[int]]:
    """Extend each prompt until its grammar reaches EOS; returns the new tokens of each.

    Prompts may differ in length: they are left-padded, with an attention mask and positions
    that start at each prompt's first real token. `engine` is "fast" (`FastDecoder`), "onnx"
    (`onnx_decoder.OnnxDecoder`), "auto" (see `resolve_engine`), "hf" (the Hugging Face
    forward with its KV cache) or "naive" (the whole sequence every step); `weights` is
    FastDecoder's (the onnx engine decodes with the model's own fp32 matrices).
    `style_strength`: see `DrumGPT.style_vector`. `observe(row, token, logits)`, if given, is
    called for every token sampled, with that row's grammar-masked logits before temperature,
    the distribution sampled from (with `bias` added where it applies): Groove reads its
    expectations from them.
    `bias` (`shares.bias_table`: per step of the bar, a row over the vocabulary) adds the row
    of its current step to the logits of each row inside a beat bar, not a fill (a bar opened
    by FILL), before the grammar's mask. It is one value for all of a drum's velocity and
    timing tokens at a step, so within a hit it changes nothing Groove reads."""
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
    if engine in DECODERS:
        engine = resolve_engine(engine, model.transformer.wte.weight)
    elif engine not in ("hf", "naive"):
        raise ValueError(f"engine must be auto, onnx, fast, hf or naive; got {engine!r}")
    if engine == "onnx":
        from .onnx_decoder import OnnxDecoder
        fast = OnnxDecoder(model)
    else:
        fast = FastDecoder(model, weights) if engine == "fast" else None
    vocab = model.config.vocab_size  # a transformers config's attribute lookup is slow
    out = [[] for _ in range(n)]
    if bias is not None:  # per row, 1 in a beat bar, 0 in a fill; every pass opens a bar
        # first (the prompt's bars are closed), so the sampled BAR or FILL sets it before any
        # POS or HIT token can be drawn
        beat, tok = torch.ones((n, 1), device=device), grammars[0].tok
        bias = bias.to(device)
    for step in range(max_new):
        nxt = None
        if fast is not None and step == 0:
            logits = fast.start(ids, attn, styles, width + max_new, style_strength).float()
            live = list(range(n))
        elif fast is not None:
            # finished rows stop costing compute; they still draw (PAD) in `draw` below,
            # so every engine consumes the random stream alike
            now = [i for i in live if grammars[i].state.phase != "DONE"]
            if len(now) < len(live):
                fast.keep(torch.tensor([live.index(i) for i in now], device=device))
                live = now
            rows = None if len(live) == n else torch.tensor(live, device=device)
            if engine == "onnx":  # the step and the draw in one call, as below
                rows_bias = None if bias is None else beat * bias[_bias_steps(grammars, device)]
                nxt, logits = _onnx_draw(fast, step_ids, rows, grammars, generator, rows_bias,
                                         temperature, top_k, top_p, vocab, observe is not None)
            elif rows is None:
                logits = fast.step(step_ids).float()
            else:
                logits = torch.zeros((n, vocab), device=device)
                logits[rows] = fast.step(step_ids[rows]).float()
        elif engine == "hf":
            # `cache`: transformers 5.24 renamed `past_key_values` (removed in 5.40)
            result = model(input_ids=step_ids, style_ids=styles, attention_mask=attn,
                           position_ids=step_pos, cache=past, use_cache=True,
                           style_strength=style_strength)
            past = result.cache
            logits = result.logits[:, -1].float()
        else:
            logits = model(input_ids=ids, style_ids=styles, attention_mask=attn,
                           position_ids=positions, use_cache=False,
                           style_strength=style_strength).logits[:, -1].float()
        if nxt is None:
            if bias is not None:
                logits = logits + beat * bias[_bias_steps(grammars, device)]
            logits = logits.masked_fill(~masks(grammars, device), float("-inf"))
            probs = warp(logits, temperature, top_k, top_p).softmax(-1)
            nxt = draw(probs, generator)
        done = True
        for i, (g, t) in enumerate(zip(grammars, nxt[:, 0].tolist(), strict=True)):
            if g.state.phase != "DONE":
                out[i].append(t)
                g.advance(t)
                if bias is not None and t in (tok.bar, tok.fill):
                    beat[i, 0] = float(t == tok.bar)
                if observe is not None:
                    observe(i, t, logits[i])
            done &= g.state.phase == "DONE"
        if done:
            break
        step_ids = nxt
        if fast is None:  # the reference engines re-read the sequence; FastDecoder has its cache
            step_pos = step_pos[:, -1:] + 1
            ids = torch.cat([ids, nxt], dim=1)
            attn = torch.cat([attn, attn.new_ones((n, 1))], dim=1)
            positions = torch.cat([positions, step_pos], dim=1)
        for g in grammars:  # leave room to close every bar before the context runs out
            g.budget = max_new - step - 1
    return out


def _bias_steps(grammars: list[Grammar], device: torch.device) -> torch.Tensor:
    """Each row's step of the bar, the row of the bias table it plays with."""
    return torch.tensor([max(g.state.pos, 0) for g in grammars], device=device)


def _onnx_draw(decoder, step_ids: torch.Tensor, rows: torch.Tensor | None,
               grammars: list[Grammar], generator: torch.Generator, bias: torch.Tensor | None,
               temperature: float, top_k: int, top_p: float, vocab: int,
               observed: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The onnx engine's step and draw in one call, for the `rows` still live (None: all).
    The uniform numbers are drawn for every row, as `draw` draws them, so the random stream
    is the same as the other engines'; a finished row gets PAD, as `draw` gives it. Returns
    the tokens and, if `observed`, the masked logits of every row (zeros for finished ones)."""
    n = len(grammars)
    u = uniforms(n, generator, step_ids.device)
    allowed = masks(grammars, u.device)
    if rows is None:
        token, masked = decoder.sample(step_ids, allowed, bias, u, temperature, top_k, top_p)
        return token, masked if observed else None
    token, masked = decoder.sample(step_ids[rows], allowed[rows],
                                   None if bias is None else bias[rows], u[rows], temperature,
                                   top_k, top_p)
    nxt = torch.full((n, 1), grammars[0].tok.pad, dtype=torch.long)
    nxt[rows] = token
    if not observed:
        return nxt, None
    logits = torch.zeros((n, vocab))
    logits[rows] = masked
    return nxt, logits


class GrammarLogitsProcessor(LogitsProcessor):
    """The tokenizer's grammar as a `generate()` logits processor (one grammar per row)."""

    def __init__(self, grammars: list[Grammar], prompt_length: int):
        self.grammars = grammars
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        if input_ids.shape[1] > self.prompt_length:
            for g, t in zip(self.grammars, input_ids[:, -1].tolist(), strict=True):
                if g.state.phase != "DONE":
                    g.advance(t)
        return scores.masked_fill(~masks(self.grammars, scores.device), float("-inf"))
