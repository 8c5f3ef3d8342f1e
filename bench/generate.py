"""Generation benchmark: latency, tokens/s, cache speed-ups and memory, side by side in one run.

    python bench/generate.py [--model models/drumgen-small] [--repeats 15] [--no-engines]

Prints p50/p90 latency of a 4-bar groove, 8 variations and 16 bars through the public API,
each against its target (issue 15) and as a multiple of its arithmetic floor: the model's
FLOPs for the tokens it made, at this core's own fp32 matrix-product speed (measured in the
run, on one thread), and of its memory floor: reading the weight matrices once per decoding
step, at the speed this core streams them (measured in the run). Then the
decoding engines on the same model over a 512-token sequence: the naive loop (whole sequence
every step, the original design), the Hugging Face forward with its KV cache, `generate()` with
our grammar processor, and drumgen's FastDecoder. Figures vary with machine load: compare the
ratios within one run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drumgen.generate import Generator, Request, on_inference_thread  # noqa: E402
from drumgen.sampling import GrammarLogitsProcessor, sample  # noqa: E402
from drumgen.tokenizer import Grammar  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency(gen: Generator, request: Request, repeats: int) -> tuple[list[float], int, int]:
    """Times of `repeats` requests, the tokens they made and their decoding steps (a batch of
    variations takes as many steps as its longest)."""
    times, tokens, steps = [], 0, 0
    for i in range(repeats):
        request.seed = i
        start = time.perf_counter()
        grooves = gen.generate(request)
        times.append(time.perf_counter() - start)
        tokens += sum(len(g.tokens) - 3 for g in grooves)
        steps += max(len(g.tokens) - 3 for g in grooves)
    return times, tokens, steps


def step_matrices(model) -> list[torch.Tensor]:
    """The matrices one decoding step multiplies by, whatever the batch: each block's four and
    the output head (embeddings are lookups). The head is named on its own: it is tied to the
    token embedding, so `named_parameters` lists it only once, under `wte`."""
    blocks = [p.detach() for n, p in model.transformer.h.named_parameters()
              if n.endswith("weight") and p.dim() == 2]
    return blocks + [model.lm_head.weight.detach()]


def flops_per_token(model) -> int:
    """Multiply-adds x 2 of one decoding step at batch 1, context aside."""
    return 2 * sum(w.numel() for w in step_matrices(model))


def matmul_flops_per_s() -> float:
    """This core's fp32 matrix-product speed on one thread (best of 5 512^3 products)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * 512 ** 3 / best


def weight_bytes_per_step(model) -> int:
    """Bytes of `step_matrices`, which every decoding step reads whole."""
    return sum(w.numel() * w.element_size() for w in step_matrices(model))


def weight_stream_bytes_per_s(model) -> float:
    """How fast this core reads `step_matrices` in a tight loop summing each one (best of 5).
    An optimistic rate for decoding, whose other work between steps evicts them."""
    weights = step_matrices(model)
    size = sum(w.numel() * w.element_size() for w in weights)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            for w in weights:
                w.sum()
        best = min(best, (time.perf_counter() - start) / 10)
    return size / best


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def engine_run(gen: Generator, engine: str, n: int, new: int, seed: int) -> float:
    tok = gen.tokenizer
    prompt = [tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"]]
    grammars = []
    for _ in range(n):
        g = Grammar(tok, 64, [False] * 64)  # never ends early within `new` tokens
        for t in prompt:
            g.advance(t)
        grammars.append(g)
    start = time.perf_counter()
    if engine == "generate()":
        model = gen.bundle.model
        ids = torch.tensor([prompt] * n)
        model.generate(input_ids=ids, style_ids=torch.zeros(n, dtype=torch.long),
                       attention_mask=torch.ones_like(ids), max_new_tokens=new,
                       min_new_tokens=new, do_sample=True, temperature=1.0, top_k=0,
                       top_p=0.95, logits_processor=[GrammarLogitsProcessor(grammars,
                                                                            len(prompt))],
                       pad_token_id=tok.pad, eos_token_id=None)
    else:
        sample(gen.bundle.model, [prompt] * n, 0, grammars, torch.Generator().manual_seed(seed),
               1.0, 0, 0.95, new, engine=engine)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-engines", action="store_true",
                        help="the requests only (the naive loop at batch 8 takes minutes)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:  # OpenMP's thread count is per calling thread: set it where the math runs
        on_inference_thread(torch.set_num_threads, args.threads)
    base = rss_mb()
    gen = Generator.load(args.model, device="cuda" if torch.cuda.is_available() else "cpu")
    loaded = rss_mb()
    print(f"model {gen.bundle.path} on {gen.device}, "
          f"{on_inference_thread(torch.get_num_threads)} threads, "
          f"{sum(p.numel() for p in gen.bundle.model.parameters()):,} parameters")
    gen.generate(Request(style="funk", seed=0, variations=8))  # warm-up
    rate = on_inference_thread(matmul_flops_per_s)
    per_token = flops_per_token(gen.bundle.model)
    step_bytes = weight_bytes_per_step(gen.bundle.model)
    stream = on_inference_thread(weight_stream_bytes_per_s, gen.bundle.model)
    print(f"{per_token / 1e6:.1f} MFLOP a token; this core multiplies matrices at "
          f"{rate / 1e9:.1f} GFLOP/s. Every step reads {step_bytes / 1e6:.1f} MB of weight "
          f"matrices, which this core streams at {stream / 1e9:.1f} GB/s")
    print("\n| request | p50 | target | p90 | tokens/s | p50 / arithmetic floor | "
          "p50 / memory floor |\n|---|---|---|---|---|---|---|")
    for label, req, target in [("one 4-bar groove", Request(style="funk", bars=4, tempo=100), 60),
                               ("8 variations, 4 bars", Request(style="funk", variations=8), 150),
                               ("one 16-bar groove", Request(style="rock", bars=16), 250)]:
        times, tokens, steps = latency(gen, req, args.repeats)
        floor = tokens / args.repeats * per_token / rate
        memory = steps / args.repeats * step_bytes / stream
        print(f"| {label} | {pct(times, 0.5) * 1000:.0f} ms | {target} ms | "
              f"{pct(times, 0.9) * 1000:.0f} ms | {tokens / sum(times):.0f} | "
              f"{pct(times, 0.5) / floor:.0f}x ({floor * 1000:.1f} ms) | "
              f"{pct(times, 0.5) / memory:.1f}x ({memory * 1000:.0f} ms) |")
    if args.no_engines:
        return
    new = gen.bundle.model.config.n_positions - 3
    print(f"\nDecoding engines, batch 1 and 8, {new} new tokens (a {new + 3}-token sequence):")
    print("| engine | batch | seconds | tokens/s | speed-up vs naive |\n|---|---|---|---|---|")
    for n in (1, 8):
        results = {}
        for engine in ("naive", "hf", "generate()", "fast"):
            # on the inference thread, as generate() runs: one OpenMP team in the process
            runs = [on_inference_thread(engine_run, gen, engine, n, new, s)
                    for s in range(1 if engine == "naive" else 3)]
            results[engine] = statistics.median(runs)
        for engine, seconds in results.items():
            print(f"| {engine} | {n} | {seconds:.2f} | {n * new / seconds:.0f} | "
                  f"{results['naive'] / seconds:.1f}x |")
    print(f"\nPeak RSS: {rss_mb():.0f} MB (before loading {base:.0f} MB, after loading "
          f"{loaded:.0f} MB)")


if __name__ == "__main__":
    main()
