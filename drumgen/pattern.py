"""`Pattern`, drumgen's value type, and its MIDI reading and writing.

A pattern is a list of hits on a 16th-note grid. Each hit keeps its microtiming as a fraction of
a 16th step, so the grid position and the feel travel together and survive tempo changes: a
hit's place is measured in beats (ticks), never in seconds.
"""

from __future__ import annotations

import functools
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mido

from .constants import (
    DRUM_CHANNEL,
    DRUM_LABELS,
    DRUMS,
    KITS,
    MAX_MIDI_BARS,
    MAX_MIDI_BYTES,
    MAX_STEPS_PER_BAR,
    MIDI_LAYOUTS,
    PITCH_TO_DRUM,
    PPQ,
    STEPS_PER_QUARTER,
)


class MidiError(ValueError):
    """A MIDI file that drumgen cannot use; the message says why."""


@dataclass(frozen=True, order=True)
class Hit:
    """One drum hit. `offset` is the microtiming in 16th steps, in [-0.5, 0.5)."""

    bar: int
    step: int
    drum: int
    velocity: int
    offset: float = 0.0


@dataclass
class Pattern:
    """Drum hits over `bars` bars at `tempo` bpm in `time_signature`."""

    hits: list[Hit]
    bars: int
    tempo: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    #: Notes that were read but not used (unknown pitches, tempo changes); for reports only.
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hits = sorted(self.hits)
        steps_per_bar(self.time_signature)  # validates
        if self.bars < 1:
            raise ValueError("a pattern has at least one bar")

    @property
    def steps_per_bar(self) -> int:
        return steps_per_bar(self.time_signature)

    @property
    def step_seconds(self) -> float:
        return 60.0 / self.tempo / STEPS_PER_QUARTER

    def hit_seconds(self, hit: Hit) -> float:
        """Onset of `hit` in seconds from the start, at this pattern's tempo."""
        return ((hit.bar * self.steps_per_bar + hit.step) + hit.offset) * self.step_seconds

    def bar_hits(self, bar: int) -> list[Hit]:
        return [h for h in self.hits if h.bar == bar]

    def slice(self, start: int, stop: int) -> Pattern:
        """Bars [start, stop) as a new pattern starting at bar 0."""
        hits = [Hit(h.bar - start, h.step, h.drum, h.velocity, h.offset)
                for h in self.hits if start <= h.bar < stop]
        return Pattern(hits, stop - start, self.tempo, self.time_signature)

    def to_midi(self, kit: str = "gm", name: str = "drumgen") -> mido.MidiFile:
        """A type 1 MIDI file exactly `bars` bars long, drums on channel 10."""
        return _write_midi(self, kit, name)

    def save(self, path: str | os.PathLike, kit: str = "gm", name: str = "drumgen") -> Path:
        """Write the MIDI file atomically (temp file, then rename)."""
        buf = io.BytesIO()
        self.to_midi(kit, name).save(file=buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def from_midi(cls, source: str | os.PathLike | bytes) -> Pattern:
        """Read drums from a MIDI file path or bytes; raises `MidiError` with the reason."""
        return _read_midi(source)


def steps_per_bar(time_signature: tuple[int, int]) -> int:
    """16th steps in one bar; refuses meters whose bar is not a whole number of 16ths <= 16."""
    num, den = time_signature
    steps = num * 16 / den if den > 0 else 0
    if num < 1 or steps != int(steps) or not 1 <= steps <= MAX_STEPS_PER_BAR:
        raise MidiError(
            f"time signature {num}/{den} is not supported: a bar must be 1 to "
            f"{MAX_STEPS_PER_BAR} sixteenth notes (2/4, 3/4, 4/4, 6/8 and 7/8 are)")
    return int(steps)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a written file should be readable as usual
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------
# Reading

def _load_midi(source: str | os.PathLike | bytes) -> mido.MidiFile:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = "the MIDI data"
    else:
        path = Path(source)
        label = path.name
        if not path.exists():
            raise MidiError(f"{label}: no such file")
        if not path.is_file():
            raise MidiError(f"{label}: not a file")
        try:
            size = path.stat().st_size
            if size > MAX_MIDI_BYTES:
                raise MidiError(
                    f"{label}: {size:,} bytes is over the {MAX_MIDI_BYTES:,}-byte limit")
            data = path.read_bytes()
        except OSError as exc:
            raise MidiError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise MidiError(f"{label}: the file is empty")
    if len(data) > MAX_MIDI_BYTES:
        raise MidiError(f"{label}: {len(data):,} bytes is over the {MAX_MIDI_BYTES:,}-byte limit")
    if not data.startswith(b"MThd"):
        raise MidiError(f"{label}: not a MIDI file (no MThd header)")
    try:
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except EOFError:
        raise MidiError(f"{label}: corrupt MIDI data (truncated: it ends in the middle of a "
                        "chunk)") from None
    except Exception as exc:  # mido raises OSError, ValueError, KeyError...
        raise MidiError(f"{label}: corrupt MIDI data ({type(exc).__name__}: {exc})") from None


def _absolute_events(mid: mido.MidiFile):
    """(tick, track index, message) for every message, in time order."""
    for index, track in enumerate(mid.tracks):
        tick = 0
        for msg in track:
            tick += msg.time
            yield tick, index, msg


def _drum_tracks(mid: mido.MidiFile) -> set[int]:
    words = ("drum", "kit", "perc")
    named = set()
    for index, track in enumerate(mid.tracks):
        if any(w in (track.name or "").lower() for w in words):
            named.add(index)
    return named


@dataclass
class _Timeline:
    """A MIDI file's events in time order, with its one meter and first tempo."""

    mid: mido.MidiFile
    events: list
    tempos: list[int]
    signature: tuple[int, int]

    @property
    def step_ticks(self) -> float:
        return self.mid.ticks_per_beat / STEPS_PER_QUARTER

    @property
    def bpm(self) -> float:
        return round(mido.tempo2bpm(self.tempos[0]), 3) if self.tempos else 120.0

    @property
    def steps_per_bar(self) -> int:
        return steps_per_bar(self.signature)

    @functools.cached_property
    def end(self) -> int:
        """The tick of the file's last event."""
        return max((t for t, _, _ in self.events), default=0)

    def notes(self) -> list[tuple[int, int, mido.Message]]:
        """(tick, track, message) of every note-on with a velocity."""
        return [(t, i, m) for t, i, m in self.events if m.type == "note_on" and m.velocity > 0]

    def place(self, tick: int) -> tuple[int, int, float]:
        """(bar, step, offset) of a note at `tick`: the nearest 16th and the distance from it.
        A file that ends on a bar line is that many bars long: a note just before its end
        stays in the last bar, as late as the grid allows, rather than opening a bar of its
        own."""
        end, spb = self.end, self.steps_per_bar
        end_bars = end / (self.step_ticks * spb)
        position = tick / self.step_ticks
        grid = math.floor(position + 0.5)
        offset = position - grid
        if end_bars == int(end_bars) and grid == int(end_bars) * spb and tick < end:
            grid, offset = grid - 1, math.nextafter(0.5, 0.0)
        bar, step = divmod(grid, spb)
        return bar, step, offset

    def bar_count(self, last: int) -> int:
        """The file's bars, given `last`, the bar count up to its last note. Trailing empty
        bars count only when the end of track falls exactly on a bar line within two bars of
        it (as in files drumgen and DAWs write): some GMD files run minutes past their last
        note, and counting those bars makes empty examples."""
        end_bars = self.end / (self.step_ticks * self.steps_per_bar)
        bars = int(end_bars) if end_bars == int(end_bars) and last < end_bars <= last + 2 \
            else last
        if bars > MAX_MIDI_BARS:
            raise MidiError(f"{bars} bars is over the {MAX_MIDI_BARS}-bar limit")
        return bars


def _timeline(source: str | os.PathLike | bytes) -> _Timeline:
    mid = _load_midi(source)
    if mid.type == 2:
        raise MidiError("type 2 MIDI files (independent sequences) are not supported")
    if mid.ticks_per_beat <= 0:
        raise MidiError("corrupt MIDI header: ticks per beat must be positive")
    events = sorted(_absolute_events(mid), key=lambda e: e[0])
    tempos = [m.tempo for _, _, m in events if m.type == "set_tempo"]
    if any(t <= 0 for t in tempos):
        raise MidiError("corrupt MIDI data: a set_tempo event of 0 microseconds per beat")
    signatures = {(m.numerator, m.denominator) for _, _, m in events if m.type == "time_signature"}
    if len(signatures) > 1:
        found = ", ".join(f"{n}/{d}" for n, d in sorted(signatures))
        raise MidiError(f"the time signature changes ({found}); drumgen reads one meter a file")
    signature = signatures.pop() if signatures else (4, 4)
    steps_per_bar(signature)  # validates
    return _Timeline(mid, events, tempos, signature)


def _read_midi(source: str | os.PathLike | bytes) -> Pattern:
    line = _timeline(source)
    notes = line.notes()
    named = _drum_tracks(line.mid)
    drum_notes = [(t, m) for t, i, m in notes if m.channel == DRUM_CHANNEL]
    if not drum_notes:  # no channel 10: fall back to tracks named as drums
        drum_notes = [(t, m) for t, i, m in notes if i in named]
    if not drum_notes:
        raise MidiError("no drum notes: nothing on MIDI channel 10 and no track named as drums")
    hits, unknown = [], 0
    for tick, msg in drum_notes:
        drum = PITCH_TO_DRUM.get(msg.note)
        if drum is None:
            unknown += 1
            continue
        bar, step, offset = line.place(tick)
        hits.append(Hit(bar, step, drum, min(127, max(1, msg.velocity)), offset))
    if not hits:
        raise MidiError(f"no usable drum notes: all {unknown} drum notes have pitches outside "
                        "the drum map")
    bars = line.bar_count(max(h.bar for h in hits) + 1)
    tempos = line.tempos
    changes = sum(a != b for a, b in zip(tempos, tempos[1:], strict=False))  # in order
    dropped = {"unknown_pitch": unknown, "tempo_changes": changes}
    return Pattern(hits, bars, line.bpm, line.signature,
                   {k: v for k, v in dropped.items() if v})


@dataclass
class Rhythm:
    """Onsets on the 16th grid, bar by bar: the rhythm Drumify writes drums to."""

    onsets: list[set[int]]
    tempo: float = 120.0
    time_signature: tuple[int, int] = (4, 4)

    @property
    def bars(self) -> int:
        return len(self.onsets)

    @property
    def steps_per_bar(self) -> int:
        return steps_per_bar(self.time_signature)


def read_rhythm(source: str | os.PathLike | bytes, track: int | None = None) -> Rhythm:
    """The onsets of every note in a MIDI file (any channel, any instrument), or of track
    `track` only (1-based, as midicsv and DAWs count; track 1 is often the tempo map)."""
    line = _timeline(source)
    notes = line.notes()
    if track is not None:
        count = len(line.mid.tracks)
        if isinstance(track, bool) or not isinstance(track, int) or not 1 <= track <= count:
            raise MidiError(f"track: the file has {count} track(s), numbered 1 to {count}; "
                            f"got {track!r}")
        notes = [n for n in notes if n[1] == track - 1]
        if not notes:
            raise MidiError(f"track: track {track} has no notes")
    if not notes:
        raise MidiError("the file has no notes to take a rhythm from")
    found = {line.place(tick)[:2] for tick, _, _ in notes}
    onsets = [set() for _ in range(line.bar_count(max(bar for bar, _ in found) + 1))]
    for bar, step in found:
        onsets[bar].add(step)
    return Rhythm(onsets, line.bpm, line.signature)


RHYTHM_ONSET, RHYTHM_REST = "xX", ".-_"


def parse_rhythm(text: str, steps: int = 16) -> Rhythm:
    """A typed rhythm, `steps` characters a bar: x for an onset, . (or - or _) for a rest.
    Spaces and bar lines (|) are ignored."""
    if not isinstance(text, str):
        raise MidiError(f"rhythm must be text such as x..x..x.x...x...; got {text!r}")
    cells = [c for c in text if c not in " |\t\n"]
    bad = sorted({c for c in cells if c not in RHYTHM_ONSET + RHYTHM_REST})
    if bad:
        raise MidiError(f"rhythm: use x for an onset and . for a rest; got {bad[0]!r}")
    if not cells or len(cells) % steps:
        raise MidiError(f"rhythm: {len(cells)} steps; a bar is {steps} steps, so the length "
                        f"must be a multiple of {steps} (x for an onset, . for a rest)")
    onsets = [{i for i in range(steps) if cells[b * steps + i] in RHYTHM_ONSET}
              for b in range(len(cells) // steps)]
    if not any(onsets):
        raise MidiError("rhythm: no onsets; mark at least one step with x")
    return Rhythm(onsets)


# ---------------------------------------------------------------------------------------------
# Writing

def _write_midi(pattern: Pattern, kit: str, name: str) -> mido.MidiFile:
    if kit not in MIDI_LAYOUTS:
        raise ValueError(f"kit must be one of {', '.join(MIDI_LAYOUTS)}; got {kit!r}")
    pitches = KITS["gm" if kit == "multitrack" else kit]
    step_ticks = PPQ // STEPS_PER_QUARTER
    end = pattern.bars * pattern.steps_per_bar * step_ticks
    num, den = pattern.time_signature
    meta = [
        mido.MetaMessage("track_name", name=name, time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(pattern.tempo), time=0),
        mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0),
    ]
    mid = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    mid.tracks.append(_track(meta, [], end))
    spb = pattern.steps_per_bar
    groups = ([[h for h in pattern.hits if h.drum == d] for d in range(len(DRUMS))]
              if kit == "multitrack" else [pattern.hits])
    for index, hits in enumerate(groups):
        if kit == "multitrack" and not hits:
            continue
        label = DRUM_LABELS[index] if kit == "multitrack" else "Drums"
        notes = []
        for h in hits:
            # Clamp into [0, end): an early first hit starts at 0, and nothing spills past the
            # last bar line, so the file loops seamlessly.
            on = min(end - 1, max(0, round(((h.bar * spb + h.step) + h.offset) * step_ticks)))
            off = min(end, on + step_ticks // 2)
            notes.append((on, mido.Message("note_on", channel=DRUM_CHANNEL, note=pitches[h.drum],
                                           velocity=min(127, max(1, h.velocity)))))
            notes.append((off, mido.Message("note_off", channel=DRUM_CHANNEL,
                                            note=pitches[h.drum], velocity=0)))
        mid.tracks.append(_track([mido.MetaMessage("track_name", name=label, time=0)], notes, end))
    return mid


def _track(meta: list, notes: list[tuple[int, mido.Message]], end: int) -> mido.MidiTrack:
    """A track of `meta` at tick 0, then `notes` (absolute ticks), ending exactly at `end`."""
    track = mido.MidiTrack(meta)
    now = 0
    # note-offs sort before note-ons at the same tick, so repeated hits never overlap
    for tick, msg in sorted(notes, key=lambda n: (n[0], n[1].type == "note_on")):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=end - now))
    return track
