"""Synthesize the drumgen drum kit and write it as a SoundFont 2 file.

Every sample is generated here from sines, square waves and seeded noise; nothing is recorded
or copied, so the output can be released under CC0-1.0 (see soundfonts/LICENSE).

Usage: python soundfonts/make_kit.py [output.sf2]   (default: soundfonts/drumgen-kit.sf2)

Only numpy and the standard library are used. The noise comes from the legacy
``np.random.RandomState``, whose stream numpy keeps frozen across versions, so a rebuild is
byte-identical to the shipped file.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

SR = 44100
SEED = 20240601
DEFAULT_OUT = Path(__file__).resolve().parent / "drumgen-kit.sf2"
LICENSE_LINE = "CC0-1.0 public domain dedication. drumgen project, synthesized from scratch."

# The six tuned square waves of the TR-808 cymbal circuit: an inharmonic, metallic cluster.
METAL_HZ = (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)

# SoundFont generator numbers (SF2.04 spec, section 8.1.2).
GEN_RELEASE_VOL_ENV = 38
GEN_INSTRUMENT = 41
GEN_KEY_RANGE = 43
GEN_SAMPLE_ID = 53
GEN_SAMPLE_MODES = 54
GEN_EXCLUSIVE_CLASS = 57
GEN_OVERRIDING_ROOT_KEY = 58

# Release in timecents (1200 * log2(seconds)); 8000 (~100 s) is the spec's maximum. Drums are
# one-shots: the release should barely move within a sub-second sample, so a hit keeps ringing
# after an early note-off and the voice ends with the sample itself (sampleModes 0 = no loop).
RELEASE_TIMECENTS = 8000
HAT_CLASS = 1  # closed and open hat share it, so a closed hat chokes a ringing open hat

# Harder hits sound brighter, as a real drum's do: every zone carries one modulator, note-on
# velocity (linear, unipolar, max to min) lowering the filter cutoff (initialFilterFc, from
# its 13500-cent default of 19.9 kHz) by up to VELOCITY_FILTER_CENTS: -1270 cents (9.6 kHz)
# at velocity 60, none at 127. One sample a drum, so this is its whole velocity response.
GEN_INITIAL_FILTER_FC = 8
MOD_VELOCITY_DOWN = 2 | 1 << 8  # source: note-on velocity, direction max -> min
VELOCITY_FILTER_CENTS = -2400

# General MIDI percussion keys for each sound.
KEYMAP = {
    "kick": (35, 36),
    "snare": (37, 38, 39, 40),
    "hat_closed": (42, 44),
    "hat_open": (46,),
    "tom_low": (41, 43),
    "tom_mid": (45, 47),
    "tom_high": (48, 50),
    "crash": (49, 52, 55, 57),
    "ride": (51, 53, 59),
}


# --- signal helpers ----------------------------------------------------------------------


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SR)) / SR


def _decay(t: np.ndarray, tau: float) -> np.ndarray:
    return np.exp(-t / tau)


def _sweep(t: np.ndarray, f_end: float, f_start: float, tau: float) -> np.ndarray:
    """Sine whose pitch glides exponentially from f_start to f_end (integrated phase)."""
    freq = f_end + (f_start - f_end) * np.exp(-t / tau)
    return np.sin(2 * np.pi * np.cumsum(freq) / SR)


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Brick-wall band-pass via FFT: no IIR state, fast, and exactly repeatable."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    spec[(freqs < lo) | (freqs > hi)] = 0
    return np.fft.irfft(spec, len(x))


def _metal(t: np.ndarray) -> np.ndarray:
    """Sum of detuned square waves, the classic analog cymbal/hat source."""
    return sum(np.sign(np.sin(2 * np.pi * f * t)) for f in METAL_HZ) / len(METAL_HZ)


def _finish(x: np.ndarray, peak: float) -> np.ndarray:
    """Short fade-in/out so samples start and end at zero (no clicks), then set the level."""
    n_in, n_out = int(0.0005 * SR), int(0.01 * SR)
    x = x.copy()
    x[:n_in] *= np.linspace(0, 1, n_in)
    x[-n_out:] *= np.linspace(1, 0, n_out)
    return x * (peak / np.max(np.abs(x)))


# --- the sounds --------------------------------------------------------------------------


def kick(rng: np.random.RandomState) -> np.ndarray:
    t = _t(0.5)
    body = _sweep(t, 48, 160, 0.03) * _decay(t, 0.16)
    click = _band(rng.uniform(-1, 1, len(t)), 1000, 5000) * _decay(t, 0.002)
    return _finish(np.tanh(1.5 * body) + 0.15 * click, 0.95)


def snare(rng: np.random.RandomState) -> np.ndarray:
    t = _t(0.35)
    tone = (np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * _decay(t, 0.04)
    rattle = _band(rng.uniform(-1, 1, len(t)), 1500, 11000) * _decay(t, 0.07)
    return _finish(0.7 * tone + rattle, 0.9)


def _hat(rng: np.random.RandomState, seconds: float, tau: float) -> np.ndarray:
    t = _t(seconds)
    src = 0.6 * _metal(t) + rng.uniform(-1, 1, len(t))
    return _band(src, 6500, 18000) * _decay(t, tau)


def hat_closed(rng: np.random.RandomState) -> np.ndarray:
    return _finish(_hat(rng, 0.12, 0.025), 0.55)


def hat_open(rng: np.random.RandomState) -> np.ndarray:
    return _finish(_hat(rng, 0.6, 0.18), 0.5)


def _tom(rng: np.random.RandomState, pitch: float) -> np.ndarray:
    t = _t(0.55)
    body = _sweep(t, pitch, pitch * 1.6, 0.04) * _decay(t, 0.18)
    stick = _band(rng.uniform(-1, 1, len(t)), 800, 6000) * _decay(t, 0.006)
    return _finish(np.tanh(1.2 * body) + 0.12 * stick, 0.85)


def tom_low(rng: np.random.RandomState) -> np.ndarray:
    return _tom(rng, 90)


def tom_mid(rng: np.random.RandomState) -> np.ndarray:
    return _tom(rng, 128)


def tom_high(rng: np.random.RandomState) -> np.ndarray:
    return _tom(rng, 175)


def crash(rng: np.random.RandomState) -> np.ndarray:
    t = _t(0.95)
    wash = _band(rng.uniform(-1, 1, len(t)) + 0.4 * _metal(t * 1.7), 3000, 16000)
    return _finish(wash * _decay(t, 0.3), 0.6)


def ride(rng: np.random.RandomState) -> np.ndarray:
    t = _t(0.9)
    # Inharmonic partials give the bell-like "ping"; quieter high noise gives the wash.
    ping = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((3150, 1.0), (4730, 0.6), (6410, 0.4)))
    wash = _band(rng.uniform(-1, 1, len(t)), 5000, 15000)
    return _finish(0.5 * ping * _decay(t, 0.35) + 0.35 * wash * _decay(t, 0.25), 0.5)


SOUNDS = (kick, snare, hat_closed, hat_open, tom_low, tom_mid, tom_high, crash, ride)


def synthesize() -> list[tuple[str, np.ndarray]]:
    """All samples as (name, int16 array), generated in a fixed order from one seeded stream."""
    rng = np.random.RandomState(SEED)
    out = []
    for fn in SOUNDS:
        pcm = np.round(np.clip(fn(rng), -1, 1) * 32767).astype("<i2")
        out.append((fn.__name__, pcm))
    return out


# --- RIFF / SoundFont writing ------------------------------------------------------------


def _chunk(tag: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""  # RIFF chunks are word aligned
    return tag + struct.pack("<I", len(data)) + data + pad


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _zstr(text: str) -> bytes:
    """Zero-terminated string padded to even length, as INFO strings must be."""
    raw = text.encode("ascii") + b"\0"
    return raw + b"\0" * (len(raw) % 2)


def _name20(text: str) -> bytes:
    return text.encode("ascii")[:19].ljust(20, b"\0")


def _info() -> bytes:
    return _list(
        b"INFO",
        _chunk(b"ifil", struct.pack("<HH", 2, 1)),
        _chunk(b"isng", _zstr("EMU8000")),
        _chunk(b"INAM", _zstr("drumgen Kit")),
        _chunk(b"ICOP", _zstr(LICENSE_LINE)),
    )


GUARD = 46  # the spec requires at least 46 zero sample points after each sample


def _sdta(samples: list[tuple[str, np.ndarray]]) -> tuple[bytes, list[tuple[int, int]]]:
    """Sample data plus each sample's (start, end) in sample points, end exclusive."""
    parts, spans, pos = [], [], 0
    for _, pcm in samples:
        parts.append(pcm.tobytes() + b"\0\0" * GUARD)
        spans.append((pos, pos + len(pcm)))
        pos += len(pcm) + GUARD
    return _list(b"sdta", _chunk(b"smpl", b"".join(parts))), spans


