"""Edit benchmark: what each edit keeps, how its output sounds, and how long it takes.

    python bench/edit.py [--model models/drumgen-small] [--data DIR] [--per-style 16]

On real 4-bar validation grooves (GMD's validation split; the model never trained on it):

- keep drums: kick and snare kept, the rest regenerated. Kept lanes identical, bar count,
  the style classifier's accuracy against real held-out grooves (the ceiling), and the
  feature overlap ratio (as `evaluate` reports it for generate: overlap with real validation
  bars over the overlap of real training bars with them).
- regenerate bars: bars 3-4 rewritten. Bars 1-2 identical, and bars 3-4 classified as the
  style as often as the real bars 3-4.
- groove: the groove quantized as a user types it (every hit on the grid at velocity 90),
  then played by the model. Per-hit velocity correlation with the drummer (mean over
  grooves), mean absolute timing error against the bare grid's, overlap of the velocity and
  offset distributions with the drummer's, and the random `humanize` feel as a baseline.
- drumify: the groove's kick and snare onsets written as a one-pitch bass line (MIDI
  channel 1), then drumified. Onsets carrying a kick or snare, kicks on an onset, and the
  style classifier's accuracy.

Speed is p50 and p90 of each call through the public API on 4 bars, on this machine. The
classifier and the overlap measure are `drumgen.evaluate`'s.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import mido
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drumgen import data as data_mod  # noqa: E402
from drumgen.data import quantize  # noqa: E402
from drumgen.edit import DrumifyRequest, GrooveRequest, RegenerateRequest  # noqa: E402
from drumgen.evaluate import (  # noqa: E402
    MIN_VAL_GROOVES,
    _grooves,
    bar_features,
    feature_overlaps,
    groove_vector,
    overlap,
    predict,
    train_classifier,
)
from drumgen.feel import Feel, apply  # noqa: E402
from drumgen.generate import Generator  # noqa: E402
from drumgen.pattern import Pattern  # noqa: E402

KEPT = (0, 1)  # kick, snare


def bass_line(p: Pattern) -> bytes:
    """The kick and snare onsets of `p` as a one-pitch bass line on MIDI channel 1."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(p.tempo)),
                            mido.MetaMessage("time_signature", numerator=4, denominator=4)])
    onsets = sorted({h.bar * 16 + h.step for h in p.hits if h.drum in KEPT})
    now = 0
    for o in onsets:
        on = o * 120
        track.append(mido.Message("note_on", channel=0, note=40, velocity=100, time=on - now))
        track.append(mido.Message("note_off", channel=0, note=40, velocity=0, time=60))
        now = on + 60
    track.append(mido.MetaMessage("end_of_track", time=p.bars * 1920 - now))
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def cell_map(p: Pattern) -> dict:
    loud = {}
    for h in p.hits:
        key = (h.bar, h.step, h.drum)
        if key not in loud or h.velocity > loud[key].velocity:
            loud[key] = h
    return loud


def groove_figures(real: Pattern, played: Pattern) -> tuple[float, float, float]:
    """(velocity r, mean |offset error|, mean |real offset|), offsets in 16th steps."""
    r, p = cell_map(real), cell_map(played)
    keys = sorted(r)
    rv = np.array([r[k].velocity for k in keys], float)
    pv = np.array([p[k].velocity for k in keys], float)
    ro = np.array([r[k].offset for k in keys], float)
    po = np.array([p[k].offset for k in keys], float)
    corr = float(np.corrcoef(rv, pv)[0, 1]) if rv.std() > 0 and pv.std() > 0 else float("nan")
    return corr, float(np.abs(po - ro).mean()), float(np.abs(ro).mean())


