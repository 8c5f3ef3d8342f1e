"""Generation benchmark: latency, tokens/s, cache speed-ups and memory, side by side in one run.

    python bench/generate.py [--model models/drumgen-small] [--repeats 15] [--no-engines]

Prints p50/p90 latency of a 4-bar groove, 8 variations and 16 bars through the public API,
each against its target (issue 15) and as a multiple of its arithmetic floor: the model's
FLOPs for the tokens it made, at this core's own fp32 matrix-product speed (measured in the
run, on one thread), and of its memory floor: reading the weight matrices once per decoding
step, at the speed this core streams them (measured in the run). Each request runs with each
decoder setting, taking turns, so the columns share the machine's load: the onnx engine (the
default on CPU, `DRUMGEN_ENGINE=onnx`), FastDecoder with fp16 matrices (the default before it,
`DRUMGEN_ENGINE=fast`) and FastDecoder with the model's own fp32 ones (the default before
that, `DRUMGEN_ENGINE=fast DRUMGEN_WEIGHTS=own`). With GMD at hand (`--data`, else drumgen's
usual places) it also prints the validation NLL with the own and the fp16 matrices. A model
with drum-share biases also gets a 4-bar groove's cost per decoding step with and without
them, taking turns. Then the decoding engines on the same model over a 512-token sequence:
the naive loop (whole sequence every step, the original design), the Hugging Face forward
with its KV cache, `generate()` with our grammar processor, drumgen's FastDecoder and its
onnx engine. Figures vary with machine load: compare the ratios within one run.
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
from drumgen.sampling import GrammarLogitsProcessor, half_rounded, sample  # noqa: E402
from drumgen.tokenizer import Grammar  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: (label, engine, weights, the dtype of the matrices it reads): the default on CPU first,
#: then the earlier defaults
SETTINGS = (("onnx (default)", "onnx", "auto", torch.float32),
            ("fast, fp16 weights", "fast", "fp16", torch.float16),
            ("fast, own fp32 weights", "fast", "own", torch.float32))


def settings(gen: Generator) -> tuple:
    """The `SETTINGS` this machine can run (the onnx engine and fp16 matrices are CPU paths)."""
    if gen.device.type != "cpu":
        return (("fast (the model's dtype)", "fast", "auto", next(
            gen.bundle.model.parameters()).dtype),)
    return SETTINGS


def latency(gen: Generator, request: Request, repeats: int) -> dict[str, tuple]:
    """Per `settings`: times of `repeats` requests, the tokens they made and their decoding
    steps (a batch of variations takes as many steps as its longest). The settings take
    turns on each seed."""
    chosen = settings(gen)
    out, setting = {label: ([], 0, 0) for label, *_ in chosen}, (gen.engine, gen.weights)
    try:
        for i in range(repeats):
            request.seed = i
            for label, engine, weights, _ in chosen:
                gen.engine, gen.weights = engine, weights
                start = time.perf_counter()
                grooves = gen.generate(request)
                times, tokens, steps = out[label]
                times.append(time.perf_counter() - start)
                out[label] = (times, tokens + sum(len(g.tokens) - 3 for g in grooves),
                              steps + max(len(g.tokens) - 3 for g in grooves))
    finally:
        gen.engine, gen.weights = setting  # the shared Generator keeps its $DRUMGEN_ settings
    return out


def shares_cost(gen: Generator, repeats: int) -> None:
    """A 4-bar groove with the model's drum-share biases and without, taking turns: the
    biases change what is played, so the cost is compared per decoding step."""
    if not gen.bundle.shares:
        print("\nThis model has no drum-share biases (shares.json).")
        return
    per_step = {True: [], False: []}
    for i in range(repeats):
        for on in (True, False):
            start = time.perf_counter()
            groove = gen.generate(Request(style="funk", bars=4, tempo=100, seed=i), shares=on)[0]
            per_step[on].append((time.perf_counter() - start) / (len(groove.tokens) - 3))
    on, off = (statistics.median(per_step[k]) * 1e6 for k in (True, False))
    print(f"\nDrum-share biases, a 4-bar groove: {on:.0f} us a step with them, {off:.0f} us "
          f"without ({on / off:.2f}x), p50 of {repeats}")


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


def weight_bytes_per_step(model, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of `step_matrices` in `dtype`, which every decoding step reads whole."""
    return sum(w.numel() * dtype.itemsize for w in step_matrices(model))


