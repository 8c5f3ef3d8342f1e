"""Rendering benchmark: what each installed kit sounds like and what it costs, in one run.

    python bench/render.py [--repeats 9] [--kits "black pearl,standard (FluidR3_GM)"]

For each kit, on real GMD grooves (the first 4 bars of a funk, a jazz and a rock beat):

- render time, p50 and minimum of `--repeats` renders of the funk groove: the default (room
  reverb, loudness normalised), dry, and dry without normalising (what the mix costs);
- loudness (LUFS, `drumgen.mix.loudness`) of each style after normalisation, against the
  target, and the raw render's peak-to-loudness ratio (why the target leaves room);
- the snare and the kick hit alone, dry and raw, at velocities 30-127: spectral centroid
  (magnitude-weighted, first 100 ms) and RMS (first 0.5 s): louder hits should be brighter,
  not only louder;
- stereo balance (right minus left, dB) of single hits: hats, toms, kick and snare;
- encoding a 10-second loop (the funk groove at 96 bpm, default kit) to each format
  libsndfile writes that a browser plays: time (p50 / min) and size. Opus takes 48 kHz only:
  its time includes resampling (linear; `--encode-only` prints this table alone).

Figures vary with machine load: compare kits within one run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drumgen.constants import DRUMS  # noqa: E402
from drumgen.data import default_data_dir  # noqa: E402
from drumgen.kits import LOUDNESS_LUFS  # noqa: E402
from drumgen.mix import balance_db, loudness  # noqa: E402
from drumgen.pattern import Hit, Pattern  # noqa: E402
from drumgen.render import SAMPLE_RATE, Renderer  # noqa: E402

STYLES = ("funk", "jazz", "rock")
VELOCITIES = (30, 60, 90, 120, 127)


def groove(gmd: Path, style: str) -> Pattern:
    with open(gmd / "info.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["style"].split("/")[0] == style
                   and r["beat_type"] == "beat" and r["time_signature"] == "4-4"
                   and float(r["duration"]) > 30)
    return Pattern.from_midi(gmd / row["midi_filename"]).slice(0, 4)


def p50_min_ms(fn, repeats: int) -> str:
    """"p50 / min" of `repeats` timed calls, in ms (the minimum is the least disturbed by
    other work on a shared machine)."""
    fn()  # warm: the first render with a kit touches its samples and measures its pans
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return f"{1000 * statistics.median(times):.0f} / {1000 * min(times):.0f}"


def hit(r: Renderer, kit: str, drum: str, velocity: int) -> np.ndarray:
    """One dry, raw hit of `drum`, its first 0.5 s."""
    audio = r.render(Pattern([Hit(0, 0, DRUMS.index(drum), velocity)], 1, 120.0), kit,
                     reverb=False, normalised=False)
    return audio[: SAMPLE_RATE // 2].astype(np.float64)


def centroid(audio: np.ndarray) -> float:
    """Magnitude-weighted spectral centroid (Hz) of the hit's first 100 ms, mono."""
    magnitude = np.abs(np.fft.rfft(audio[: SAMPLE_RATE // 10].mean(axis=1)))
    freqs = np.fft.rfftfreq(SAMPLE_RATE // 10, 1 / SAMPLE_RATE)
    return float((magnitude * freqs).sum() / magnitude.sum())


#: (label, soundfile format, subtype, sample rate) of the encodings compared; the app's player
#: gets FLAC on its own machine and OGG Vorbis on a network, the download WAV
#: (`drumgen.render.encode`, `drumgen.service.player_audio`)
ENCODINGS = (("OGG Vorbis (the player's, on a network)", "OGG", "VORBIS", SAMPLE_RATE),
             ("OGG Opus", "OGG", "OPUS", 48000), ("MP3", "MP3", "MPEG_LAYER_III", SAMPLE_RATE),
             ("FLAC (the player's, on its own machine)", "FLAC", "PCM_16", SAMPLE_RATE),
             ("WAV (the download)", "WAV", "PCM_16", SAMPLE_RATE))


def encode_table(r: Renderer, funk: Pattern, repeats: int) -> None:
    import soundfile
    audio = r.render(dataclasses.replace(funk, tempo=96.0))
    seconds = len(audio) / SAMPLE_RATE
    print(f"\nEncoding a {seconds:.1f} s stereo loop, p50 / min of {repeats} (ms), and size")
    print("| format | time | size |\n|---|---|---|")
    for label, fmt, subtype, rate in ENCODINGS:
        def encode(fmt=fmt, subtype=subtype, rate=rate) -> bytes:
            data = audio
            if rate != SAMPLE_RATE:
                t = np.arange(round(seconds * rate)) / rate
                grid = np.arange(len(audio)) / SAMPLE_RATE
                data = np.stack([np.interp(t, grid, audio[:, c]) for c in (0, 1)], axis=1)
            buf = io.BytesIO()
            soundfile.write(buf, data, rate, format=fmt, subtype=subtype)
            return buf.getvalue()
        print(f"| {label} | {p50_min_ms(encode, repeats)} | {len(encode()) / 1000:.0f} KB |")


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio ** 2)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--kits", default="", help="comma-separated kit names (default: all)")
    parser.add_argument("--encode-only", action="store_true", help="only the encoding table")
    args = parser.parse_args(argv)
    gmd = default_data_dir()
    if gmd is None:
        sys.exit("bench/render.py needs the Groove MIDI Dataset (python -m drumgen data get)")
    start = time.perf_counter()
    r = Renderer()
    print(f"Renderer with {len(r.kits)} kits loaded in {time.perf_counter() - start:.2f} s")
    grooves = {s: groove(gmd, s) for s in STYLES}
    names = [n.strip() for n in args.kits.split(",") if n.strip()] or [k.name for k in r.kits]
    funk = grooves["funk"]
    encode_table(r, funk, args.repeats)
    if args.encode_only:
        return
    print(f"\nRender time, 4 bars of funk at {funk.tempo:g} bpm, p50 / min of {args.repeats} "
          "(ms)")
    print("| kit | default | dry | dry, raw |\n|---|---|---|---|")
    for name in names:
        cells = [p50_min_ms(lambda n=name, k=kw: r.render(funk, n, **k), args.repeats)
                 for kw in ({}, {"reverb": False}, {"reverb": False, "normalised": False})]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nLoudness after normalising (target {LOUDNESS_LUFS:g} LUFS), and the raw render's "
          "peak-to-loudness ratio (dB)")
    print("| kit | " + " | ".join(STYLES) + " | PLR " + " | PLR ".join(STYLES) + " |")
    print("|---" * (1 + 2 * len(STYLES)) + "|")
    for name in names:
        done = [loudness(r.render(grooves[s], name)) for s in STYLES]
        raw = [r.render(grooves[s], name, normalised=False) for s in STYLES]
        plr = [20 * np.log10(np.abs(a).max()) - loudness(a) for a in raw]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in done) + " | "
              + " | ".join(f"{v:.1f}" for v in plr) + " |")
    print("\nSingle dry, raw hits: spectral centroid (Hz) / RMS, by velocity")
    print("| kit | drum | " + " | ".join(f"v{v}" for v in VELOCITIES) + " |")
    print("|---|---|" + "---|" * len(VELOCITIES))
    for name in names:
        for drum in ("snare", "kick"):
            hits = [hit(r, name, drum, v) for v in VELOCITIES]
            print(f"| {name} | {drum} | " + " | ".join(
                f"{centroid(a):.0f} / {rms(a):.4f}" for a in hits) + " |")
    print("\nStereo balance of single hits, right minus left (dB; drummer's seat: hats left)")
    shown = ("kick", "snare", "closed_hat", "high_tom", "mid_tom", "low_tom", "crash", "ride")
    print("| kit | " + " | ".join(shown) + " |\n|---|" + "---|" * len(shown))
    for name in names:
        print(f"| {name} | " + " | ".join(
            f"{balance_db(hit(r, name, d, 100)):+.1f}" for d in shown) + " |")


if __name__ == "__main__":
    main()