def _gen(oper: int, amount: int) -> bytes:
    return struct.pack("<Hh", oper, amount)


def _gen_range(oper: int, lo: int, hi: int) -> bytes:
    return struct.pack("<HBB", oper, lo, hi)


def _inst_zones(names: list[str]) -> list[list[bytes]]:
    """One zone per key; keyRange first and sampleID last, as the spec orders them."""
    zones = []
    for sample_id, name in enumerate(names):
        for key in KEYMAP[name]:
            gens = [
                _gen_range(GEN_KEY_RANGE, key, key),
                _gen(GEN_RELEASE_VOL_ENV, RELEASE_TIMECENTS),
                _gen(GEN_SAMPLE_MODES, 0),
                _gen(GEN_OVERRIDING_ROOT_KEY, key),  # play at recorded pitch on every key
            ]
            if name.startswith("hat"):
                gens.append(_gen(GEN_EXCLUSIVE_CLASS, HAT_CLASS))
            gens.append(_gen(GEN_SAMPLE_ID, sample_id))
            zones.append(gens)
    return sorted(zones, key=lambda z: z[0])  # by key: tidy for editors, harmless to synths


def _bags(zones: list[list[bytes]], mods_per_zone: int = 0) -> bytes:
    """Bag records (gen index, mod index) plus the terminal bag."""
    out, gen_ndx, mod_ndx = b"", 0, 0
    for gens in zones:
        out += struct.pack("<HH", gen_ndx, mod_ndx)
        gen_ndx += len(gens)
        mod_ndx += mods_per_zone
    return out + struct.pack("<HH", gen_ndx, mod_ndx)


