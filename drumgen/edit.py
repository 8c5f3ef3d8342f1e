"""Editing a groove with the model: regenerate (keep drums or bars), Groove and Drumify.

Each verb turns its input into one `BarSpec` per bar (`constraints.py`) and decodes with the
same model and sampler as `generate`. What the user kept is written back from the input
itself, not from its tokens, so kept hits keep their exact velocity and timing.

Call them through the inference API: `Generator.load().regenerate(RegenerateRequest(...))`,
`.groove(GrooveRequest(...))`, `.drumify(DrumifyRequest(...))`.
"""

from __future__ import annotations

import math
import random

import torch

from . import schema
from .constants import DRUM_GROUPS, DRUMS, MAX_EDIT_BARS, SHIFT_BINS, VELOCITY_BINS
from .constraints import BarSpec, Slot, exact_bar
from .data import GROOVE_BARS, groove_prompt
from .feel import Feel, apply
from .generate import (
    Generator,
    Groove,
    RequestError,
    _density_bucket,
    _split_bars,
    on_inference_thread,
)
from .pattern import Hit, MidiError, Pattern, Rhythm, parse_rhythm, read_rhythm
from .requests import (  # noqa: F401  (re-exported: the requests' home before requests.py)
    DrumifyRequest,
    EditRequest,
    GrooveRequest,
    RegenerateRequest,
    Source,
    check_density,
)
from .tokenizer import bin_shift, density_bucket, shift_bin, tempo_bucket, velocity_bin

KICK, SNARE = DRUMS.index("kick"), DRUMS.index("snare")


# ---------------------------------------------------------------------------------------------
# Parsing what users type

