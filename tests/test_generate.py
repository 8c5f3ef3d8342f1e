"""Generation: cache equivalence, exact bars, determinism, controls, priming, bad requests."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import mido
import pytest
import torch

from drumgen.feel import Feel, apply
from drumgen.generate import Generator, Request, RequestError
from drumgen.onnx_decoder import OnnxDecoder
from drumgen.pattern import Pattern
from drumgen.presets import PRESETS
from drumgen.sampling import (
    FastDecoder,
    draw,
    half_rounded,
    half_weights_available,
    resolve_engine,
    sample,
    warp,
)
from drumgen.tokenizer import Grammar

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen(shipped) -> Generator:
    return Generator.load(shipped, device="cpu")


@pytest.fixture(scope="module")
def rounded(gen):
    """The shipped model with its matrices rounded as FastDecoder's fp16 weights round them."""
    return half_rounded(gen.bundle.model)


def _sample(gen: Generator, engine: str, seed: int, n: int = 3, bars: int = 4,
            strength: float = 1.0, model=None, weights: str = "auto"):
    tok = gen.tokenizer
    prompts = [[tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"]]] * n
    grammars = []
    for _ in range(n):
        g = Grammar(tok, bars, [False] * bars)
        for t in prompts[0]:
            g.advance(t)
        grammars.append(g)
    return sample(model or gen.bundle.model, prompts, 1, grammars,
                  torch.Generator().manual_seed(seed), 1.0, 0, 0.95, 400, engine=engine,
                  style_strength=strength, weights=weights)


needs_half = pytest.mark.skipif(not half_weights_available(),
                                reason="this torch has no fbgemm fp16 linear (not an x86 build)")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_decoding_matches_uncached(gen, rounded, seed):
    """The fast KV-cache decoder, the onnx engine and the Hugging Face cached forward pick
    exactly the tokens that re-running the whole sequence each step picks, under the same
    seed: with the model's own fp32 matrices, and FastDecoder also with its fp16 ones
    (against the naive loop on the same matrices rounded to fp16)."""
    naive = _sample(gen, "naive", seed)
    assert _sample(gen, "fast", seed, weights="own") == naive
    assert _sample(gen, "onnx", seed) == naive
    assert _sample(gen, "hf", seed) == naive
    if half_weights_available():
        assert _sample(gen, "fast", seed) == _sample(gen, "naive", seed, model=rounded)


@pytest.mark.slow  # the naive engine re-reads the whole sequence every step
@pytest.mark.parametrize("strength", [0.0, 2.5])
def test_engines_agree_on_style_strength(gen, rounded, strength):
    """Every engine applies the same style vector; and the strength changes the groove."""
    naive = _sample(gen, "naive", 5, strength=strength)
    assert _sample(gen, "fast", 5, strength=strength, weights="own") == naive
    assert _sample(gen, "onnx", 5, strength=strength) == naive
    assert _sample(gen, "hf", 5, strength=strength) == naive
    assert naive != _sample(gen, "naive", 5)
    if half_weights_available():
        assert _sample(gen, "fast", 5, strength=strength) == \
            _sample(gen, "naive", 5, strength=strength, model=rounded)


def test_fp16_weights_are_the_default_on_cpu_and_change_little(gen, rounded):
    """"auto" decodes with fp16 matrices where fbgemm has them; they move a step's logits by
    well under a rounding of the probabilities the sampler sees, and the packing is redone
    when a weight changes in place (as training does)."""
    model = gen.bundle.model
    assert FastDecoder(model).weights == ("fp16" if half_weights_available() else "own")
    with pytest.raises(ValueError, match="weights must be one of auto, fp16, own"):
        FastDecoder(model, "int4")
    if not half_weights_available():
        pytest.skip("no fbgemm fp16 linear in this torch")
    ids, attn, style = torch.tensor([[1, 5, 9]]), torch.ones(1, 3, dtype=torch.long), \
        torch.tensor([1])
    with torch.inference_mode():
        full = FastDecoder(model, "own").start(ids, attn, style, 8).log_softmax(-1)
        half = FastDecoder(model, "fp16").start(ids, attn, style, 8).log_softmax(-1)
        exact = FastDecoder(rounded, "own").start(ids, attn, style, 8).log_softmax(-1)
    assert torch.allclose(half, exact, atol=1e-4)  # fp16 storage, fp32 arithmetic
    assert 0 < (half - full).abs().max() < 0.05
    twin = half_rounded(model)
    before = FastDecoder(twin, "fp16").start(ids, attn, style, 8)
    with torch.no_grad():
        twin.transformer.h[0].mlp.c_fc.weight.mul_(0.5)
    after = FastDecoder(twin, "fp16").start(ids, attn, style, 8)
    assert not torch.allclose(before, after, atol=1e-3)
    assert torch.allclose(after, FastDecoder(twin, "own").start(ids, attn, style, 8),
                          atol=1e-4)


def test_style_strength_moves_the_style_vector_along_its_offset_from_the_centre(gen):
    model = gen.bundle.model
    ids = torch.arange(len(gen.styles))
    with torch.no_grad():
        plain = model.style_vector(ids)
        centre = plain.mean(0)  # the projection is linear, so the centre of the vectors
        assert torch.allclose(model.style_vector(ids, 0.0), centre.expand_as(plain), atol=1e-6)
        assert torch.allclose(model.style_vector(ids, 1.5), centre + 1.5 * (plain - centre),
                              atol=1e-5)
        assert torch.equal(model.style_vector(ids, 1.0), plain)


def test_style_strength_default_comes_from_the_model_and_requests_override_it(gen):
    request = Request(style="rock", seed=3)
    assert gen.generate(request)[0].settings["style_strength"] == \
        gen.bundle.defaults.strength_for("rock")
    assert gen.generate(Request(style="rock", seed=3, style_strength=0.5))[0].settings[
        "style_strength"] == 0.5


def test_a_styles_own_strength_is_its_default_in_generation_and_edits(shipped, tmp_path):
    """`style_strengths` in generation.json gives a style its own default (a preset plays
    at its style's), other styles keep `style_strength`, and a request's value still wins."""
    import dataclasses
    import shutil

    from drumgen.edit import RegenerateRequest
    from drumgen.model import read_defaults, write_defaults
    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    write_defaults(folder, dataclasses.replace(read_defaults(folder), style_strength=1.25,
                                               style_strengths={"funk": 2.5, "afrobeat": 2.25}))
    gen = Generator.load(folder, device="cpu")
    strength = lambda grooves: grooves[0].settings["style_strength"]  # noqa: E731
    funk = gen.generate(Request(style="funk", seed=3, bars=2))
    assert strength(funk) == 2.5
    assert strength(gen.generate(Request(style="rock", seed=3, bars=2))) == 1.25
    assert strength(gen.generate(Request(style="funk", seed=3, bars=2,
                                         style_strength=1.0))) == 1.0
    preset = next(p for p in PRESETS.values() if p.style == "afrobeat")
    assert strength(gen.generate(Request(style=preset.name, seed=3, bars=2))) == 2.25
    edited = gen.regenerate(RegenerateRequest(midi=funk[0].pattern, style="funk", bars=[2],
                                              seed=4))
    assert strength(edited) == 2.5
    # and the strength is what played: the same seed at the old default samples otherwise
    assert funk[0].tokens != gen.generate(Request(style="funk", seed=3, bars=2,
                                                  style_strength=1.25))[0].tokens


def test_cached_decoding_matches_uncached_with_padded_prompts(gen, rounded):
    """Prompts of different lengths (as in long grooves) are left-padded; still identical."""
    tok = gen.tokenizer
    head = [tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"], tok.bar, tok.ids["POS_0"],
            tok.hit_token(0, 5, 8)]
    prompts = [head, head + [tok.ids["POS_4"], tok.hit_token(1, 6, 8)], head[:4]]
    def run(engine, model=gen.bundle.model, weights="auto"):
        grammars = []
        for p in prompts:
            g = Grammar(tok, 3, [False] * 3)
            for t in p:
                g.advance(t)
            grammars.append(g)
        return sample(model, prompts, 0, grammars, torch.Generator().manual_seed(4),
                      1.0, 0, 0.95, 300, engine=engine, weights=weights)
    assert run("fast", weights="own") == run("naive")
    assert run("onnx") == run("naive")  # each row's cache packed to its own length
    if half_weights_available():
        assert run("fast") == run("naive", rounded)


@pytest.mark.parametrize("weights", ["own", pytest.param("fp16", marks=needs_half)])
def test_fast_decoder_logits_match_reference(gen, rounded, weights):
    tok = gen.tokenizer
    model = rounded if weights == "fp16" else gen.bundle.model
    ids = torch.tensor([[tok.bos, tok.ids["TEMPO_3"], tok.ids["DENS_4"], tok.bar,
                         tok.ids["POS_0"], tok.hit_token(0, 5, 8), tok.ids["POS_4"]]])
    attn = torch.ones_like(ids)
    style = torch.tensor([2])
    with torch.no_grad():
        ref = model(input_ids=ids, style_ids=style).logits[0]
        fast = FastDecoder(gen.bundle.model, weights)
        got = [fast.start(ids[:, :3], attn[:, :3], style, 16)[0]]
        got += [fast.step(ids[:, i:i + 1])[0] for i in range(3, ids.shape[1])]
    assert torch.allclose(torch.stack(got), ref[2:], atol=1e-4)


def _nucleus_by_full_sort(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The textbook top-p: sort everything, keep the smallest prefix reaching top_p."""
    probs = logits.softmax(-1)
    ordered, order = torch.sort(probs, descending=True, dim=-1)
    drop = ordered.cumsum(-1) - ordered >= top_p
    return torch.zeros_like(drop).scatter(-1, order, ~drop)


# flat rows need the full sort, peaked ones do not; the last case mixes both in one batch
@pytest.mark.parametrize("spread", [[0.5], [3.0], [12.0], [0.5, 12.0, 1.0, 8.0, 0.2, 30.0]])
@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.99])
def test_top_p_keeps_the_same_tokens_as_a_full_sort(spread, top_p):
    logits = torch.randn((6, 1189), generator=torch.Generator().manual_seed(3))
    logits *= torch.tensor(spread * (6 // len(spread)))[:, None]
    logits[:, :100] = float("-inf")  # grammar-masked tokens stay out
    kept = warp(logits, 1.0, 0, top_p) > float("-inf")
    assert torch.equal(kept, _nucleus_by_full_sort(logits, top_p))
    assert kept.sum(-1).min() >= 1


def test_draw_follows_the_distribution_and_never_picks_a_zero():
    probs = torch.zeros((4000, 6))
    probs[:, 1], probs[:, 3], probs[:, 4] = 0.2, 0.5, 0.3
    picks = draw(probs, torch.Generator().manual_seed(0)).squeeze(1)
    share = torch.bincount(picks, minlength=6).float() / len(picks)
    assert share[[0, 2, 5]].sum() == 0
    assert torch.allclose(share[[1, 3, 4]], torch.tensor([0.2, 0.5, 0.3]), atol=0.03)
    one_hot = torch.zeros((50, 9))
    one_hot[:, 0] = 1  # a finished row: PAD, always
    assert (draw(one_hot, torch.Generator().manual_seed(1)) == 0).all()


@pytest.mark.parametrize("style", ["funk", "rock", "jazz", "hiphop", "latin", "J Dilla"])
@pytest.mark.parametrize("bars", [1, 4, 16])
def test_exact_bar_count_and_validity(gen, style, bars):
    grooves = gen.generate(Request(style=style, bars=bars, tempo=110, seed=bars,
                                   variations=3, fill=bars > 1))
    for g in grooves:
        assert g.pattern.bars == bars
        assert all(0 <= h.bar < bars and 0 <= h.step < 16 for h in g.pattern.hits)
        assert gen.tokenizer.check(g.tokens, bars=bars) == []
        mid = g.pattern.to_midi()
        end = bars * 16 * 120
        for track in mid.tracks:
            assert sum(m.time for m in track) == end


def test_same_seed_same_groove(gen):
    a = gen.generate(Request(style="funk", seed=7))[0]
    b = gen.generate(Request(style="funk", seed=7))[0]
    c = gen.generate(Request(style="funk", seed=8))[0]
    assert a.tokens == b.tokens and a.pattern.hits == b.pattern.hits
    assert a.tokens != c.tokens


def test_variations_are_one_batch_of_distinct_grooves(gen):
    grooves = gen.generate(Request(style="rock", variations=8, seed=3))
    assert len(grooves) == 8
    assert len({tuple(g.tokens) for g in grooves}) >= 6


def _hits_per_bar(grooves) -> float:
    return statistics.mean(len(g.raw.hits) / g.raw.bars for g in grooves)


def test_density_control(gen):
    sparse = gen.generate(Request(style="funk", density="sparse", variations=8, seed=11))
    busy = gen.generate(Request(style="funk", density="busy", variations=8, seed=11))
    target = gen.generate(Request(style="funk", density=30, variations=8, seed=11))
    assert _hits_per_bar(busy) > 1.5 * _hits_per_bar(sparse)
    assert _hits_per_bar(target) > _hits_per_bar(sparse)


def test_fill_bars_differ_from_beat_bars_as_in_gmd(gen):
    """In GMD's rock and funk training bars, fills have 4x the toms' share of hits (27% vs 7%)
    and half the hi-hats' (15% vs 32%). A generated fill bar should lean the same way."""
    def shares(fill: bool):
        # 48 last bars: one batch of 8 varies too much from seed to seed to show a share
        grooves = [g for seed in range(6) for g in gen.generate(
            Request(style="rock", bars=2, fill=fill, variations=8, seed=seed))]
        last = [h for g in grooves for h in g.raw.hits if h.bar == 1]
        n = max(1, len(last))
        return sum(h.drum in (4, 5, 6) for h in last) / n, sum(h.drum in (2, 3) for h in last) / n
    beat_toms, beat_hats = shares(False)
    fill_toms, fill_hats = shares(True)
    print(f"toms {beat_toms:.2f} -> {fill_toms:.2f}, hats {beat_hats:.2f} -> {fill_hats:.2f}")
    assert fill_toms > beat_toms + 0.05
    assert fill_hats < beat_hats


def test_prime_continues_user_midi(gen, gmd):
    prime = gmd / "drummer1" / "session1" / "102_funk_95_beat_4-4.mid"
    grooves = gen.generate(Request(style="funk", bars=4, prime=prime.read_bytes(), seed=2,
                                   variations=2))
    assert all(g.pattern.bars == 4 for g in grooves)
    # the prime's bars are context: the prompt ends with them, and the output is only new bars
    unprimed = gen.generate(Request(style="funk", bars=4, seed=2, variations=2))
    assert grooves[0].tokens != unprimed[0].tokens


@pytest.mark.parametrize("field,value,words", [
    ("bars", 0, "bars"), ("bars", 17, "bars"), ("bars", 2.5, "bars"), ("tempo", 39, "tempo"),
    ("tempo", 301, "tempo"), ("tempo", float("nan"), "tempo"), ("temperature", 0, "temperature"),
    ("temperature", 5, "temperature"), ("top_k", -1, "top_k"), ("top_p", 1.5, "top_p"),
    ("style_strength", -0.1, "style_strength"), ("style_strength", 3.5, "style_strength"),
    ("seed", -1, "seed"), ("variations", 0, "variations"), ("variations", 9, "variations"),
    ("swing", 40, "swing"), ("humanize", 2, "humanize"), ("density", "huge", "density"),
    ("density", 0, "density"), ("fill", "yes", "fill"), ("style", "", "style"),
    ("style", "polka", "style"), ("style", None, "style"), ("tempo", "fast", "tempo"),
])
def test_bad_requests_name_the_parameter(gen, field, value, words):
    with pytest.raises(RequestError, match=words):
        gen.generate(Request(**{field: value}))


@pytest.mark.parametrize("data,words", [(b"", "empty"), (b"garbage bytes", "not a MIDI"),
                                        (b"MThd\x00\x00\x00\x06\x00\x01", "corrupt")])
def test_bad_prime_is_refused(gen, data, words):
    with pytest.raises(RequestError, match=f"prime: .*{words}"):
        gen.generate(Request(prime=data))


def test_presets_are_complete_and_resolve(gen):
    assert {"j dilla", "questlove", "metro boomin"} <= set(PRESETS) and len(PRESETS) >= 5
    for preset in PRESETS.values():
        assert preset.style in gen.styles
        assert 40 <= preset.tempo_range[0] < preset.tempo_range[1] <= 300
        assert preset.description and preset.kit
        groove = gen.generate(Request(style=preset.name.upper(), tempo=preset.tempo, seed=1))[0]
        assert groove.preset == preset.name and groove.style == preset.style


def test_feel_moves_timing_and_velocity():
    from drumgen.pattern import Hit
    pattern = Pattern([Hit(0, s, 2, 80, 0.0) for s in range(16)] + [Hit(0, 4, 1, 100, 0.0)], 1,
                      100.0)
    swung = apply(pattern, Feel(swing=66))
    odd = [h.offset for h in swung.hits if h.step % 2 == 1]
    even = [h.offset for h in swung.hits if h.step % 2 == 0]
    assert all(o == pytest.approx(0.32) for o in odd) and all(e == 0 for e in even)
    laid = apply(pattern, Feel(laid_back_ms={"snare": 30}))
    snare = next(h for h in laid.hits if h.drum == 1)
    assert snare.offset * pattern.step_seconds * 1000 == pytest.approx(30, abs=0.1)
    human = apply(pattern, Feel(humanize=1.0), seed=1)
    assert human.hits != pattern.hits and apply(pattern, Feel(humanize=1.0), seed=1) == human
    assert all(-0.5 <= h.offset < 0.5 and 1 <= h.velocity <= 127 for h in human.hits)


def test_generator_is_cached(shipped):
    assert Generator.load(shipped, "cpu") is Generator.load(shipped, "cpu")


@pytest.mark.slow  # a CLI subprocess
def test_cli_generate_writes_midi_and_wav(tmp_path):
    out = tmp_path / "groove.mid"
    run = subprocess.run([sys.executable, "-m", "drumgen", "generate", "--style", "funk",
                          "--bars", "4", "--tempo", "100", "--seed", "7", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    mid = mido.MidiFile(out)
    assert sum(m.time for m in mid.tracks[1]) == 4 * 16 * 120
    run = subprocess.run([sys.executable, "-m", "drumgen", "generate", "--style", "Questlove",
                          "--variations", "3", "--wav", "--out", str(tmp_path / "v" / "q.mid")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert names == ["q_1.mid", "q_1.wav", "q_2.mid", "q_2.wav", "q_3.mid", "q_3.wav"]
    run = subprocess.run([sys.executable, "-m", "drumgen", "generate", "--bars", "40"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "bars must be from 1 to 16" in run.stderr


def test_grammar_processor_keeps_generate_to_the_grammar(gen):
    """`GrammarLogitsProcessor` under transformers' own `generate()`: with room for the bars
    asked (it never closes bars early, see its docstring), every row ends in EOS with exactly
    that many valid bars, and rows that finish first are padded. (Without the processor the
    same call breaks the grammar.)"""
    from drumgen.sampling import GrammarLogitsProcessor
    tok, model = gen.tokenizer, gen.bundle.model
    prompt = [tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"]]
    grammars = [Grammar(tok, 2) for _ in range(3)]
    for g in grammars:
        for t in prompt:
            g.advance(t)
    ids = torch.tensor([prompt] * 3)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(input_ids=ids, style_ids=torch.tensor([gen.styles.index("funk")] * 3),
                             attention_mask=torch.ones_like(ids), max_new_tokens=200,
                             do_sample=True, top_k=0, logits_processor=[
                                 GrammarLogitsProcessor(grammars, len(prompt))],
                             pad_token_id=tok.pad, eos_token_id=tok.eos)
    for row in out.tolist():
        body = row[: row.index(tok.eos) + 1]
        assert tok.check(body, bars=2) == [], tok.check(body, bars=2)
        assert all(t == tok.pad for t in row[len(body):])


def test_drumgen_weights_setting_is_read_and_checked(monkeypatch):
    from drumgen.generate import decoder_weights
    monkeypatch.delenv("DRUMGEN_WEIGHTS", raising=False)
    assert decoder_weights() == "auto"
    monkeypatch.setenv("DRUMGEN_WEIGHTS", " Own ")
    assert decoder_weights() == "own"
    monkeypatch.setenv("DRUMGEN_WEIGHTS", "fp8")
    with pytest.raises(ValueError,
                       match="DRUMGEN_WEIGHTS must be one of auto, fp16, own; got 'fp8'"):
        decoder_weights()


def test_drumgen_engine_setting_is_read_and_checked(monkeypatch, gen):
    """$DRUMGEN_ENGINE picks the stepping decoder; "auto" is onnx on this CPU (onnxruntime is
    in requirements.txt), and a Generator decodes with it by default."""
    from drumgen.generate import decoder_engine
    monkeypatch.delenv("DRUMGEN_ENGINE", raising=False)
    assert decoder_engine() == "auto"
    assert resolve_engine("auto", gen.bundle.model.transformer.wte.weight) == "onnx"
    from drumgen import onnx_decoder  # built when the model loaded, not in the first request
    assert onnx_decoder._sessions.get(gen.bundle.model) is not None
    monkeypatch.setenv("DRUMGEN_ENGINE", " Fast ")
    assert decoder_engine() == "fast"
    monkeypatch.setenv("DRUMGEN_ENGINE", "tensorrt")
    with pytest.raises(ValueError,
                       match="DRUMGEN_ENGINE must be one of auto, onnx, fast; got 'tensorrt'"):
        decoder_engine()
    with pytest.raises(ValueError, match="engine must be one of auto, onnx, fast"):
        resolve_engine("tensorrt", gen.bundle.model.transformer.wte.weight)
    with pytest.raises(ValueError, match="engine must be auto, onnx, fast, hf or naive"):
        _sample(gen, "tensorrt", 0)


def test_the_onnx_engine_steps_the_models_logits_and_follows_its_weights(gen):
    """Step by step, the onnx engine's logits are the full forward's; its session is built
    once per model and built again when a weight changes in place (as training does)."""
    import copy

    from drumgen import onnx_decoder
    tok = gen.tokenizer
    model = gen.bundle.model
    ids = torch.tensor([[tok.bos, tok.ids["TEMPO_3"], tok.ids["DENS_4"], tok.bar,
                         tok.ids["POS_0"], tok.hit_token(0, 5, 8), tok.ids["POS_4"]]] * 2)
    attn, style = torch.ones_like(ids), torch.tensor([2, 2])

    def stepped(m):
        with torch.inference_mode():
            decoder = OnnxDecoder(m)
            got = [decoder.start(ids[:, :3], attn[:, :3], style, 16)[0]]
            got += [decoder.step(ids[:, i:i + 1])[0] for i in range(3, ids.shape[1])]
        return torch.stack(got)

    with torch.no_grad():
        ref = model(input_ids=ids[:1], style_ids=style[:1]).logits[0]
    assert torch.allclose(stepped(model), ref[2:], atol=1e-4)
    assert onnx_decoder.session(model) is onnx_decoder.session(model)
    twin = copy.deepcopy(model)
    before = onnx_decoder.session(twin)
    with torch.no_grad():
        twin.transformer.h[0].mlp.c_fc.weight.mul_(0.5)
    assert onnx_decoder.session(twin) is not before
    with torch.no_grad():
        changed = twin(input_ids=ids[:1], style_ids=style[:1]).logits[0]
    assert torch.allclose(stepped(twin), changed[2:], atol=1e-4)
    assert not torch.allclose(changed, ref, atol=1e-3)


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.8, 20, 0.9), (1.3, 0, 1.0),
                                                       (1.0, 5, 0.5), (1.0, 0, 0.98)])
def test_the_onnx_engines_draw_is_torchs_under_every_sampling_knob(gen, temperature, top_k,
                                                                  top_p):
    """The onnx engine draws inside its graph (temperature, top-k, top-p, the inverse CDF):
    it picks FastDecoder's tokens, and `observe` sees the same masked logits, for 3 rows
    of different lengths (rows finish and drop out at different steps)."""
    tok = gen.tokenizer

    def run(engine):
        seen = []
        grammars = []
        for bars in (1, 2, 3):
            g = Grammar(tok, bars, [False] * bars)
            for t in (tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"]):
                g.advance(t)
            grammars.append(g)
        out = sample(gen.bundle.model, [[tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"]]] * 3,
                     2, grammars, torch.Generator().manual_seed(11), temperature, top_k, top_p,
                     300, engine=engine, weights="own",
                     observe=lambda row, t, logits: seen.append((row, t, logits.clone())))
        return out, seen

    fast, fast_seen = run("fast")
    onnx, onnx_seen = run("onnx")
    assert onnx == fast
    assert [r[:2] for r in onnx_seen] == [r[:2] for r in fast_seen]
    for (_, _, a), (_, _, b) in zip(onnx_seen, fast_seen, strict=True):
        finite = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a), finite)
        assert torch.allclose(a[finite], b[finite], atol=1e-4)
