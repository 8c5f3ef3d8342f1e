"""Audio arithmetic on rendered loops: loudness (ITU-R BS.1770 K-weighting), normalising to
the loudness target, and stereo balance. Pure numpy: no synthesizer here."""

from __future__ import annotations

import functools

import numpy as np

from . import kits as kitdefs

SAMPLE_RATE = 44100
LOUDNESS_FRAME = 2048  # samples (46 ms); see `loudness`
#: A render peaking under this (-120 dBFS) is silence: FluidSynth's reverb settles on an
#: offset of about 1e-8 that never ends; the softest hit of any kit here (Black Pearl's crash
#: at velocity 1) peaks at 5e-6.
SILENCE_PEAK = 1e-6


@functools.lru_cache(maxsize=16)
def _k_weighting(n: int) -> np.ndarray:
    """|H|^2 of ITU-R BS.1770's K-weighting (a +4 dB high shelf from about 1.5 kHz and a
    38 Hz high-pass, as biquads from the RBJ cookbook, as pyloudnorm builds them) at the
    `n // 2 + 1` bins of an `n`-point rfft."""
    z = np.exp(-1j * np.pi * np.arange(n // 2 + 1) / (n // 2))  # z^-1 at each bin
    gain = np.ones(len(z))
    for kind, fc, q in (("shelf", 1500.0, 1 / np.sqrt(2)), ("highpass", 38.0, 0.5)):
        w0 = 2 * np.pi * fc / SAMPLE_RATE
        cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
        if kind == "shelf":
            a = 10 ** (4.0 / 40)
            b = (a * ((a + 1) + (a - 1) * cos + 2 * np.sqrt(a) * alpha),
                 -2 * a * ((a - 1) + (a + 1) * cos),
                 a * ((a + 1) + (a - 1) * cos - 2 * np.sqrt(a) * alpha))
            den = ((a + 1) - (a - 1) * cos + 2 * np.sqrt(a) * alpha,
                   2 * ((a - 1) - (a + 1) * cos),
                   (a + 1) - (a - 1) * cos - 2 * np.sqrt(a) * alpha)
        else:
            b = ((1 + cos) / 2, -(1 + cos), (1 + cos) / 2)
            den = (1 + alpha, -2 * cos, 1 - alpha)
        gain *= np.abs(np.polyval(b[::-1], z) / np.polyval(den[::-1], z)) ** 2
    return gain


@functools.lru_cache(maxsize=1)
def _bin_weights() -> np.ndarray:
    """K-weighting per rfft bin of a LOUDNESS_FRAME, doubled for the bins that stand for two
    (all but DC and Nyquist), repeated for the real and the imaginary part."""
    weights = _k_weighting(LOUDNESS_FRAME).copy()
    weights[1: LOUDNESS_FRAME // 2] *= 2
    return np.repeat(weights, 2).astype(np.float32)


def loudness(audio: np.ndarray) -> float:
    """Loudness of a stereo loop in LUFS: K-weighted mean square per ITU-R BS.1770, summed
    over the channels, over the whole loop and ungated (a loop has no silence to gate out).

    Computed in the frequency domain, frame by frame (Parseval): a 4-bar loop's length often
    has a large prime factor, which made one whole-loop FFT take 14-170 ms here; 2048-sample
    frames take about 5 ms and agree with it to within 0.04 dB on GMD grooves (measured on
    12 renders; tests/test_render.py checks 0.1 dB).
    -inf for silence."""
    frames = -(-len(audio) // LOUDNESS_FRAME)
    padded = np.zeros((2, frames * LOUDNESS_FRAME), np.float32)
    padded[:, : len(audio)] = audio.T
    spectrum = np.fft.rfft(padded.reshape(2 * frames, LOUDNESS_FRAME), axis=1)
    parts = spectrum.view(np.float32)  # real and imaginary parts, side by side
    mean_square = float(np.dot(np.einsum("ij,ij->j", parts, parts), _bin_weights()))
    mean_square /= LOUDNESS_FRAME * max(1, len(audio))
    return -0.691 + 10 * np.log10(mean_square) if mean_square > 0 else float("-inf")


def normalise(audio: np.ndarray) -> np.ndarray:
    """The loop scaled to `drumgen.kits.LOUDNESS_LUFS`, but never peaking over
    `drumgen.kits.PEAK_DBFS` (a quiet, peaky loop stays under the target). Silence (under
    SILENCE_PEAK) comes back as zeros: scaled up, the reverb's offset would be loud noise."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak < SILENCE_PEAK:
        return np.zeros_like(audio)
    gain_db = min(kitdefs.LOUDNESS_LUFS - loudness(audio),
                  kitdefs.PEAK_DBFS - 20 * np.log10(peak))
    return audio * np.float32(10 ** (gain_db / 20))


def balance_db(audio: np.ndarray) -> float:
    """Stereo balance, right minus left RMS in dB (+inf/-inf for one silent side)."""
    left, right = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=0))
    with np.errstate(divide="ignore"):
        return float(20 * np.log10(right / left)) if left or right else 0.0
