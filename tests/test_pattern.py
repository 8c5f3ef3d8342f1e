"""Pattern MIDI reading and writing: GMD files, hand-built files of every shape drumgen accepts,
what it writes, synthetic write-then-read round trips, and every kind of bad input."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import mido
import pytest
from conftest import gmd_rows

from drumgen.constants import DRUM_LABELS, MAX_MIDI_BYTES
from drumgen.pattern import Hit, MidiError, Pattern

# Drum class indexes, spelled out here so the tests check the map rather than reuse it.
KICK, SNARE, CLOSED_HAT, OPEN_HAT, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = range(9)
GM_PITCH = {KICK: 36, SNARE: 38, CLOSED_HAT: 42, OPEN_HAT: 46, LOW_TOM: 43, MID_TOM: 47,
            HIGH_TOM: 50, CRASH: 49, RIDE: 51}
TD11_PITCH = {**GM_PITCH, MID_TOM: 45, HIGH_TOM: 48}
TPB = 480
BAR = 4 * TPB  # ticks in a 4/4 bar at 480 ticks a quarter
GMD_TD11_FILE = "drummer6/session3/1_rock_90_beat_4-4.mid"  # has pitches 22, 26 and 58


# ---------------------------------------------------------------------------------------------
# Helpers

def note(tick: int, pitch: int, velocity: int = 100, channel: int = 9, length: int = 60):
    return [(tick, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)),
            (tick + length, mido.Message("note_off", channel=channel, note=pitch, velocity=0))]


def track(events, name: str | None = None, end: int | None = None) -> mido.MidiTrack:
    """A track from (absolute tick, message) pairs; end of track at `end` or the last event."""
    out = mido.MidiTrack()
    if name is not None:
        out.append(mido.MetaMessage("track_name", name=name, time=0))
    now = 0
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        out.append(msg.copy(time=tick - now))
        now = tick
    out.append(mido.MetaMessage("end_of_track", time=max(0, (end or now) - now)))
    return out


def midi_bytes(*tracks: mido.MidiTrack, kind: int = 1, tpb: int = TPB) -> bytes:
    mid = mido.MidiFile(type=kind, ticks_per_beat=tpb)
    mid.tracks.extend(tracks)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def tempo(bpm: float, tick: int = 0):
    return (tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))


def signature(num: int, den: int, tick: int = 0):
    return (tick, mido.MetaMessage("time_signature", numerator=num, denominator=den))


def absolute(mid: mido.MidiFile):
    """Per track: [(absolute tick, message)]."""
    out = []
    for t in mid.tracks:
        tick, events = 0, []
        for msg in t:
            tick += msg.time
            events.append((tick, msg))
        out.append(events)
    return out


def hit_tick(h: Hit, steps: int = 16, step_ticks: int = TPB // 4) -> float:
    return ((h.bar * steps + h.step) + h.offset) * step_ticks


def same_hits(a: list[Hit], b: list[Hit], tolerance: float = 1e-9) -> None:
    assert len(a) == len(b)
    for x, y in zip(sorted(a), sorted(b), strict=True):
        assert (x.bar, x.step, x.drum, x.velocity) == (y.bar, y.step, y.drum, y.velocity)
        assert abs(x.offset - y.offset) <= tolerance, (x, y)


def roundtrip(pattern: Pattern, tmp_path: Path, kit: str = "gm") -> Pattern:
    path = pattern.save(tmp_path / f"rt_{kit}.mid", kit=kit)
    return Pattern.from_midi(path)


def groove(bars: int = 2, steps: int = 16) -> Pattern:
    """A busy pattern on every drum, offsets a whole number of ticks (1/120 of a step); none
    early on the first downbeat, which the writer clamps to the start of the file."""
    rng = random.Random(bars * 100 + steps)
    hits = []
    for bar in range(bars):
        for step in range(steps):
            for drum in range(9):
                if (step + drum) % 3 == 0:
                    low = 0 if bar == step == 0 else -59
                    hits.append(Hit(bar, step, drum, rng.randint(1, 127),
                                    rng.randint(low, 59) / 120))
    return Pattern(hits, bars, 97.5, (4, 4) if steps == 16 else (3, 4))


# ---------------------------------------------------------------------------------------------
# Reading

def test_reads_gmd_file_with_td11_pitches(gmd):
    """Every note of a real GMD file becomes a hit of the right class at its exact tick; the
    TD-11 pitches 22 (hi-hat edge), 26 (open edge) and 58 (tom rim) map to closed hat, open hat
    and low tom."""
    path = gmd / GMD_TD11_FILE
    mid = mido.MidiFile(path)
    notes = sorted((t, m.note, m.velocity) for events in absolute(mid) for t, m in events
                   if m.type == "note_on" and m.velocity > 0)
    pitches = Counter(p for _, p, _ in notes)
    assert pitches[22] and pitches[26] and pitches[58]

    pattern = Pattern.from_midi(path)

    drums = Counter(h.drum for h in pattern.hits)
    assert drums[CLOSED_HAT] == pitches[42] + pitches[22] + pitches[44]
    assert drums[OPEN_HAT] == pitches[46] + pitches[26]
    assert drums[LOW_TOM] == pitches[43] + pitches[41] + pitches[58]
    assert len(pattern.hits) == len(notes) and not pattern.dropped
    # placement: each hit's tick, rebuilt from bar, step and offset, is its note's tick
    step_ticks = mid.ticks_per_beat / 4
    got = sorted((round(hit_tick(h, 16, step_ticks), 6), h.velocity) for h in pattern.hits)
    assert got == sorted((float(t), v) for t, _, v in notes)
    assert all(-0.5 <= h.offset < 0.5 and 0 <= h.step < 16 for h in pattern.hits)
    row = next(r for r in gmd_rows() if r["midi_filename"] == GMD_TD11_FILE)
    assert pattern.tempo == pytest.approx(float(row["bpm"]))
    assert pattern.time_signature == (4, 4)
    assert pattern.bars == max(h.bar for h in pattern.hits) + 1


def test_type0_and_type1_files_read_the_same():
    notes = note(0, 36) + note(480, 38, 90) + note(240, 42, 70) + note(BAR + 10, 46, 50)
    type0 = midi_bytes(track([tempo(110), signature(4, 4)] + notes), kind=0)
    type1 = midi_bytes(track([tempo(110), signature(4, 4)], name="conductor"),
                       track(notes, name="Drums"), kind=1)
    a, b = Pattern.from_midi(type0), Pattern.from_midi(type1)
    assert mido.MidiFile(file=io.BytesIO(type0)).type == 0
    assert a.hits == b.hits and a.bars == b.bars == 2 and a.tempo == b.tempo == 110
    assert [(h.bar, h.step, h.drum) for h in a.hits] == [
        (0, 0, KICK), (0, 2, CLOSED_HAT), (0, 4, SNARE), (1, 0, OPEN_HAT)]
    assert a.hits[-1].offset == pytest.approx(10 / 120)


def test_channel_10_is_used_and_other_channels_ignored():
    drums = note(0, 36) + note(480, 38)
    piano = note(0, 40, channel=0) + note(960, 38, channel=0)  # would be snares if read
    data = midi_bytes(track([tempo(120)]), track(drums, name="perc"), track(piano, name="keys"))
    pattern = Pattern.from_midi(data)
    assert [(h.step, h.drum) for h in pattern.hits] == [(0, KICK), (4, SNARE)]


def test_falls_back_to_a_track_named_drums_without_channel_10():
    drums = note(0, 36, channel=0) + note(480, 38, channel=0) + note(960, 42, channel=0)
    piano = note(0, 60, channel=1) + note(480, 38, channel=1)
    data = midi_bytes(track([tempo(90)]), track(piano, name="Piano"),
                      track(drums, name="Drums"))
    pattern = Pattern.from_midi(data)
    assert [(h.step, h.drum) for h in pattern.hits] == [(0, KICK), (4, SNARE), (8, CLOSED_HAT)]


def test_unknown_pitches_are_dropped_and_counted():
    notes = note(0, 36) + note(480, 38) + note(0, 60) + note(240, 61) + note(720, 81)
    pattern = Pattern.from_midi(midi_bytes(track([tempo(120)] + notes)))
    assert [h.drum for h in pattern.hits] == [KICK, SNARE]
    assert pattern.dropped == {"unknown_pitch": 3}


def test_all_unknown_pitches_is_an_error():
    data = midi_bytes(track([tempo(120)] + note(0, 60) + note(480, 61)))
    with pytest.raises(MidiError, match="all 2 drum notes have pitches outside the drum map"):
        Pattern.from_midi(data)


def test_first_tempo_is_used_and_changes_are_counted():
    notes = note(0, 36) + note(BAR, 36) + note(2 * BAR, 36)
    meta = [tempo(100), tempo(130, BAR), tempo(100, 2 * BAR)]
    pattern = Pattern.from_midi(midi_bytes(track(meta + notes)))
    assert pattern.tempo == 100
    assert pattern.dropped == {"tempo_changes": 2}  # 100 -> 130 -> 100 is two changes
    # positions are in beats: the tempo change moves nothing on the grid
    assert [(h.bar, h.step, h.offset) for h in pattern.hits] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]


def test_the_same_tempo_repeated_is_not_a_change():
    data = midi_bytes(track([tempo(87)], name="a"), track([tempo(87)] + note(0, 36), name="b"))
    pattern = Pattern.from_midi(data)
    assert pattern.tempo == 87 and pattern.dropped == {}


def test_no_tempo_means_120_bpm():
    assert Pattern.from_midi(midi_bytes(track(note(0, 36)))).tempo == 120


def test_other_ticks_per_beat_are_scaled():
    tpb = 96  # step = 24 ticks
    pattern = Pattern.from_midi(midi_bytes(track(note(24 * 5 + 6, 38) + note(96 * 4, 36)),
                                           tpb=tpb))
    assert [(h.bar, h.step, h.drum) for h in pattern.hits] == [(0, 5, SNARE), (1, 0, KICK)]
    assert pattern.hits[0].offset == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------
# Writing

@pytest.mark.parametrize("sig", [(4, 4), (3, 4), (6, 8)])
def test_written_file_layout(sig):
    steps = 16 * sig[0] // sig[1]
    hits = [Hit(b, s, d, 20 + 10 * d, (s % 5 - 2) / 10)
            for b in range(3) for s in range(0, steps, 3) for d in range(9) if (s + d) % 2]
    pattern = Pattern(hits, 3, 133.0, sig)
    mid = pattern.to_midi(name="my groove")
    end = 3 * steps * (TPB // 4)

    assert mid.type == 1 and mid.ticks_per_beat == TPB and len(mid.tracks) == 2
    meta = {m.type: m for m in mid.tracks[0]}
    assert meta["track_name"].name == "my groove"
    assert mido.tempo2bpm(meta["set_tempo"].tempo) == pytest.approx(133.0, abs=1e-3)
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == sig
    assert mid.tracks[1].name == "Drums"
    for events in absolute(mid):  # every track ends exactly on the last bar line
        assert events[-1][1].type == "end_of_track" and events[-1][0] == end
        assert sum(1 for _, m in events if m.type == "end_of_track") == 1
    events = absolute(mid)[1]
    ons = [(t, m) for t, m in events if m.type == "note_on"]
    offs = [(t, m) for t, m in events if m.type == "note_off"]
    assert len(ons) == len(offs) == len(hits)
    assert all(m.channel == 9 for _, m in ons + offs)  # MIDI channel 10
    expected = sorted((max(0, round(hit_tick(h, steps))), GM_PITCH[h.drum], h.velocity)
                      for h in hits)
    assert sorted((t, m.note, m.velocity) for t, m in ons) == expected


def test_nothing_is_written_past_the_last_bar_line():
    edge = [Hit(1, 15, d, 100, 0.49) for d in range(9)] + [Hit(0, 0, KICK, 90, -0.45)]
    mid = Pattern(edge, 2, 120).to_midi()
    end = 2 * BAR
    notes = [(t, m) for events in absolute(mid) for t, m in events if not m.is_meta]
    assert all(0 <= t <= end for t, _ in notes)
    assert all(t < end for t, m in notes if m.type == "note_on")
    assert min(t for t, _ in notes) == 0  # the early first hit is clamped to the start
    assert all(events[-1][0] == end for events in absolute(mid))


def test_td11_layout_uses_td11_pitches_and_reads_back(tmp_path):
    pattern = groove(2)
    mid = pattern.to_midi(kit="td11")
    ons = [(m.note, m.velocity) for _, m in absolute(mid)[1] if m.type == "note_on"]
    assert sorted(ons) == sorted((TD11_PITCH[h.drum], h.velocity) for h in pattern.hits)
    assert {45, 48} <= {p for p, _ in ons} and not {47, 50} & {p for p, _ in ons}
    same_hits(roundtrip(pattern, tmp_path, "td11").hits, pattern.hits)


def test_multitrack_layout_has_one_track_per_drum_used(tmp_path):
    used = (KICK, SNARE, CLOSED_HAT, RIDE)
    hits = [Hit(b, s, d, 64 + s, 0.0) for b in range(2) for s in range(16) for d in used
            if (s + d) % 4 == 0]
    pattern = Pattern(hits, 2, 100)
    mid = pattern.to_midi(kit="multitrack")
    assert len(mid.tracks) == 1 + len(used)
    assert [t.name for t in mid.tracks[1:]] == [DRUM_LABELS[d] for d in used]
    end = 2 * BAR
    for d, events in zip(used, absolute(mid)[1:], strict=True):
        ons = [m for _, m in events if m.type == "note_on"]
        assert {m.note for m in ons} == {GM_PITCH[d]} and {m.channel for m in ons} == {9}
        assert len(ons) == sum(1 for h in hits if h.drum == d)
        assert events[-1][1].type == "end_of_track" and events[-1][0] == end
    back = roundtrip(pattern, tmp_path, "multitrack")
    same_hits(back.hits, pattern.hits)
    assert back.bars == 2


def test_unknown_kit_is_refused():
    with pytest.raises(ValueError, match="kit must be one of"):
        groove(1).to_midi(kit="tr808")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    folder = tmp_path / "out" / "nested"
    path = groove(2).save(folder / "groove.mid")
    assert path == folder / "groove.mid"
    assert [p.name for p in folder.iterdir()] == ["groove.mid"]
    first = path.read_bytes()
    groove(3).save(path)  # overwrite
    assert path.read_bytes() != first and Pattern.from_midi(path).bars == 3
    before = path.read_bytes()
    with pytest.raises(ValueError):
        groove(1).save(path, kit="nope")  # fails before writing: the old file is intact
    assert path.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["groove.mid"]


# ---------------------------------------------------------------------------------------------
# Synthetic round trips

def test_roundtrip_busy_pattern_is_exact(tmp_path):
    pattern = groove(4)
    for kit in ("gm", "td11", "multitrack"):
        back = roundtrip(pattern, tmp_path, kit)
        assert back.bars == 4 and back.tempo == 97.5 and back.time_signature == (4, 4)
        same_hits(back.hits, pattern.hits)


def test_roundtrip_keeps_empty_bars_in_the_middle_and_at_the_end(tmp_path):
    hits = [Hit(0, 0, KICK, 100), Hit(0, 4, SNARE, 90), Hit(3, 8, CLOSED_HAT, 70, 0.25)]
    pattern = Pattern(hits, 6, 120)  # bars 1, 2 empty in the middle; 4, 5 empty at the end
    back = roundtrip(pattern, tmp_path)
    assert back.bars == 6
    same_hits(back.hits, hits)
    assert not back.bar_hits(1) and not back.bar_hits(2) and not back.bar_hits(5)


def test_roundtrip_keeps_flams(tmp_path):
    flam = [Hit(0, 4, SNARE, 60, -0.25), Hit(0, 4, SNARE, 110, 0.125), Hit(0, 0, KICK, 100)]
    back = roundtrip(Pattern(flam, 1, 100), tmp_path)
    snares = [h for h in back.hits if h.drum == SNARE]
    assert [(h.step, h.velocity, h.offset) for h in snares] == [(4, 60, -0.25), (4, 110, 0.125)]


def test_roundtrip_latest_hit_of_the_last_bar(tmp_path):
    hits = [Hit(0, 0, KICK, 100), Hit(3, 15, CRASH, 127, 0.49)]
    back = roundtrip(Pattern(hits, 4, 120), tmp_path)
    assert back.bars == 4
    last = back.hits[-1]
    assert (last.bar, last.step, last.drum) == (3, 15, CRASH)
    assert last.offset == pytest.approx(0.49, abs=1 / 240)


def test_a_note_on_the_last_tick_stays_in_the_last_bar(tmp_path):
    """A note one tick before the end of a file that ends on a bar line belongs to that file's
    last bar: the file keeps its length, and stays that long when written again."""
    bars = 3
    data = midi_bytes(track([tempo(120)] + note(0, 36) + note(bars * BAR - 1, 42, length=1),
                            end=bars * BAR))
    pattern = Pattern.from_midi(data)
    assert pattern.bars == bars
    last = pattern.hits[-1]
    assert (last.bar, last.step, last.drum) == (bars - 1, 15, CLOSED_HAT)
    assert 0.49 < last.offset < 0.5
    again = roundtrip(pattern, tmp_path)
    assert again.bars == bars and len(again.hits) == 2
    assert (again.hits[-1].bar, again.hits[-1].step) == (bars - 1, 15)


@pytest.mark.parametrize("bpm", [40.0, 300.0])
def test_roundtrip_extreme_tempos(tmp_path, bpm):
    pattern = Pattern(groove(2).hits, 2, bpm)
    back = roundtrip(pattern, tmp_path)
    assert back.tempo == bpm
    same_hits(back.hits, pattern.hits)
    last = back.hits[-1]
    assert back.hit_seconds(last) == pytest.approx(pattern.hit_seconds(last))


@pytest.mark.parametrize("sig", [(3, 4), (6, 8)])
def test_roundtrip_three_four_and_six_eight(tmp_path, sig):
    hits = [Hit(b, s, d, 50 + s, (s % 6 - 2) / 24 if b or s else 0.0)
            for b in range(3) for s in range(12)
            for d in (KICK, SNARE, RIDE) if (s + d) % 3 == 0]
    pattern = Pattern(hits, 3, 140, sig)
    assert pattern.steps_per_bar == 12
    back = roundtrip(pattern, tmp_path)
    assert back.time_signature == sig and back.bars == 3 and back.steps_per_bar == 12
    same_hits(back.hits, hits)
    assert max(h.step for h in back.hits) == 11


def test_five_four_is_refused_clearly():
    with pytest.raises(MidiError, match=r"time signature 5/4 is not supported"):
        Pattern([Hit(0, 0, KICK, 100)], 1, 120, (5, 4))
    data = midi_bytes(track([tempo(120), signature(5, 4)] + note(0, 36)))
    with pytest.raises(MidiError, match=r"5/4 is not supported.*sixteenth notes"):
        Pattern.from_midi(data)


def test_a_time_signature_change_is_refused():
    data = midi_bytes(track([signature(4, 4), signature(3, 4, BAR)] + note(0, 36)))
    with pytest.raises(MidiError, match=r"time signature changes \(3/4, 4/4\)"):
        Pattern.from_midi(data)


# ---------------------------------------------------------------------------------------------
# Bad input

def real_bytes(gmd) -> bytes:
    return (gmd / GMD_TD11_FILE).read_bytes()


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    with pytest.raises(MidiError, match="empty.mid: the file is empty"):
        Pattern.from_midi(empty)
    with pytest.raises(MidiError, match="the file is empty"):
        Pattern.from_midi(b"")


def test_random_bytes(tmp_path):
    junk = random.Random(1).randbytes(3000)
    path = tmp_path / "junk.mid"
    path.write_bytes(junk)
    with pytest.raises(MidiError, match=r"junk.mid: not a MIDI file \(no MThd header\)"):
        Pattern.from_midi(path)


@pytest.mark.parametrize("keep", [10, 14, 30, 500, 0.5, 0.99])
def test_truncated_real_file(gmd, tmp_path, keep):
    data = real_bytes(gmd)
    cut = data[:keep if isinstance(keep, int) else int(len(data) * keep)]
    path = tmp_path / "cut.mid"
    path.write_bytes(cut)
    with pytest.raises(MidiError, match=r"cut.mid: corrupt MIDI data \(truncated"):
        Pattern.from_midi(path)
    with pytest.raises(MidiError, match="truncated"):
        Pattern.from_midi(cut)


@pytest.mark.parametrize("seed", range(8))
def test_valid_header_then_garbage(gmd, seed):
    header = real_bytes(gmd)[:14]  # MThd chunk
    garbage = random.Random(seed).randbytes(400)
    with pytest.raises(MidiError, match="corrupt MIDI data"):
        Pattern.from_midi(header + garbage)
    # and a valid track header with garbage events
    with pytest.raises(MidiError, match="corrupt MIDI data"):
        Pattern.from_midi(header + b"MTrk" + len(garbage).to_bytes(4, "big") + garbage)


def test_midi_without_drums():
    piano = note(0, 60, channel=0) + note(480, 64, channel=0) + note(960, 67, channel=0)
    data = midi_bytes(track([tempo(120)]), track(piano, name="Piano"))
    with pytest.raises(MidiError, match="no drum notes: nothing on MIDI channel 10"):
        Pattern.from_midi(data)
    with pytest.raises(MidiError, match="no drum notes"):
        Pattern.from_midi(midi_bytes(track([tempo(120)])))  # no notes at all


def test_file_over_the_size_limit(tmp_path):
    big = midi_bytes(track(note(0, 36))) + b"\0" * MAX_MIDI_BYTES
    path = tmp_path / "big.mid"
    path.write_bytes(big)
    limit = f"{MAX_MIDI_BYTES:,}-byte limit"
    with pytest.raises(MidiError, match=f"big.mid: {len(big):,} bytes is over the {limit}"):
        Pattern.from_midi(path)
    with pytest.raises(MidiError, match=limit):
        Pattern.from_midi(big)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(MidiError, match="nothere.mid: no such file"):
        Pattern.from_midi(tmp_path / "nothere.mid")
    with pytest.raises(MidiError, match="no such file"):
        Pattern.from_midi(str(tmp_path / "nothere.mid"))
    with pytest.raises(MidiError, match="not a file"):
        Pattern.from_midi(tmp_path)


def test_bytes_input_variants(gmd):
    path = gmd / GMD_TD11_FILE
    data = path.read_bytes()
    expected = Pattern.from_midi(path)
    for source in (data, bytearray(data), memoryview(data), str(path)):
        got = Pattern.from_midi(source)
        assert got.hits == expected.hits and got.bars == expected.bars
    with pytest.raises(MidiError, match="the MIDI data: not a MIDI file"):
        Pattern.from_midi(bytearray(b"RIFF....not midi"))
    with pytest.raises(MidiError, match="the file is empty"):
        Pattern.from_midi(memoryview(b""))


def test_zero_tempo_is_corrupt():
    data = midi_bytes(track([(0, mido.MetaMessage("set_tempo", tempo=0))] + note(0, 36)))
    with pytest.raises(MidiError, match="set_tempo event of 0"):
        Pattern.from_midi(data)


def test_type_2_is_refused():
    data = midi_bytes(track(note(0, 36)), kind=2)
    with pytest.raises(MidiError, match="type 2 MIDI files"):
        Pattern.from_midi(data)