def parse_drums(value: str | list[str]) -> tuple[int, ...]:
    """Drum indices from names and groups ("kick,snare", "hats", ["kick", "toms"])."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    found: list[int] = []
    for raw in names:
        name = str(raw).strip().lower().replace("-", "_").replace(" ", "_")
        if not name:
            continue
        members = DRUM_GROUPS.get(name, (name,))
        for member in members:
            if member not in DRUMS:
                choices = ", ".join([*DRUMS, *DRUM_GROUPS])
                raise RequestError(f"keep_drums: unknown drum {raw.strip()!r}; choose from "
                                   f"{choices}")
            found.append(DRUMS.index(member))
    if not found:
        raise RequestError("keep_drums: name at least one drum, e.g. kick,snare")
    return tuple(sorted(set(found)))


def parse_bars(value: str | list[int], total: int) -> list[int]:
    """0-based bar indices from 1-based numbers ("3,4", "2-4", [3, 4])."""
    items = value.replace(" ", "").split(",") if isinstance(value, str) else list(value or [])
    bars: set[int] = set()
    for item in items:
        if item == "":
            continue
        try:
            if isinstance(item, str) and "-" in item.strip("-"):
                lo, hi = (int(x) for x in item.split("-", 1))
                numbers = range(lo, hi + 1)
            elif isinstance(item, bool) or float(item) != int(float(item)):
                raise ValueError
            else:
                numbers = [int(float(item))]
        except ValueError:
            raise RequestError(f"bars: {item!r} is not a bar number; give bars such as 3,4 "
                               "or 2-4 (the first bar is 1)") from None
        for b in numbers:
            if not 1 <= b <= total:
                raise RequestError(f"bars: bar {b} is outside this {total}-bar groove "
                                   f"(bars 1 to {total})")
            bars.add(b - 1)
    if not bars:
        raise RequestError("bars: name at least one bar to regenerate, e.g. 4")
    return sorted(bars)


def read_source(midi: Source | None) -> Pattern:
    """The groove an edit starts from, checked against what the model can edit."""
    if midi is None:
        raise RequestError("midi: give the groove to edit (a MIDI file or a Pattern)")
    if isinstance(midi, Pattern):
        pattern = midi
    else:
        try:
            pattern = Pattern.from_midi(midi)
        except MidiError as exc:
            raise RequestError(f"midi: {exc}") from None
    _check_meter("midi", pattern.time_signature, pattern.bars)
    if not pattern.hits:
        raise RequestError("midi: the groove has no hits")
    return pattern


def _check_meter(name: str, signature: tuple[int, int], bars: int) -> None:
    if tuple(signature) != (4, 4):
        raise RequestError(f"{name}: the model edits 4/4 grooves only; this one is in "
                           f"{signature[0]}/{signature[1]}")
    if bars > MAX_EDIT_BARS:
        raise RequestError(f"{name}: {bars} bars is over the {MAX_EDIT_BARS}-bar limit for "
                           f"edits; trim the file to {MAX_EDIT_BARS} bars or fewer")


# ---------------------------------------------------------------------------------------------
# The verbs

def regenerate(gen: Generator, req: RegenerateRequest) -> list[Groove]:
    req.validate()
    pattern = read_source(req.midi)
    tok = gen.tokenizer
    if (req.keep_drums is None) == (req.bars is None):
        raise RequestError("regenerate: give keep_drums (lanes to keep) or bars (bars to "
                           "rewrite), not both or neither")
    if not isinstance(req.fill, bool):
        raise RequestError(f"fill must be true or false; got {req.fill!r}")
    steps = pattern.steps_per_bar
    fills = [False] * pattern.bars
    if req.keep_drums is not None:
        kept = parse_drums(req.keep_drums)
        if len(kept) == len(DRUMS):
            raise RequestError("keep_drums: every drum is kept, so there is nothing left to "
                               "regenerate; keep fewer drums")
        specs = [keep_drums_spec(tok, pattern, b, kept) for b in range(pattern.bars)]
        keep = lambda h: h.drum in kept  # noqa: E731
        what = {"keep_drums": [DRUMS[d] for d in kept]}
    else:
        redo = parse_bars(req.bars, pattern.bars)
        bars_tokens = _bar_tokens(tok, pattern)
        specs = [None if b in redo else exact_bar(tok, bars_tokens[b], steps)
                 for b in range(pattern.bars)]
        fills = [req.fill and b in redo for b in range(pattern.bars)]
        keep = lambda h: h.bar not in redo  # noqa: E731
        what = {"bars": [b + 1 for b in redo], "fill": req.fill}
    return _run(gen, req, pattern, specs, fills, _input_density(pattern), what,
                lambda raw, i: _splice(raw, pattern, keep))


def groove(gen: Generator, req: GrooveRequest) -> list[Groove]:
    req.validate()
    schema.check("strength", req.strength)
    if not isinstance(req.keep_velocity, bool):
        raise RequestError(f"keep_velocity must be true or false; got {req.keep_velocity!r}")
    pattern = read_source(req.midi)
    head = gen.groove_head()
    player = head or gen
    cells = _cells(pattern)
    slots: list[dict[int, list[Slot]]] = [{} for _ in range(pattern.bars)]
    for bar, step, drum in cells:  # in token order, so each step's slots are in hit order
        slots[bar].setdefault(step, []).append(Slot(drums=(drum,)))
    specs = [BarSpec(pattern.steps_per_bar, s, [()] * pattern.steps_per_bar) for s in slots]
    played: list[list[tuple[float, float]]] = [[] for _ in range(req.variations)]
    table = torch.tensor(player.tokenizer.velocities, dtype=torch.float32)

    def observe(row: int, token: int, logits: torch.Tensor) -> None:
        # The model's expected velocity and offset for this hit, over the velocity and timing
        # bins of its drum (the only tokens the grammar leaves open here). The expectation,
        # not the sampled bin, is what is written: it follows a drummer's accents better than
        # one draw does (bench/edit.py measures both).
        if player.tokenizer.kind[token] != "HIT":
            return
        drum = player.tokenizer.value[token] // (VELOCITY_BINS * SHIFT_BINS)
        start = player.tokenizer.hit_token(drum, 0, 0)
        probs = logits[start:start + VELOCITY_BINS * SHIFT_BINS].float().softmax(-1)
        grid = probs.view(VELOCITY_BINS, SHIFT_BINS)
        vel = float(grid.sum(1) @ table[drum])
        off = float(grid.sum(0) @ _SHIFT_CENTRES)
        played[row].append((vel, off))

    def finish(raw: Pattern, i: int) -> Pattern:
        return _played(pattern, cells, played[i], req.strength, req.keep_velocity)

    # With a Groove head, each chunk of GROOVE_BARS bars is played seeing the whole chunk
    # first (its quantized pattern as a prefix); without one, the generate model plays it
    # left to right, seeing only what came before.
    chunk = GROOVE_BARS if head else MAX_EDIT_BARS
    prefixes = [groove_prompt(player.tokenizer, pattern.slice(b, min(b + chunk, pattern.bars)))
                if head else None for b in range(0, pattern.bars, chunk)]
    return _run(player, req, pattern, specs, [False] * pattern.bars, _input_density(pattern),
                {"strength": req.strength, "keep_velocity": req.keep_velocity,
                 "player": "groove head" if head else "generate model"}, finish,
                observe=observe, use_feel=False, chunks=(chunk, prefixes))


_SHIFT_CENTRES = torch.tensor([bin_shift(s) for s in range(SHIFT_BINS)], dtype=torch.float32)


def drumify(gen: Generator, req: DrumifyRequest) -> list[Groove]:
    req.validate()
    rhythm = _rhythm(req)
    steps = rhythm.steps_per_bar
    everything = tuple(range(len(DRUMS)))
    others = tuple(d for d in everything if d not in (KICK, SNARE))
    specs = []
    for onsets in rhythm.onsets:
        slots = {s: [Slot(drums=(KICK, SNARE))] for s in onsets}
        specs.append(BarSpec(steps, slots, [everything if s in onsets else others
                                            for s in range(steps)]))
    pattern = Pattern([], rhythm.bars, rhythm.tempo, rhythm.time_signature)
    check_density(req.density)
    return _run(gen, req, pattern, specs, [False] * rhythm.bars, _density_bucket(req.density),
                {"onsets": sum(len(o) for o in rhythm.onsets)}, lambda raw, i: raw)


def _rhythm(req: DrumifyRequest) -> Rhythm:
    if (req.midi is None) == (req.rhythm is None or req.rhythm == ""):
        raise RequestError("drumify: give midi (a file whose notes set the rhythm) or rhythm "
                           "(such as x..x..x.x...x...), not both or neither")
    if req.track is not None:
        schema.check("track", req.track)
    try:
        rhythm = read_rhythm(req.midi, req.track) if req.midi is not None else \
            parse_rhythm(req.rhythm)
    except MidiError as exc:
        text = str(exc)
        raise RequestError(text if text.split(":")[0] in ("rhythm", "track")
                           else f"midi: {text}") from None
    _check_meter("midi" if req.midi is not None else "rhythm", rhythm.time_signature,
                 rhythm.bars)
    if req.bars is not None:
        schema.check("edit_bars", req.bars)
        rhythm.onsets = [rhythm.onsets[b % rhythm.bars] for b in range(int(req.bars))]
    if not any(rhythm.onsets):
        raise RequestError("rhythm: no onsets in the bars asked for")
    return rhythm


# ---------------------------------------------------------------------------------------------
# Shared machinery

def _run(gen: Generator, req: EditRequest, pattern: Pattern, specs: list[BarSpec | None],
         fills: list[bool], density: int | None, what: dict, finish,
         observe=None, use_feel: bool = True, chunks=None) -> list[Groove]:
    """Decode `specs` with `req`'s sampling; `finish(raw, i)` gives variation i's pattern.
    `chunks` = (bars, prefixes): decode that many bars at a time, each with its prefix."""
    style, preset = gen.resolve_style(req.style)
    seed = req.seed if req.seed is not None else random.randrange(2**31)
    sampling = gen.sampling(req, style)
    tempo = float(req.tempo) if req.tempo is not None else float(pattern.tempo)
    if not 40 <= tempo <= 300:
        raise RequestError(f"tempo: the input's tempo {tempo:g} bpm is outside 40-300; give "
                           "a tempo")
    generator = torch.Generator(device=gen.device).manual_seed(seed)
    size, prefixes = chunks or (pattern.bars, [None])
    sequences: list[list[int]] = []
    for c, prefix in enumerate(prefixes):
        lo, hi = c * size, min((c + 1) * size, pattern.bars)
        part = on_inference_thread(gen.decode, style, req.variations, hi - lo,
                                   tempo_bucket(tempo), fills[lo:hi], density, sampling,
                                   generator, specs=specs[lo:hi], observe=observe,
                                   prefix=prefix)
        # one sequence per variation: the head of the first part, every part's bars, EOS
        sequences = part if not sequences else [a[:-1] + b[3:] for a, b in
                                                zip(sequences, part, strict=True)]
    feel = preset.feel if preset and use_feel else Feel()
    grooves = []
    for i, tokens in enumerate(sequences):
        raw = gen.tokenizer.decode(tokens, tempo=tempo)
        written = apply(raw, feel, seed + i) if feel != Feel() else raw
        out = finish(written, i)
        out = Pattern(out.hits, pattern.bars, tempo, pattern.time_signature)
        grooves.append(Groove(out, raw, tokens, style, preset.name if preset else None, seed,
                              fills, {**sampling._asdict(), "feel": feel, **what}))
    return grooves


def keep_drums_spec(tok, pattern: Pattern, bar: int, kept: tuple[int, ...]) -> BarSpec:
    """Bar `bar` with the kept drums' tokens forced where they are and nowhere else."""
    slots: dict[int, set[int]] = {}
    for h in pattern.bar_hits(bar):
        if h.drum in kept:
            slots.setdefault(h.step, set()).add(
                tok.hit_token(h.drum, velocity_bin(h.velocity), shift_bin(h.offset)))
    free = tuple(d for d in range(len(DRUMS)) if d not in kept)
    return BarSpec(pattern.steps_per_bar,
                   {s: [Slot(token=t) for t in sorted(ts, key=lambda t: tok.value[t])]
                    for s, ts in slots.items()},
                   [free] * pattern.steps_per_bar)


