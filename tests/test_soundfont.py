"""The shipped drum kit soundfont: it loads, every drum sounds, and it rebuilds identically."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import fluidsynth  # installed with the app; a missing library must fail here, not skip
import numpy as np
import pytest

SOUNDFONTS = Path(__file__).resolve().parent.parent / "soundfonts"
KIT = SOUNDFONTS / "drumgen-kit.sf2"
SR = 44100
DRUM_CHANNEL = 9  # MIDI channel 10
GM_NOTES = {  # the nine drums drumgen plays, as General MIDI keys
    "kick": 36,
    "snare": 38,
    "hat_closed": 42,
    "hat_open": 46,
    "tom_low": 43,
    "tom_mid": 47,
    "tom_high": 50,
    "crash": 49,
    "ride": 51,
}
PEAK_MIN = 0.05  # raw full-scale peak at gain 1.0; the quietest drum reaches about 0.14


def _load_make_kit():
    """soundfonts/ is not a package, so import the script from its path."""
    spec = importlib.util.spec_from_file_location("make_kit", SOUNDFONTS / "make_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(note: int, seconds: float = 1.2) -> np.ndarray:
    """Left channel of one hit, as floats in [-1, 1]; released after 0.1 s like a short note.

    A fresh synth per hit keeps hits independent; reverb and chorus are off so the spectrum is
    the sample's own.
    """
    synth = fluidsynth.Synth(
        gain=1.0, samplerate=SR, **{"synth.reverb.active": 0, "synth.chorus.active": 0}
    )
    try:
        sfid = synth.sfload(str(KIT))
        assert sfid >= 0, "FluidSynth could not load the kit"
        assert synth.program_select(DRUM_CHANNEL, sfid, 128, 0) == 0
        synth.noteon(DRUM_CHANNEL, note, 100)
        held = synth.get_samples(int(0.1 * SR))
        synth.noteoff(DRUM_CHANNEL, note)
        rest = synth.get_samples(int((seconds - 0.1) * SR))
    finally:
        synth.delete()
    stereo = np.concatenate([held, rest]).astype(np.float64).reshape(-1, 2)
    return stereo[:, 0] / 32768


def _band_fraction(audio: np.ndarray, lo: float, hi: float) -> float:
    """Share of the signal's energy between lo and hi Hz."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


@pytest.fixture(scope="module")
def hits() -> dict[str, np.ndarray]:
    return {name: _render(note) for name, note in GM_NOTES.items()}


def test_kit_is_small_and_named():
    assert KIT.stat().st_size < 2_000_000
    synth = fluidsynth.Synth()
    try:
        sfid = synth.sfload(str(KIT))
        assert synth.sfpreset_name(sfid, 128, 0) == "drumgen Standard"
    finally:
        synth.delete()


@pytest.mark.parametrize("name", GM_NOTES)
def test_each_drum_sounds(hits, name):
    peak = np.max(np.abs(hits[name]))
    assert peak > PEAK_MIN, f"{name} peak {peak:.4f}"
    assert peak < 1.0, f"{name} clips"


def test_every_mapped_key_sounds_and_others_are_silent():
    for keys in _load_make_kit().KEYMAP.values():
        for key in keys:
            assert np.max(np.abs(_render(key, 0.3))) > PEAK_MIN, f"key {key}"
    # Outside the kit there is no zone: only FluidSynth's 1-LSB dither remains.
    assert np.max(np.abs(_render(60, 0.3))) < 1e-3


def test_kick_is_low_and_closed_hat_is_high(hits):
    assert _band_fraction(hits["kick"], 0, 200) > 0.8
    assert _band_fraction(hits["hat_closed"], 5000, SR / 2 + 1) > 0.8


def test_hits_ring_out_after_note_off(hits):
    # The crash is released after 0.1 s but its sample lasts ~0.95 s: it must still sound late.
    late = hits["crash"][int(0.7 * SR) : int(0.8 * SR)]
    assert np.sqrt(np.mean(late**2)) > 1e-3


def test_rebuild_is_byte_identical(tmp_path):
    rebuilt = _load_make_kit().build(tmp_path / "kit.sf2")
    assert rebuilt.read_bytes() == KIT.read_bytes(), "rerun soundfonts/make_kit.py and commit"
