"""Audio rendering and the drum grid, on real Groove MIDI Dataset grooves.

Loudness is always measured on the raw, unnormalised render (a normalised silent render would
look loud: pretty_midi's `fluidsynth()` does exactly that). The repository's own kit must
always work; Debian's FluidR3 is checked when it is installed.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import soundfile

from drumgen import grid, kits
from drumgen.constants import DRUM_LABELS, DRUMS
from drumgen.mix import balance_db, loudness
from drumgen.pattern import Hit, Pattern
from drumgen.render import (
    REPO_SOUNDFONTS,
    SAMPLE_RATE,
    Renderer,
    RenderError,
    UnknownKit,
    encode,
    soundfont_paths,
)

ROOT = Path(__file__).resolve().parent.parent
REPO_KIT = ROOT / "soundfonts" / "drumgen-kit.sf2"
KIT_NAME = "standard (drumgen-kit)"
FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
BLACK_PEARL = Path("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2")  # avldrums.lv2-soundfont
BLOCK_S = 64 / SAMPLE_RATE  # FluidSynth starts notes on 64-sample blocks


def loop_seconds(pattern: Pattern) -> float:
    return pattern.bars * 4 * 60 / pattern.tempo  # 4/4: four beats a bar


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def gmd_beat(gmd, style: str) -> Pattern:
    """The first 4 bars of a real 4/4 beat of `style` from GMD's train split."""
    with open(gmd / "info.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["style"].split("/")[0] == style
                   and r["beat_type"] == "beat" and r["time_signature"] == "4-4"
                   and r["split"] == "train" and float(r["duration"]) > 30)
    return Pattern.from_midi(gmd / row["midi_filename"]).slice(0, 4)


@pytest.fixture(scope="module")
def groove(gmd) -> Pattern:
    """A funk beat."""
    pattern = gmd_beat(gmd, "funk")
    assert pattern.bars == 4 and len(pattern.hits) > 30
    return pattern


@pytest.fixture(scope="module")
def jazz(gmd) -> Pattern:
    """A jazz beat: ride and soft snare, where funk is hats and backbeat."""
    pattern = gmd_beat(gmd, "jazz")
    assert pattern.bars == 4 and any(DRUMS[h.drum] == "ride" for h in pattern.hits)
    return pattern