def _bar_tokens(tok, pattern: Pattern) -> list[list[int]]:
    """Each bar's body tokens (without its BAR token)."""
    return [bar[1:] for bar in _split_bars(tok, tok.encode_bars(pattern, [False] * pattern.bars))]


def _input_density(pattern: Pattern) -> int:
    return density_bucket(len(pattern.hits) / pattern.bars)


def _splice(written: Pattern, original: Pattern, keep) -> Pattern:
    """The model's hits where `keep` is false, the original hits where it is true."""
    hits = [h for h in written.hits if not keep(h)] + [h for h in original.hits if keep(h)]
    return Pattern(hits, original.bars, written.tempo, original.time_signature)


def _cells(pattern: Pattern) -> list[tuple[int, int, int]]:
    """The (bar, step, drum) cells of a pattern, in token order (bar, step, drum)."""
    return sorted({(h.bar, h.step, h.drum) for h in pattern.hits})


def _played(pattern: Pattern, cells: list[tuple[int, int, int]],
            played: list[tuple[float, float]], strength: float,
            keep_velocity: bool) -> Pattern:
    """The input's cells with the model's velocity and offset blended in by `strength`. A
    cell the input hit twice (a flam) keeps its loudest hit."""
    if len(played) != len(cells):
        raise RuntimeError(f"groove: {len(played)} hits played for {len(cells)} cells")
    loudest: dict[tuple[int, int, int], Hit] = {}
    for h in pattern.hits:
        key = (h.bar, h.step, h.drum)
        if key not in loudest or h.velocity > loudest[key].velocity:
            loudest[key] = h
    hits = []
    for cell, (vel, off) in zip(cells, played, strict=True):
        h = loudest[cell]
        v = h.velocity if keep_velocity else h.velocity + strength * (vel - h.velocity)
        o = h.offset + strength * (off - h.offset)
        hits.append(Hit(h.bar, h.step, h.drum, int(min(127, max(1, round(v)))),
                        min(math.nextafter(0.5, 0.0), max(-0.5, o))))
    return Pattern(hits, pattern.bars, pattern.tempo, pattern.time_signature)