def weight_stream_bytes_per_s(model) -> float:
    """How fast this core reads `step_matrices` in a tight loop summing each one (best of 5).
    An optimistic rate for decoding, whose other work between steps evicts them. Bytes are
    bytes: the fp16 floor uses the same rate (torch's fp16 sum is slower than its reads)."""
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


def nll_both(gen: Generator, data: str | None) -> None:
    """Validation NLL with the model's own matrices and with them rounded as the fp16 decoder
    rounds them (`half_rounded`), when GMD is at hand."""
    from drumgen import data as data_mod
    from drumgen.evaluate import real_data
    from drumgen.train import TrainConfig, evaluate_loss
    folder = data or data_mod.default_data_dir()
    if folder is None:
        print("\nValidation NLL: skipped (no GMD; pass --data DIR)")
        return
    real, cfg = real_data(gen.styles, folder), TrainConfig()
    examples = data_mod.examples(real.val_pairs, gen.tokenizer, gen.styles, cfg.window_bars,
                                 cfg.window_stride)
    own = on_inference_thread(evaluate_loss, gen.bundle.model, examples, gen.tokenizer.pad)
    half = on_inference_thread(evaluate_loss, half_rounded(gen.bundle.model), examples,
                               gen.tokenizer.pad)
    print(f"\nValidation NLL ({len(examples)} windows): own fp32 weights {own:.5f}, fp16 "
          f"weights {half:.5f} nats/token ({half - own:+.5f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-engines", action="store_true",
                        help="the requests only (the naive loop at batch 8 takes minutes)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--data", default=None, help="GMD, for the validation NLL")
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
    chosen = settings(gen)
    step_bytes = {label: weight_bytes_per_step(gen.bundle.model, dtype)
                  for label, _, _, dtype in chosen}
    fp32 = weight_bytes_per_step(gen.bundle.model)
    stream = on_inference_thread(weight_stream_bytes_per_s, gen.bundle.model)
    print(f"{per_token / 1e6:.1f} MFLOP a token; this core multiplies matrices at "
          f"{rate / 1e9:.1f} GFLOP/s. Every step reads {fp32 / 1e6:.1f} MB of fp32 weight "
          f"matrices ({fp32 / 2e6:.1f} MB in fp16), which this core streams at "
          f"{stream / 1e9:.1f} GB/s")
    first, before = chosen[0][0], chosen[min(1, len(chosen) - 1)][0]  # the default before it
    print("\np50 (p90) and multiples of the floors: the arithmetic floor, then the memory floor "
          "of the weights read\n\n| request | target | "
          + " | ".join(label for label, *_ in chosen) + f" | {first} / {before} |\n|---|---|"
          + "---|" * (len(chosen) + 1))
    for label, req, target in [("one 4-bar groove", Request(style="funk", bars=4, tempo=100), 60),
                               ("8 variations, 4 bars", Request(style="funk", variations=8), 150),
                               ("one 16-bar groove", Request(style="rock", bars=16), 250)]:
        runs, cells = latency(gen, req, args.repeats), []
        for name, (times, tokens, steps) in runs.items():
            floor = tokens / args.repeats * per_token / rate
            memory = steps / args.repeats * step_bytes[name] / stream
            cells.append(f"{pct(times, 0.5) * 1000:.0f} ms ({pct(times, 0.9) * 1000:.0f}), "
                         f"{pct(times, 0.5) / floor:.0f}x, {pct(times, 0.5) / memory:.1f}x")
        ratio = pct(runs[first][0], 0.5) / pct(runs[before][0], 0.5)
        print(f"| {label} | {target} ms | {' | '.join(cells)} | {ratio:.2f} |")
    shares_cost(gen, args.repeats)
    nll_both(gen, args.data)
    if args.no_engines:
        return
    new = gen.bundle.model.config.n_positions - 3
    print(f"\nDecoding engines, batch 1 and 8, {new} new tokens (a {new + 3}-token sequence):")
    print("| engine | batch | seconds | tokens/s | speed-up vs naive |\n|---|---|---|---|---|")
    for n in (1, 8):
        results = {}
        for engine in ("naive", "hf", "generate()", "fast") + (
                ("onnx",) if gen.device.type == "cpu" else ()):
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