def groove_one(gen, real: Pattern, style: str, seed: int, times: dict, gv: dict) -> None:
    q = quantize(real)
    g = timed(times, "groove", gen.groove, GrooveRequest(midi=q, style=style, seed=seed))
    for name, played in (("model", g.pattern), ("model, one draw", g.raw),
                         ("humanize 1.0", apply(q, Feel(humanize=1.0), seed))):
        gv[name].append(groove_figures(real, played))
        gv[name + " vel"] += [h.velocity for h in played.hits]
        gv[name + " off"] += [h.offset for h in played.hits]
    gv["real vel"] += [h.velocity for h in real.hits]
    gv["real off"] += [h.offset for h in real.hits]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def timed(times: dict, name: str, fn, request):
    start = time.perf_counter()
    out = fn(request)[0]
    times[name].append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--per-style", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", default="keep,bars,groove,drumify",
                        help="keep,bars,groove,drumify (all), or groove alone")
    args = parser.parse_args()
    ops = set(args.ops.split(","))
    root = args.data or data_mod.default_data_dir()
    if root is None:
        raise SystemExit("no data: pass --data or set DRUMGEN_DATA (GMD with info.csv)")
    gen = Generator.load(args.model, device="cpu")
    pairs = data_mod.read_patterns(data_mod.load(root).records)
    train = _grooves([(r, p) for r, p in pairs if r.split == "train"], 4)
    val = _grooves([(r, p) for r, p in pairs if r.split == "validation"], 4)
    styles = [s for s in gen.styles if len(val.get(s, [])) >= MIN_VAL_GROOVES
              and len(train.get(s, [])) >= MIN_VAL_GROOVES]
    index = {s: i for i, s in enumerate(styles)}
    x = np.stack([groove_vector(p) for s in styles for p in train[s]])
    y = np.array([index[s] for s in styles for _ in train[s]])
    clf = train_classifier(x, y, len(styles), args.seed)

    def acc(patterns: list[Pattern], style: str) -> float:
        return float((predict(clf, np.stack([groove_vector(p) for p in patterns]))
                      == index[style]).mean())

    rng = random.Random(args.seed)
    times: dict[str, list[float]] = defaultdict(list)
    gen.groove(GrooveRequest(midi=quantize(val[styles[0]][0]), style=styles[0], seed=0))
    rows, kept_ok, bars_ok, total = [], 0, 0, 0
    gv = defaultdict(list)  # groove figures, pooled over styles
    for style in styles:
        picks = rng.sample(val[style], min(args.per_style, len(val[style])))
        out = defaultdict(list)
        for real in picks:
            seed = rng.randrange(2**31)
            total += 1
            if "groove" in ops:
                groove_one(gen, real, style, seed, times, gv)
            if "keep" not in ops:
                continue
            k = timed(times, "keep drums", gen.regenerate, RegenerateRequest(
                midi=real, keep_drums="kick,snare", style=style, seed=seed))
            kept_ok += (k.pattern.bars == 4 and sorted(h for h in k.pattern.hits
                        if h.drum in KEPT) == sorted(h for h in real.hits if h.drum in KEPT))
            out["keep"].append(k.pattern)
            b = timed(times, "regenerate bars", gen.regenerate, RegenerateRequest(
                midi=real, bars="3,4", style=style, seed=seed))
            bars_ok += sorted(h for h in b.pattern.hits if h.bar < 2) == \
                sorted(h for h in real.hits if h.bar < 2)
            out["bars"].append(b.pattern.slice(2, 4))
            out["real_bars"].append(real.slice(2, 4))
            onsets = {(h.bar, h.step) for h in real.hits if h.drum in KEPT}
            if not onsets:  # no kick or snare to make a bass line of
                continue
            d = timed(times, "drumify", gen.drumify, DrumifyRequest(
                midi=bass_line(real), style=style, seed=seed))
            ks = {(h.bar, h.step) for h in d.pattern.hits if h.drum in KEPT}
            kicks = [(h.bar, h.step) for h in d.pattern.hits if h.drum == 0]
            out["onset_cover"].append(len(onsets & ks) / max(1, len(onsets)))
            out["kick_on"].append(np.mean([k in onsets for k in kicks]) if kicks else 1.0)
            out["drumify"].append(d.pattern)
        if "keep" not in ops:
            continue
        feats = lambda ps: [bar_features(p, b) for p in ps for b in range(p.bars)]  # noqa: E731
        real_feats = feats(val[style])
        ratio = (np.nanmean(list(feature_overlaps(feats(out["keep"]), real_feats).values()))
                 / np.nanmean(list(feature_overlaps(feats(train[style]), real_feats).values())))
        rows.append((style, len(picks), acc(picks, style), acc(out["keep"], style),
                     float(ratio), acc(out["real_bars"], style), acc(out["bars"], style),
                     acc(out["drumify"], style), float(np.mean(out["onset_cover"])),
                     float(np.mean(out["kick_on"]))))

    print(f"model {gen.bundle.path}, {total} validation grooves of 4 bars, "
          f"{len(styles)} styles\n")
    if rows:
        style_table(rows, kept_ok, bars_ok, total)
    if gv:
        groove_table(gv)
    print("\n| operation (4 bars) | p50 | p90 |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1000:.0f} ms | "
              f"{pct(values, 0.9) * 1000:.0f} ms |")


def style_table(rows, kept_ok: int, bars_ok: int, total: int) -> None:
    print(f"Kept lanes identical: {kept_ok}/{total}; kept bars identical: {bars_ok}/{total}\n")
    print("| style | grooves | acc. real | keep kick+snare | keep: overlap ratio | real bars 3-4 |"
          " regenerated bars 3-4 | drumify | onsets with kick/snare | kicks on an onset |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | " + " | ".join(f"{v:.2f}" for v in r[2:]) + " |")
    means = np.mean([r[2:] for r in rows], axis=0)
    print("| **mean** | | " + " | ".join(f"{v:.2f}" for v in means) + " |\n")


def groove_table(gv: dict) -> None:
    print("Groove (quantized at velocity 90, then played):\n")
    print("| playing | velocity r (mean) | timing error (16ths) | grid's error | "
          "velocity OA | offset OA |\n|---|---|---|---|---|---|")
    for name in ("model", "model, one draw", "humanize 1.0"):
        figs = np.array(gv[name], float)
        print(f"| {name} | {np.nanmean(figs[:, 0]):.3f} | {figs[:, 1].mean():.4f} | "
              f"{figs[:, 2].mean():.4f} | {overlap(gv[name + ' vel'], gv['real vel']):.3f} | "
              f"{overlap(gv[name + ' off'], gv['real off']):.3f} |")


if __name__ == "__main__":
    main()