def one_hit(renderer, kit: str, drum: str, velocity: int = 100) -> np.ndarray:
    """A single dry hit as FluidSynth made it (no normalising), its first 0.5 s."""
    pattern = Pattern([Hit(0, 0, DRUMS.index(drum), velocity)], 1, 120.0)
    return renderer.render(pattern, kit, reverb=False, normalised=False)[: SAMPLE_RATE // 2]


def centroid(audio: np.ndarray) -> float:
    """Magnitude-weighted spectral centroid (Hz) of the first 100 ms, mono."""
    n = SAMPLE_RATE // 10
    magnitude = np.abs(np.fft.rfft(audio[:n].astype(np.float64).mean(axis=1)))
    return float((magnitude * np.fft.rfftfreq(n, 1 / SAMPLE_RATE)).sum() / magnitude.sum())


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    r = Renderer.default()
    assert r.available, f"audio must work here: {r.reason}"
    return r


def test_the_best_installed_kit_plays_by_default(renderer):
    assert renderer.reason == ""
    ranks = [k.rank for k in renderer.kits]
    assert ranks == sorted(ranks)  # multi-sampled acoustic, then GM, then ours
    first = renderer.kits[0]
    assert renderer.kit(None) == first == renderer.choose()
    ours = renderer.kit(KIT_NAME.upper())
    assert ours.soundfont.resolve() == REPO_KIT.resolve() and (ours.bank, ours.program) == (128, 0)
    assert ours == renderer.kits[-1]  # the fallback, always there, last
    if BLACK_PEARL.is_file():  # AVL's acoustic kits sit on bank 0, not the GM bank 128
        assert first.name == "black pearl (Black_Pearl_4_LV2)" and first.bank == 0
    elif FLUID_R3.is_file():
        assert first.name == "standard (FluidR3_GM)"
    # a short name: the best soundfont with it (FluidR3's standard before ours)
    standard = renderer.kit("standard")
    assert standard.soundfont.resolve() == (FLUID_R3 if FLUID_R3.is_file() else REPO_KIT).resolve()
    with pytest.raises(UnknownKit, match=r"^kit: .*'cowbell'.*standard \(drumgen-kit\)"):
        renderer.kit("cowbell")


def test_the_kit_follows_the_style_or_preset_and_the_users_choice_wins(renderer):
    names = {k.name for k in renderer.kits}
    best = renderer.kits[0]
    assert renderer.choose("funk") == best  # a style with no kit of its own: the best
    jazz = renderer.choose("jazz")
    if "jazz (FluidR3_GM)" in names:
        assert jazz.name == "jazz (FluidR3_GM)"
    else:
        assert jazz == best
    assert renderer.choose("Metro Boomin").short == ("808" if "808 (FluidR3_GM)" in names
                                                     else best.short)
    rock = renderer.choose("rock")
    assert rock.short == ("red zeppelin" if any("red zeppelin" in n for n in names)
                          else best.short)
    # the user's choice always wins, over a style and over a preset
    assert renderer.choose("jazz", KIT_NAME).name == KIT_NAME
    assert renderer.choose("Metro Boomin", KIT_NAME).name == KIT_NAME
    with pytest.raises(UnknownKit, match="^kit: "):
        renderer.choose("jazz", "cowbell")


def test_the_repository_kit_alone_is_the_fallback(gmd):
    """No system soundfont: only the repository's own folder. A real render, not a mock."""
    alone = Renderer(soundfonts=sorted(REPO_SOUNDFONTS.glob("*.sf[23]")))
    assert alone.available and [k.name for k in alone.kits] == [KIT_NAME]
    for style in ("funk", "jazz", "Metro Boomin", "rock"):
        assert alone.choose(style).name == KIT_NAME  # the style's kit is not there: ours
    audio = alone.render(gmd_beat(gmd, "funk"))
    assert rms(audio) > 0.002 and min(rms(audio[:, 0]), rms(audio[:, 1])) > 0.001
    assert abs(loudness(audio) - kits.LOUDNESS_LUFS) <= 1.5
    assert balance_db(one_hit(alone, KIT_NAME, "closed_hat")) < -3


def test_every_installed_kit_sounds_at_the_loudness_target(renderer, groove, jazz):
    """Every installed kit (at least three where FluidR3 or AVL is installed), two styles:
    audible on both sides and within 1.5 dB of the target."""
    assert len(renderer.kits) >= (3 if FLUID_R3.is_file() else 1)
    for kit in renderer.kits:
        for pattern in (groove, jazz):
            audio = renderer.render(pattern, kit.name)
            assert min(rms(audio[:, 0]), rms(audio[:, 1])) > 0.002, kit.name
            level = loudness(audio)
            assert abs(level - kits.LOUDNESS_LUFS) <= 1.5, (kit.name, level)
            assert float(np.abs(audio).max()) <= 10 ** (kits.PEAK_DBFS / 20) + 1e-6


def test_every_kit_is_heard_from_the_drummers_seat(renderer):
    """Hats to the left, toms spread from high (left) to floor (right), kick and snare
    centred, whatever image the soundfont itself gives."""
    for kit in renderer.kits:
        side = {d: balance_db(one_hit(renderer, kit.name, d)) for d in
                ("kick", "snare", "closed_hat", "open_hat", "high_tom", "mid_tom", "low_tom")}
        assert abs(side["kick"]) < 1.0 and abs(side["snare"]) < 1.0, (kit.name, side)
        assert side["closed_hat"] < -3 and side["open_hat"] < -3, (kit.name, side)
        assert side["high_tom"] < -2 < 2 < side["low_tom"], (kit.name, side)
        assert side["high_tom"] <= side["mid_tom"] <= side["low_tom"], (kit.name, side)


def test_loudness_reads_the_standards_reference_tone():
    """ITU-R BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS; the other channel
    adds its power (+3 dB); K-weighting cuts 25 Hz and lifts 10 kHz."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    tone = np.zeros((len(t), 2), np.float32)
    tone[:, 0] = np.sin(2 * np.pi * 997 * t)
    assert loudness(tone) == pytest.approx(-3.01, abs=0.05)
    tone[:, 1] = tone[:, 0]
    assert loudness(tone) == pytest.approx(0.0, abs=0.06)
    low, high = tone.copy(), tone.copy()
    low[:, 0] = np.sin(2 * np.pi * 25 * t)
    high[:, 0] = np.sin(2 * np.pi * 10000 * t)
    low[:, 1] = high[:, 1] = 0
    assert loudness(low) < -9 and loudness(high) > 0
    assert loudness(np.zeros((1000, 2), np.float32)) == float("-inf")


def test_loudness_by_frames_agrees_with_the_whole_loop(renderer, jazz):
    from drumgen.mix import _k_weighting
    audio = renderer.render(jazz).astype(np.float64)
    n = len(audio)
    power = np.abs(np.fft.rfft(audio, axis=0)) ** 2 * _k_weighting(n)[:, None]
    power[1: (n + 1) // 2] *= 2
    whole = -0.691 + 10 * np.log10(power.sum() / n ** 2)
    assert abs(loudness(audio) - whole) < 0.1


def test_the_room_reverb_rings_on_and_can_be_turned_off(renderer, groove):
    snare = Pattern([Hit(0, 0, 1, 110)], 2, 120.0)  # one snare, then 3.9 s of nothing
    wet, dry = renderer.render(snare), renderer.render(snare, reverb=False)
    late = slice(int(0.6 * SAMPLE_RATE), int(1.2 * SAMPLE_RATE))
    assert rms(wet[late]) > 3 * rms(dry[late])  # the room carries on after the hit
    assert rms(wet[late]) < 0.3 * rms(wet[: int(0.1 * SAMPLE_RATE)])  # a light one
    off = Renderer(reverb=False)
    assert np.array_equal(off.render(groove), renderer.render(groove, reverb=False))
    assert not np.allclose(renderer.render(groove), off.render(groove), atol=1e-3)


def test_the_ring_out_and_the_room_fold_onto_the_loops_start(renderer):
    """A snare on the last 16th of a 1-bar loop, room on: the loop sounds like the middle bar
    of that bar played three times (its ring-out and reverb carried over the bar line), to
    within 1 dB in every 46 ms window. 105 bpm puts each bar on FluidSynth's 64-sample
    blocks, so both renders start their notes alike."""
    def envelope(audio):
        frames = len(audio) // 2048
        windows = audio[: frames * 2048].astype(np.float64).reshape(frames, 2048, 2)
        return 10 * np.log10(np.mean(windows ** 2, axis=(1, 2)) + 1e-30)

    for kit in renderer.kits:
        loop = renderer.render(Pattern([Hit(0, 15, 1, 120)], 1, 105.0), kit.name,
                               normalised=False)
        three = renderer.render(Pattern([Hit(b, 15, 1, 120) for b in range(3)], 3, 105.0),
                                kit.name, normalised=False)
        ours, steady = envelope(loop), envelope(three[len(loop): 2 * len(loop)])
        audible = ours > ours.max() - 60
        assert np.abs(ours - steady)[audible].max() < 1.0, kit.name
        assert ours[0] > ours.max() - 40, kit.name  # the start carries the ring-out


def test_louder_hits_are_brighter_not_only_louder(renderer):
    """AVL's Black Pearl has velocity layers, FluidR3 a velocity filter, and our kit a
    velocity-to-cutoff modulator (soundfonts/make_kit.py): a harder snare is louder and
    brighter. (Red Zeppelin's layers get louder but not brighter: not asserted.)"""
    names = [KIT_NAME] + [n for n in ("black pearl", "standard (FluidR3_GM)")
                          if any(n in k.name for k in renderer.kits)]
    for name in names:
        soft, hard = one_hit(renderer, name, "snare", 60), one_hit(renderer, name, "snare", 127)
        assert rms(hard) > 2 * rms(soft), name
        assert centroid(hard) > 1.03 * centroid(soft), (name, centroid(soft), centroid(hard))


def test_render_is_one_exact_loop_and_audible(renderer, groove):
    audio = renderer.render(groove)
    assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[1] == 2
    assert len(audio) == round(loop_seconds(groove) * SAMPLE_RATE)
    # the raw signal: clearly audible, not clipping, sound on both channels
    peak = float(np.abs(audio).max())
    assert 0.02 < peak < 1.0, peak
    assert rms(audio) > 0.002
    assert min(rms(audio[:, 0]), rms(audio[:, 1])) > 0.001
    assert np.mean(np.abs(audio) >= 1.0) == 0.0
    # the sound follows the pattern: every beat with a firm hit has energy, beats with no hits
    # at all (GMD grooves often start with a pickup) are much quieter
    beats = np.array_split(audio, groove.bars * 4)
    played = {(h.bar * 16 + h.step) // 4 for h in groove.hits if h.velocity >= 40}
    assert len(played) >= 10
    assert min(rms(beats[i]) for i in played) > 0.0005
    touched = {(h.bar * 16 + h.step) // 4 for h in groove.hits}
    empty = [rms(b) for i, b in enumerate(beats) if i not in touched]
    if empty:
        assert max(empty) < 0.5 * min(rms(beats[i]) for i in played)


def test_a_hit_sounds_where_the_pattern_puts_it(renderer):
    pattern = Pattern([Hit(1, 4, 0, 110)], 4, 120.0)  # a kick on beat 2 of bar 2: 2.5 s
    audio = renderer.render(pattern)
    assert len(audio) == round(8.0 * SAMPLE_RATE)
    loud = np.nonzero(np.abs(audio).max(axis=1) > 1e-3)[0]
    assert len(loud), "the kick is silent"
    onset = loud[0] / SAMPLE_RATE
    assert abs(onset - 2.5) <= 2 * BLOCK_S, onset
    assert float(np.abs(audio[: int(2.4 * SAMPLE_RATE)]).max()) < 1e-4  # silence before it


def test_a_hit_before_the_first_downbeat_wraps_to_the_loop_end(renderer):
    early = Pattern([Hit(0, 0, 1, 110, -0.4)], 2, 120.0)  # 50 ms ahead of the downbeat
    audio = renderer.render(early)
    loud = np.nonzero(np.abs(audio).max(axis=1) > 1e-3)[0]
    assert (len(audio) - loud[-1]) / SAMPLE_RATE < 0.06 + 2 * BLOCK_S  # sounds at the end
    assert rms(audio[: len(audio) // 2]) > 1e-4  # and rings on over the loop's start


def test_an_empty_pattern_renders_silence(renderer):
    audio = renderer.render(Pattern([], 2, 90.0))
    assert len(audio) == round(2 * 4 * 60 / 90 * SAMPLE_RATE)
    assert np.count_nonzero(audio) == 0  # not the reverb's offset, normalised up to noise
    for kit in renderer.kits:  # but the softest hit is no silence
        whisper = renderer.render(Pattern([Hit(0, 0, 7, 1)], 1, 90.0), kit.name)
        assert float(np.abs(whisper).max()) > 0.1, kit.name


def test_ogg_is_much_smaller_than_wav_and_decodes_to_the_loop(renderer, groove):
    audio = renderer.render(groove)
    ogg, wav = encode(audio, "OGG"), encode(audio, "WAV")
    assert ogg[:4] == b"OggS" and wav[:4] == b"RIFF"
    assert len(ogg) * 5 < len(wav), (len(ogg), len(wav))
    seconds = loop_seconds(groove)
    for data, tolerance in ((ogg, 0.01), (wav, 1 / SAMPLE_RATE)):
        decoded, rate = soundfile.read(io.BytesIO(data), dtype="float32")
        assert rate == SAMPLE_RATE and decoded.shape[1] == 2
        assert abs(len(decoded) / rate - seconds) <= tolerance
        assert abs(rms(decoded) - rms(audio)) < 0.2 * rms(audio)
    decoded, _ = soundfile.read(io.BytesIO(wav), dtype="float32")
    assert np.abs(decoded - audio).max() < 2 / 32768  # 16-bit PCM of the same samples


def test_the_player_audio_is_flac_for_this_machine_and_ogg_for_a_network(monkeypatch, renderer):
    """`DRUMGEN_AUDIO`: "auto" plays FLAC when the app serves loopback only and OGG Vorbis on
    a network or a share link; a bad value is refused by name. The service writes what it is
    set to, and FLAC holds the .wav's samples (to one 16-bit step: libsndfile rounds floats
    for FLAC a hair differently than for WAV)."""
    from drumgen import service
    from drumgen.generate import Request
    monkeypatch.delenv("DRUMGEN_AUDIO", raising=False)
    assert service.player_audio("127.0.0.1") == ".flac"
    assert service.player_audio("localhost", share=True) == ".ogg"
    assert service.player_audio("0.0.0.0") == ".ogg"
    monkeypatch.setenv("DRUMGEN_AUDIO", "OGG")
    assert service.player_audio("127.0.0.1") == ".ogg"
    monkeypatch.setenv("DRUMGEN_AUDIO", "mp3")
    with pytest.raises(ValueError, match="DRUMGEN_AUDIO must be one of auto, ogg, flac; got 'mp3'"):
        service.player_audio("127.0.0.1")
    with pytest.raises(ValueError, match="the player's audio is .ogg or .flac"):
        service.set_player_audio(".mp3")
    with pytest.raises(ValueError, match="audio format must be one of .ogg, .flac, .wav"):
        encode(np.zeros((8, 2), np.float32), "MP3")
    service.set_player_audio(".flac")
    try:
        result = service.generate(Request(style="funk", bars=1, seed=2))
    finally:
        service.set_player_audio(".ogg")
    take = result.takes[0]
    assert take.audio.suffix == ".flac" and soundfile.info(take.audio).format == "FLAC"
    assert service.finish(result) and take.wav.suffix == ".wav"
    flac, rate = soundfile.read(take.audio, dtype="int16")
    wav, _ = soundfile.read(take.wav, dtype="int16")
    assert rate == SAMPLE_RATE and flac.shape == wav.shape
    assert np.abs(flac.astype(int) - wav).max() <= 1
    assert service.generate(Request(style="funk", bars=1, seed=2)).takes[0].audio.suffix == ".ogg"


def test_write_wav_and_to_ogg(renderer, groove, tmp_path):
    path = renderer.write_wav(groove, tmp_path / "loop.wav")
    info = soundfile.info(str(path))
    assert info.samplerate == SAMPLE_RATE and info.channels == 2
    assert abs(info.duration - loop_seconds(groove)) < 1e-3
    assert renderer.to_ogg(groove)[:4] == b"OggS"


def test_renders_do_not_depend_on_what_was_rendered_before(renderer, groove):
    first = renderer.render(groove)
    # busy crashes and rides, long ring-outs, an odd length, other kits
    busy = Pattern([Hit(0, s, d, 127) for s in range(16) for d in (7, 8, 3)], 1, 97.0)
    for kit in [k.name for k in renderer.kits[:3]] + [KIT_NAME]:
        renderer.render(busy, kit)
    assert np.array_equal(renderer.render(groove), first)
    assert np.array_equal(Renderer().render(groove), first)  # a fresh synth agrees too


def test_concurrent_renders_equal_single_threaded_ones(renderer, groove):
    kits = [k.name for k in renderer.kits]
    jobs = [(groove, kits[0]), (groove, kits[-1]), (groove.slice(1, 3), kits[0]),
            (groove, kits[0])]
    alone = [renderer.render(p, k) for p, k in jobs]
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait(timeout=30)
        return renderer.render(*job)

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(run, jobs))
    for a, b in zip(alone, together, strict=True):
        assert np.array_equal(a, b)


def test_no_soundfont_means_not_available(tmp_path):
    r = Renderer(soundfonts=[])
    assert not r.available and r.kits == []
    assert "soundfont" in r.reason
    with pytest.raises(RenderError, match="soundfont"):
        r.kit("standard")
    with pytest.raises(RenderError):
        r.render(Pattern([Hit(0, 0, 0, 100)], 1, 120.0))
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF not a soundfont")
    r = Renderer(soundfonts=[broken])
    assert not r.available and r.reason


def test_loading_fluidsynth_on_a_ci_machine_keeps_stdout_clean():
    """pyfluidsynth prints where it found the library when CI is set (as on CI machines); the
    line goes to stderr, not to the stdout a test or a pipe reads the CLI's results from."""
    code = "from drumgen.render import Renderer; print('available:', Renderer().available)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CI": "1"},
                          cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "available: True\n"
    assert "fluidsynth" in done.stderr  # the library's line still reaches the user


def test_a_linked_soundfont_is_listed_once(tmp_path, monkeypatch):
    (tmp_path / "alias.sf2").symlink_to(REPO_KIT)
    monkeypatch.setenv("DRUMGEN_SOUNDFONTS", str(tmp_path))
    paths = soundfont_paths()
    assert [p.resolve() for p in paths].count(REPO_KIT.resolve()) == 1
    assert paths[0] == REPO_KIT
    assert len({p.resolve() for p in paths}) == len(paths)


@pytest.mark.skipif(not FLUID_R3.is_file(), reason="Debian's fluid-soundfont-gm is not installed")
def test_system_soundfont_kits(renderer, groove):
    names = [k.name for k in renderer.kits]
    assert "808 (FluidR3_GM)" in names and "standard (FluidR3_GM)" in names
    assert len(names) == len(set(names))
    assert not any("default-GM" in n for n in names)  # Debian's link to FluidR3, listed once
    assert [p.resolve() for p in soundfont_paths()].count(FLUID_R3.resolve()) == 1
    kit = renderer.kit("808")
    assert kit.soundfont.resolve() == FLUID_R3.resolve() and kit.program == 25
    tr808, ours = renderer.render(groove, "808"), renderer.render(groove, KIT_NAME)
    assert tr808.shape == ours.shape and rms(tr808) > 0.002
    assert not np.allclose(tr808, ours, atol=1e-3)


def _svg(pattern, title=""):
    return ElementTree.fromstring(grid.svg(pattern, title))


def _tag(element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def test_grid_svg_draws_every_hit_on_its_row_and_step(groove):
    root = _svg(groove, "funk groove")
    texts = [t.text for t in root.iter() if _tag(t) == "text"]
    assert "funk groove" in texts
    assert all(label in texts for label in DRUM_LABELS)
    assert [t for t in texts if t.startswith("bar ")] == [f"bar {b}" for b in range(1, 5)]
    dots = [c for c in root.iter() if _tag(c) == "circle"]
    assert len(dots) == len(groove.hits)
    # 65 vertical lines (4 bars of 16 steps, plus the closing one) and 9 row lines
    lines = [e for e in root.iter() if _tag(e) == "line"]
    assert len(lines) == 65 + 9
    bar_lines = {float(e.get("x1")) for e in lines if e.get("stroke-width") == "1.6"}
    assert len(bar_lines) == 5
    # every dot sits inside the grid, between the first and the last bar line
    xs = [float(c.get("cx")) for c in dots]
    assert min(bar_lines) <= min(xs) and max(xs) <= max(bar_lines)
    tips = [next(iter(c)).text for c in dots]
    assert all(t.split(",")[0] in DRUM_LABELS and "velocity" in t and " ms" in t for t in tips)


def test_grid_svg_shows_row_velocity_and_microtiming():
    early = Hit(0, 4, 0, 30, -0.25)   # kick, quiet, a quarter step early
    on = Hit(0, 4, 1, 100, 0.0)       # snare, loud, on the grid
    late = Hit(0, 8, 8, 127, 0.25)    # ride, loudest, a quarter step late
    dots = {next(iter(c)).text.split(",")[0]: c for c in _svg(Pattern([early, on, late], 1,
                                                                      120.0)).iter()
            if _tag(c) == "circle"}
    kick, snare, ride = dots["Kick"], dots["Snare"], dots["Ride"]
    x = {k: float(c.get("cx")) for k, c in dots.items()}
    y = {k: float(c.get("cy")) for k, c in dots.items()}
    assert y["Kick"] > y["Snare"] > y["Ride"]  # kick at the bottom, cymbals at the top
    cell = grid.CELL
    assert x["Snare"] - x["Kick"] == pytest.approx(0.25 * cell)  # early: left of its step
    assert x["Ride"] - x["Snare"] == pytest.approx(4.25 * cell)  # late: right of step 8
    radius = [float(c.get("r")) for c in (kick, snare, ride)]
    assert radius == sorted(radius) and radius[0] < radius[2]
    assert len({c.get("fill") for c in (kick, snare, ride)}) == 3  # colour follows velocity
    # a 16th at 120 bpm is 125 ms, so a quarter of one is 31 ms
    assert "-31 ms" in next(iter(kick)).text and "+31 ms" in next(iter(ride)).text
    empty = _svg(Pattern([], 2, 100.0))
    assert not [c for c in empty.iter() if _tag(c) == "circle"]
