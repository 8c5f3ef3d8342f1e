"""The four edits through the inference API and the CLI, on synthetic patterns, real GMD
files and MIDI written by other programs (LilyPond, abc2midi)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import pytest

from drumgen.data import quantize
from drumgen.edit import DrumifyRequest, GrooveRequest, RegenerateRequest
from drumgen.generate import Generator, RequestError
from drumgen.pattern import Hit, Pattern, parse_rhythm, read_rhythm

ROOT = Path(__file__).resolve().parent.parent
KICK, SNARE = 0, 1


@pytest.fixture(scope="module")
def gen(shipped) -> Generator:
    return Generator.load(shipped, device="cpu")


def rock(bars: int = 4, tempo: float = 100) -> Pattern:
    """A plain rock beat with some microtiming and varied velocities."""
    hits = []
    for b in range(bars):
        for s in range(0, 16, 2):
            hits.append(Hit(b, s, 2, 70 + 10 * (s % 4 == 0), 0.05 * ((s // 2) % 3 - 1)))
        hits += [Hit(b, 0, KICK, 110, -0.02), Hit(b, 10, KICK, 95, 0.01),
                 Hit(b, 4, SNARE, 115, 0.03), Hit(b, 12, SNARE, 118, 0.0)]
    return Pattern(hits, bars, tempo)


def midi_bytes(pattern: Pattern) -> bytes:
    buf = io.BytesIO()
    pattern.to_midi().save(file=buf)
    return buf.getvalue()


def lane(pattern: Pattern, drums) -> list[Hit]:
    return sorted(h for h in pattern.hits if h.drum in drums)


@pytest.fixture(scope="module")
def gmd_groove(gmd) -> Pattern:
    """A real 8-bar validation groove (GMD)."""
    from conftest import gmd_rows
    row = next(r for r in gmd_rows("validation") if r["beat_type"] == "beat"
               and r["style"].startswith("funk"))
    return Pattern.from_midi(gmd / row["midi_filename"]).slice(0, 8)


# -- keep drums ---------------------------------------------------------------------------

@pytest.mark.parametrize("keep", ["kick,snare", "hats", "kick", "cymbals,toms"])
def test_kept_lanes_come_out_exactly_as_they_went_in(gen, keep):
    from drumgen.edit import parse_drums
    source = rock()
    kept = parse_drums(keep)
    for seed in range(3):
        out = gen.regenerate(RegenerateRequest(midi=source, keep_drums=keep, style="funk",
                                               seed=seed))[0]
        assert lane(out.pattern, kept) == lane(source, kept)
        assert out.pattern.bars == 4 and out.pattern.tempo == 100
        assert gen.tokenizer.check(out.tokens, bars=4) == []
        assert len(out.pattern.hits) > len(lane(source, kept)), "the rest was not written"


def test_keep_drums_on_a_real_file_keeps_ticks_and_velocities(gen, gmd_groove, tmp_path):
    out = gen.regenerate(RegenerateRequest(midi=midi_bytes(gmd_groove), keep_drums="kick,snare",
                                           style="funk", seed=3))[0]
    path = out.pattern.save(tmp_path / "out.mid")
    back = Pattern.from_midi(path)
    assert lane(back, (KICK, SNARE)) == lane(Pattern.from_midi(midi_bytes(gmd_groove)),
                                              (KICK, SNARE))
    assert back.bars == gmd_groove.bars


def test_the_variations_of_an_edit_differ(gen):
    outs = gen.regenerate(RegenerateRequest(midi=rock(), keep_drums="kick,snare", seed=1,
                                            variations=3, style="rock"))
    assert len(outs) == 3 and len({tuple(o.pattern.hits) for o in outs}) == 3


# -- regenerate bars ----------------------------------------------------------------------

@pytest.mark.parametrize("bars,fill", [("3", False), ("4", True), ("1,3", False),
                                       ("2-3", True)])
def test_regenerated_bars_leave_every_other_bar_exact(gen, bars, fill):
    from drumgen.edit import parse_bars
    source = rock()
    redo = parse_bars(bars, 4)
    out = gen.regenerate(RegenerateRequest(midi=source, bars=bars, fill=fill, style="rock",
                                           seed=2))[0]
    keep = lambda p: sorted(h for h in p.hits if h.bar not in redo)  # noqa: E731
    assert keep(out.pattern) == keep(source)
    assert out.fills == [fill and b in redo for b in range(4)]
    assert gen.tokenizer.check(out.tokens, bars=4) == []
    new = sorted(h for h in out.pattern.hits if h.bar in redo)
    assert new and new != sorted(h for h in source.hits if h.bar in redo)


def test_regenerate_bars_of_a_long_real_groove_in_passes(gen, gmd):
    from conftest import gmd_rows
    row = next(r for r in gmd_rows("validation") if float(r["duration"]) > 60)
    source = Pattern.from_midi(gmd / row["midi_filename"])
    source = source.slice(0, min(source.bars, 24))
    out = gen.regenerate(RegenerateRequest(midi=source, bars=f"2,{source.bars - 1}",
                                           style="rock", seed=0))[0]
    assert out.pattern.bars == source.bars
    keep = lambda p: sorted(h for h in p.hits if h.bar not in (1, source.bars - 2))  # noqa: E731
    assert keep(out.pattern) == keep(source)
    assert gen.tokenizer.check(out.tokens, bars=source.bars) == []


# -- groove ---------------------------------------------------------------------------------

def cells(p: Pattern) -> set:
    return {(h.bar, h.step, h.drum) for h in p.hits}


def test_groove_keeps_every_cell_and_plays_velocity_and_timing(gen):
    stiff = quantize(rock())
    out = gen.groove(GrooveRequest(midi=stiff, style="funk", seed=0))[0]
    assert cells(out.pattern) == cells(stiff)
    assert len({h.velocity for h in out.pattern.hits}) > 5, "velocities were not played"
    assert any(abs(h.offset) > 0.02 for h in out.pattern.hits), "timing was not played"
    assert gen.tokenizer.check(out.tokens, bars=4) == []


def test_groove_strength_and_keep_velocity(gen):
    stiff = quantize(rock())
    same = gen.groove(GrooveRequest(midi=stiff, style="funk", seed=0, strength=0.0))[0]
    assert sorted(same.pattern.hits) == sorted(stiff.hits)
    full = gen.groove(GrooveRequest(midi=stiff, style="funk", seed=0))[0].pattern
    half = gen.groove(GrooveRequest(midi=stiff, style="funk", seed=0, strength=0.5))[0].pattern
    by = lambda p: {(h.bar, h.step, h.drum): h for h in p.hits}  # noqa: E731
    for key, h in by(half).items():
        assert abs(h.velocity - (90 + by(full)[key].velocity) / 2) <= 1
        assert h.offset == pytest.approx(by(full)[key].offset / 2, abs=1e-6)
    kept = gen.groove(GrooveRequest(midi=rock(), style="funk", seed=0, keep_velocity=True))[0]
    assert {k: h.velocity for k, h in by(kept.pattern).items()} == \
        {k: h.velocity for k, h in by(rock()).items()}
    assert any(h.offset != by(rock())[k].offset for k, h in by(kept.pattern).items())


def test_groove_of_a_long_pattern_in_chunks(gen):
    stiff = quantize(rock(bars=10))
    out = gen.groove(GrooveRequest(midi=stiff, style="rock", seed=4))[0]
    assert cells(out.pattern) == cells(stiff) and out.pattern.bars == 10


# -- drumify ----------------------------------------------------------------------------------

def bass_line(onsets: list[tuple[int, int]], bars: int, tempo: float = 96) -> bytes:
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo))])
    notes = mido.MidiTrack([mido.Message("program_change", program=33, channel=0)])
    now = 0
    for bar, step in sorted(onsets):
        on = (bar * 16 + step) * 24
        notes.append(mido.Message("note_on", note=40, velocity=90, channel=0, time=on - now))
        notes.append(mido.Message("note_off", note=40, velocity=0, channel=0, time=12))
        now = on + 12
    notes.append(mido.MetaMessage("end_of_track", time=bars * 16 * 24 - now))
    mid.tracks += [meta, notes]
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def kick_snare_steps(p: Pattern) -> set:
    return {(h.bar, h.step) for h in p.hits if h.drum in (KICK, SNARE)}


@pytest.mark.parametrize("style", ["hiphop", "rock", "funk"])
def test_drumify_locks_kick_and_snare_to_a_bass_line(gen, style):
    onsets = [(b, s) for b in range(4) for s in (0, 3, 6, 10, 12)]
    out = gen.drumify(DrumifyRequest(midi=bass_line(onsets, 4), style=style, seed=1))[0]
    assert kick_snare_steps(out.pattern) == set(onsets)
    assert out.pattern.bars == 4 and out.pattern.tempo == 96
    assert any(h.drum > SNARE for h in out.pattern.hits), "no hats or cymbals"
    assert gen.tokenizer.check(out.tokens, bars=4) == []


def test_drumify_a_typed_rhythm_repeats_to_the_bars_asked(gen):
    out = gen.drumify(DrumifyRequest(rhythm="x..x..x.x...x...", bars=4, style="hiphop",
                                     seed=0, tempo=88))[0]
    assert kick_snare_steps(out.pattern) == {(b, s) for b in range(4) for s in (0, 3, 6, 8, 12)}
    assert out.pattern.tempo == 88


def test_drumify_track_picks_one_track(gen):
    data = bass_line([(0, 0), (0, 8)], 1)
    mid = mido.MidiFile(file=io.BytesIO(data))
    other = mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, channel=1, time=96),
                            mido.Message("note_off", note=60, velocity=0, channel=1, time=10)])
    mid.tracks.append(other)
    buf = io.BytesIO()
    mid.save(file=buf)
    assert read_rhythm(buf.getvalue()).onsets == [{0, 4, 8}]
    assert read_rhythm(buf.getvalue(), track=2).onsets == [{0, 8}]
    out = gen.drumify(DrumifyRequest(midi=buf.getvalue(), track=2, style="rock", seed=0))[0]
    assert kick_snare_steps(out.pattern) == {(0, 0), (0, 8)}


# -- bad input ---------------------------------------------------------------------------------

def three_four() -> bytes:
    return midi_bytes(Pattern([Hit(0, 0, 0, 100)], 1, 100, (3, 4)))


def empty_midi() -> bytes:
    mid = mido.MidiFile(type=1)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("end_of_track", time=0)]))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


@pytest.mark.parametrize("request_,words", [
    (RegenerateRequest(midi=empty_midi(), keep_drums="kick"), "midi: "),
    (RegenerateRequest(midi=b"", keep_drums="kick"), "midi: the MIDI data: the file is empty"),
    (RegenerateRequest(midi=b"MThd\x00\x00\x00\x06garbage", keep_drums="kick"), "midi: "),
    (RegenerateRequest(midi=rock(), keep_drums="kick,cowbell"), "keep_drums: unknown drum"),
    (RegenerateRequest(midi=rock(), bars="9"), "bars: bar 9 is outside this 4-bar groove"),
    (RegenerateRequest(midi=rock(), bars="0"), "bars: bar 0 is outside"),
    (RegenerateRequest(midi=rock(), bars="two"), "bars: 'two' is not a bar number"),
    (RegenerateRequest(midi=three_four(), keep_drums="kick"), "midi: the model edits 4/4"),
    (RegenerateRequest(midi=rock(), keep_drums="kick,snare,hats,toms,cymbals"),
     "nothing left to regenerate"),
    (RegenerateRequest(midi=rock()), "give keep_drums"),
    (RegenerateRequest(midi=rock(), keep_drums="kick", bars="1"), "not both"),
    (RegenerateRequest(midi=rock(65), keep_drums="kick"), "64-bar limit"),
    (RegenerateRequest(midi=rock(), keep_drums="kick", seed=-1), "seed must be from"),
    (GrooveRequest(midi=rock(), strength=1.5), "strength must be from 0 to 1"),
    (GrooveRequest(midi=None), "midi: give the groove"),
    (DrumifyRequest(rhythm="x..x..x."), "rhythm: 8 steps; a bar is 16 steps"),
    (DrumifyRequest(rhythm="x..y" * 4), "rhythm: use x for an onset"),
    (DrumifyRequest(rhythm="." * 16), "rhythm: no onsets"),
    (DrumifyRequest(midi=empty_midi()), "midi: the file has no notes"),
    (DrumifyRequest(midi=bass_line([(0, 0)], 1), track=5), "track: the file has 2 track"),
    (DrumifyRequest(midi=bass_line([(0, 0)], 1), rhythm="x" * 16), "not both"),
    (DrumifyRequest(rhythm="x" * 16, style="polka"), "style: unknown style"),
])
def test_bad_edit_input_names_the_parameter(gen, request_, words):
    verb = {RegenerateRequest: gen.regenerate, GrooveRequest: gen.groove,
            DrumifyRequest: gen.drumify}[type(request_)]
    with pytest.raises(RequestError, match=words.replace("(", r"\(")):
        verb(request_)


def test_parse_rhythm_ignores_bar_lines_and_spaces():
    assert parse_rhythm("x... x... | x.x. ....").onsets == [{0, 4, 8, 10}]


# -- the CLI, and MIDI from other programs -----------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drumgen", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a CLI subprocess
def test_cli_verbs_on_a_real_gmd_file(gmd_groove, tmp_path):
    src = tmp_path / "in.mid"
    gmd_groove.save(src)
    original = Pattern.from_midi(src)
    run = cli("regenerate", str(src), "--keep-drums", "kick,snare", "--style", "rock",
              "--seed", "1", "--out", str(tmp_path / "keep.mid"))
    assert run.returncode == 0, run.stderr
    keep = Pattern.from_midi(tmp_path / "keep.mid")
    assert lane(keep, (KICK, SNARE)) == lane(original, (KICK, SNARE))
    assert keep.tempo == original.tempo  # the file's own tempo by default
    run = cli("regenerate", str(src), "--bars", "3,4", "--fill", "--style", "rock",
              "--variations", "2", "--out", str(tmp_path / "bars.mid"))
    assert run.returncode == 0, run.stderr
    for v in (1, 2):
        bars = Pattern.from_midi(tmp_path / f"bars_{v}.mid")
        assert sorted(h for h in bars.hits if h.bar not in (2, 3)) == \
            sorted(h for h in original.hits if h.bar not in (2, 3))
    run = cli("groove", str(src), "--style", "funk", "--strength", "0.7", "--seed", "1",
              "--out", str(tmp_path / "groove.mid"))
    assert run.returncode == 0, run.stderr
    assert cells(Pattern.from_midi(tmp_path / "groove.mid")) == cells(original)
    run = cli("drumify", "--rhythm", "x..x..x.x...x...", "--style", "hiphop", "--seed", "1",
              "--tempo", "90", "--out", str(tmp_path / "drumify.mid"))
    assert run.returncode == 0, run.stderr
    assert Pattern.from_midi(tmp_path / "drumify.mid").tempo == 90


@pytest.mark.parametrize("args,words", [
    (["regenerate", "{src}", "--keep-drums", "bongo"], "keep_drums: unknown drum 'bongo'"),
    (["regenerate", "{src}", "--bars", "9"], "bars: bar 9 is outside this 8-bar groove"),
    (["drumify", "--rhythm", "x..x..x."], "rhythm: 8 steps"),
    (["groove", "{empty}"], "midi: "),
])
@pytest.mark.slow  # a CLI subprocess
def test_cli_bad_input_exits_2_with_the_reason(gmd_groove, tmp_path, args, words):
    src, empty = tmp_path / "in.mid", tmp_path / "empty.mid"
    gmd_groove.save(src)
    empty.write_bytes(b"")
    run = cli(*[a.format(src=src, empty=empty) for a in args], "--out", str(tmp_path / "o.mid"))
    assert run.returncode == 2 and words in run.stderr, run.stderr


LILY_BASS = r"""
\version "2.24.0"
\score {
  \new Staff \with { midiInstrument = "electric bass (finger)" } {
    \tempo 4 = 110 \time 4/4 \clef bass
    \repeat unfold 4 { e,8. e,16 r8 g,8 r8 a,8 r4 }
  }
  \midi { }
}
"""

LILY_DRUMS = r"""
\version "2.24.0"
\score {
  \new DrumStaff \with { midiInstrument = "drums" } \drummode {
    \tempo 4 = 110 \time 4/4
    \repeat unfold 4 { <bd hh>8 hh <sn hh> hh <bd hh> <bd hh> <sn hh> hh }
  }
  \midi { }
}
"""


def lilypond(source: str, folder: Path) -> Path:
    if not shutil.which("lilypond"):
        pytest.fail("lilypond is missing: `make test` installs it (apt-get install lilypond)")
    (folder / "in.ly").write_text(source)
    run = subprocess.run(["lilypond", "-o", str(folder / "in"), str(folder / "in.ly")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return next(folder.glob("in.mid*"))


@pytest.mark.slow  # a CLI subprocess
def test_drumify_a_lilypond_bass_line_from_the_cli(tmp_path):
    bass = lilypond(LILY_BASS, tmp_path)
    rhythm = read_rhythm(bass)
    assert rhythm.bars == 4 and rhythm.tempo == pytest.approx(110)
    assert rhythm.onsets[0] == {0, 3, 6, 10}
    run = cli("drumify", str(bass), "--style", "funk", "--seed", "2",
              "--out", str(tmp_path / "out.mid"))
    assert run.returncode == 0, run.stderr
    out = Pattern.from_midi(tmp_path / "out.mid")
    assert out.tempo == pytest.approx(110) and out.bars == 4
    assert kick_snare_steps(out) == {(b, s) for b, o in enumerate(rhythm.onsets) for s in o}


@pytest.mark.slow  # a CLI subprocess
def test_keep_drums_and_generate_prime_on_lilypond_drums_keep_its_tempo(tmp_path):
    drums = lilypond(LILY_DRUMS, tmp_path)
    source = Pattern.from_midi(drums)
    run = cli("regenerate", str(drums), "--keep-drums", "kick", "--style", "rock",
              "--out", str(tmp_path / "keep.mid"))
    assert run.returncode == 0, run.stderr
    out = Pattern.from_midi(tmp_path / "keep.mid")
    assert lane(out, (KICK,)) == lane(source, (KICK,)) and out.tempo == pytest.approx(110)
    run = cli("generate", "--prime", str(drums), "--style", "rock", "--seed", "3",
              "--out", str(tmp_path / "cont.mid"))
    assert run.returncode == 0, run.stderr
    assert Pattern.from_midi(tmp_path / "cont.mid").tempo == pytest.approx(110)


def test_groove_an_abc2midi_pattern(tmp_path, gen):
    if not shutil.which("abc2midi"):
        pytest.fail("abc2midi is missing: `make test` installs it (apt-get install abcmidi)")
    abc = ("X:1\nT:stiff\nM:4/4\nL:1/16\nQ:1/4=100\nK:C\n%%MIDI channel 10\n"
           "%%MIDI drummap C 36\n%%MIDI drummap E 38\n%%MIDI drummap G 42\n"
           "[CG]zGz [EG]zGz [CG]z[CG]z [EG]zGz|" * 2 + "\n")
    (tmp_path / "in.abc").write_text(abc)
    run = subprocess.run(["abc2midi", str(tmp_path / "in.abc"), "-o", str(tmp_path / "in.mid")],
                         capture_output=True, text=True, timeout=60)
    assert (tmp_path / "in.mid").is_file(), run.stdout + run.stderr
    stiff = Pattern.from_midi(tmp_path / "in.mid")
    assert {h.drum for h in stiff.hits} == {KICK, SNARE, 2}
    out = gen.groove(GrooveRequest(midi=(tmp_path / "in.mid").read_bytes(), style="funk",
                                   seed=0))[0]
    assert cells(out.pattern) == cells(stiff)
    assert out.pattern.tempo == pytest.approx(100)