def _velocity_filter_mod() -> bytes:
    """sfModList record: source, destination, amount, amount source (none), transform."""
    return struct.pack("<HHhHH", MOD_VELOCITY_DOWN, GEN_INITIAL_FILTER_FC,
                       VELOCITY_FILTER_CENTS, 0, 0)


def _gens(zones: list[list[bytes]]) -> bytes:
    return b"".join(b"".join(z) for z in zones) + b"\0" * 4  # terminal generator


def _shdr(samples: list[tuple[str, np.ndarray]], spans: list[tuple[int, int]]) -> bytes:
    out = b""
    for (name, _), (start, end) in zip(samples, spans, strict=True):
        # Loop points are unused (sampleModes 0) but must lie inside the sample.
        out += _name20(name) + struct.pack("<5IBbHH", start, end, start, end, SR, 60, 0, 0, 1)
    return out + _name20("EOS") + b"\0" * 26


def _phdr(name: str, preset: int, bank: int, bag: int) -> bytes:
    """Preset header: name, preset, bank, first bag; library/genre/morphology are reserved."""
    return _name20(name) + struct.pack("<HHH3I", preset, bank, bag, 0, 0, 0)


def _inst(name: str, bag: int) -> bytes:
    return _name20(name) + struct.pack("<H", bag)


def _pdta(samples: list[tuple[str, np.ndarray]], spans: list[tuple[int, int]]) -> bytes:
    inst_zones = _inst_zones([name for name, _ in samples])
    preset_zones = [[_gen(GEN_INSTRUMENT, 0)]]  # one zone: the whole kit instrument
    mod_terminal = b"\0" * 10
    return _list(
        b"pdta",
        _chunk(
            b"phdr", _phdr("drumgen Standard", 0, 128, 0) + _phdr("EOP", 0, 0, len(preset_zones))
        ),
        _chunk(b"pbag", _bags(preset_zones)),
        _chunk(b"pmod", mod_terminal),
        _chunk(b"pgen", _gens(preset_zones)),
        _chunk(b"inst", _inst("drumgen Kit", 0) + _inst("EOI", len(inst_zones))),
        _chunk(b"ibag", _bags(inst_zones, 1)),
        _chunk(b"imod", _velocity_filter_mod() * len(inst_zones) + mod_terminal),
        _chunk(b"igen", _gens(inst_zones)),
        _chunk(b"shdr", _shdr(samples, spans)),
    )


def soundfont_bytes() -> bytes:
    samples = synthesize()
    sdta, spans = _sdta(samples)
    return _chunk(b"RIFF", b"sfbk" + _info() + sdta + _pdta(samples, spans))


def build(path: str | Path = DEFAULT_OUT) -> Path:
    """Write the kit to ``path`` and return it."""
    path = Path(path)
    path.write_bytes(soundfont_bytes())
    return path


if __name__ == "__main__":
    out = build(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
