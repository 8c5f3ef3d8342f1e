"""Audio: render a pattern through FluidSynth with a drum kit, to a seamless loop.

One `fluidsynth.Synth` is loaded once per process and reused under a lock (30-50 ms a render
against 100-200 ms for the fluidsynth CLI's fast render, measured on this project's 2-core
machine). Soundfonts are found in the repository's
`soundfonts/` (our own CC0 kit), in $DRUMGEN_SOUNDFONTS, and where Debian installs GM soundfonts.

Renders are reproducible: the same pattern and kit give the same samples, whatever was rendered
before. FluidSynth habits that stood in the way, each measured here:
- its 16-bit output is dithered with noise that carries on from call to call: we read floats;
- `system_reset()` leaves some voices sounding (FluidR3's 808 cymbals rang into the next
  render): every channel also gets `all_sounds_off`, and reverb and chorus, whose tails outlive
  any reset, are off (the loops are dry, as drum loops for a DAW usually are);
- a note starts at the next 64-sample block, so timing depended on how many samples earlier
  renders had read: renders start on a block boundary and onsets are rounded to blocks (1.45 ms);
- a voice slot starts each note from the state its previous note left (a fresh slot attacks
  softer, one last used by another kit differently): after each render every slot plays the
  same note for one block (about 6 ms).
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import DRUM_CHANNEL, KITS
from .pattern import Pattern, atomic_write_bytes

SAMPLE_RATE = 44100
BLOCK = 64  # FluidSynth renders, and starts notes, in blocks of this many samples
TAIL_SECONDS = 1.5  # ring-out folded back onto the start, so the loop is seamless
REPO_SOUNDFONTS = Path(__file__).resolve().parent.parent / "soundfonts"
SYSTEM_SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/soundfonts"),
                         Path("/usr/share/sounds/sf3"))
#: GM 2 / GS drum-kit programs on bank 128 -> kit name.
KIT_PROGRAMS: dict[str, int] = {"standard": 0, "room": 8, "power": 16, "electronic": 24,
                                "808": 25, "jazz": 32, "brush": 40}


class RenderError(RuntimeError):
    """Audio could not be made; the message says why (the MIDI and grid still work)."""


@dataclass(frozen=True)
class Kit:
    name: str  # what the UI shows, e.g. "808 (FluidR3_GM)"
    soundfont: Path
    bank: int
    program: int


def soundfont_paths() -> list[Path]:
    """Our kit first, then $DRUMGEN_SOUNDFONTS (paths joined by os.pathsep), then system ones."""
    found = sorted(REPO_SOUNDFONTS.glob("*.sf[23]"))
    for entry in filter(None, os.environ.get("DRUMGEN_SOUNDFONTS", "").split(os.pathsep)):
        path = Path(entry)
        found += sorted(path.glob("*.sf[23]")) if path.is_dir() else [path]
    for folder in SYSTEM_SOUNDFONT_DIRS:
        if folder.is_dir():
            found += sorted(folder.glob("*.sf[23]"))
    unique: dict[Path, Path] = {}
    for path in found:  # Debian's default-GM.sf2 is a link to FluidR3_GM.sf2: list it once
        if path.is_file():
            unique.setdefault(path.resolve(), path)
    return list(unique.values())


class Renderer:
    """A FluidSynth synthesizer, loaded once; `render` is thread-safe."""

    _default: Renderer | None = None
    _default_lock = threading.Lock()

    def __init__(self, soundfonts: list[Path] | None = None):
        self._lock = threading.Lock()
        self.reason = ""
        self.synth = None
        self._sfids: dict[Path, int] = {}
        self._write_float = None
        self._clock = 0  # samples read from the synth so far, to keep renders block-aligned
        try:
            import fluidsynth  # needs Debian's libfluidsynth3
            self.synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE), gain=0.6,
                                          **{"synth.reverb.active": 0,
                                             "synth.chorus.active": 0})
            self._write_float = _float_writer(fluidsynth)
        except Exception as exc:  # ImportError, OSError when the library is missing
            self.reason = f"FluidSynth is not available ({type(exc).__name__}: {exc})"
        self.kits = self._find_kits(soundfonts if soundfonts is not None else soundfont_paths())
        if self.synth and not self.kits:
            self.reason = "no drum soundfont found"
        if self.available:
            with self._lock:
                self._reset_voices()

    @classmethod
    def default(cls) -> Renderer:
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    @property
    def available(self) -> bool:
        return self.synth is not None and bool(self.kits)

    def _sfid(self, path: Path) -> int:
        if path not in self._sfids:
            sfid = self.synth.sfload(str(path))
            if sfid < 0:
                raise RenderError(f"FluidSynth could not load {path.name}")
            self._sfids[path] = sfid
        return self._sfids[path]

    def _find_kits(self, paths: list[Path]) -> list[Kit]:
        if self.synth is None:
            return []
        kits = []
        for path in paths:
            try:
                sfid = self._sfid(path)
            except RenderError:
                continue
            for name, program in KIT_PROGRAMS.items():
                if self.synth.sfpreset_name(sfid, 128, program):
                    kits.append(Kit(f"{name} ({path.stem})", path, 128, program))
        return kits

    def _samples(self, n: int) -> np.ndarray:
        """The next `n` stereo frames as float32 (n, 2), in [-1, 1] full scale."""
        self._clock += n
        if self._write_float is None:  # an old pyfluidsynth: dithered 16-bit samples
            return (np.asarray(self.synth.get_samples(n), np.float32) / 32768.0).reshape(-1, 2)
        out = np.zeros((n, 2), np.float32)
        ptr = out.ctypes.data
        if self._write_float(self.synth.synth, n, ptr, 0, 2, ptr, 1, 2) != 0:
            raise RenderError("FluidSynth failed to render")
        return out

    def _align(self) -> None:
        """Read up to the next block boundary, so this render's notes start where they would
        in a fresh synth."""
        if self._clock % BLOCK:
            self._samples(BLOCK - self._clock % BLOCK)

    def _silence(self) -> None:
        """Stop every voice and reset the channels, then read up to a block boundary.
        `system_reset()` alone leaves some voices sounding (FluidR3's 808 cymbals ring on into
        the next render); `all_sounds_off` on every channel ends them."""
        self.synth.system_reset()
        for channel in range(16):
            self.synth.all_sounds_off(channel)
        self._samples(2 * BLOCK)
        self._align()

    def _reset_voices(self) -> None:
        """Play every voice slot for a block with the same notes, then silence them all. A
        voice slot starts each note from the state its last note left (a fresh slot gives a
        softer attack), so without this a render would depend on what was rendered before."""
        synth, kit = self.synth, self.kits[0]
        self._silence()
        sfid = self._sfid(kit.soundfont)
        for channel in range(16):
            synth.program_select(channel, sfid, kit.bank, kit.program)
        polyphony = int(synth.get_setting("synth.polyphony") or 256)
        count = getattr(synth, "get_active_voice_count", None)
        active, step = 0, 1
        for _ in range(polyphony):  # rounds; notes pile up until every slot is playing
            for channel in range(16):
                for key in range(128):
                    if count is None:  # an old pyfluidsynth: one round of every key
                        synth.noteon(channel, key, 100)
                        continue
                    if active + step > polyphony:
                        break
                    synth.noteon(channel, key, 100)
                    before, active = active, count()
                    step = max(step, active - before)
            if count is None or active + step > polyphony or active == 0:
                break
        self._samples(BLOCK)
        self._silence()

    def kit(self, name: str | None) -> Kit:
        """A kit by its full name, or by short name ("808") from the first soundfont with it."""
        if not self.available:
            raise RenderError(self.reason)
        if not name:
            return self.kits[0]
        key = name.strip().lower()
        for kit in self.kits:
            if kit.name.lower() == key:
                return kit
        for kit in self.kits:
            if kit.name.lower().split(" (")[0] == key:
                return kit
        return self.kits[0]  # a preset's kit the installed soundfonts lack: use the first

    def render(self, pattern: Pattern, kit: str | None = None) -> np.ndarray:
        """Stereo float32 audio of exactly `pattern.bars` bars, unnormalised, loopable."""
        chosen = self.kit(kit)
        pitches = KITS["gm"]
        length = round(pattern.bars * pattern.steps_per_bar * pattern.step_seconds * SAMPLE_RATE)
        events = []
        for h in pattern.hits:
            at = round(pattern.hit_seconds(h) * SAMPLE_RATE)
            if at < 0:  # played ahead of the first downbeat: the end of the previous loop
                at += length
            # rounded to FluidSynth's 64-sample blocks, where it starts notes anyway
            events.append((min(length - 1, max(0, BLOCK * round(at / BLOCK))), pitches[h.drum],
                           h.velocity))
        events.sort()
        total = length + round(TAIL_SECONDS * SAMPLE_RATE)
        with self._lock:
            synth = self.synth
            try:
                synth.program_select(DRUM_CHANNEL, self._sfid(chosen.soundfont), chosen.bank,
                                     chosen.program)
                chunks, now = [], 0
                for at, note, velocity in events:
                    if at > now:
                        chunks.append(self._samples(at - now))
                        now = at
                    synth.noteon(DRUM_CHANNEL, note, velocity)
                chunks.append(self._samples(total - now))
            finally:
                self._reset_voices()  # leaves the synth as a fresh render expects it
        audio = np.concatenate(chunks)
        loop = audio[:length].copy()
        for start in range(length, total, length):  # ring-out folded onto the loop's start
            tail = audio[start:start + length]
            loop[: len(tail)] += tail
        return np.clip(loop, -1.0, 1.0)

    def to_ogg(self, pattern: Pattern, kit: str | None = None) -> bytes:
        return encode(self.render(pattern, kit), "OGG")

    def write_wav(self, pattern: Pattern, path: str | os.PathLike, kit: str | None = None):
        return atomic_write_bytes(path, encode(self.render(pattern, kit), "WAV"))


def _float_writer(fluidsynth):
    """`fluid_synth_write_float` through pyfluidsynth's ctypes helper (None if missing)."""
    from ctypes import c_int, c_void_p
    return fluidsynth.cfunc("fluid_synth_write_float", c_int, ("synth", c_void_p, 1),
                            ("len", c_int, 1), ("lout", c_void_p, 1), ("loff", c_int, 1),
                            ("lincr", c_int, 1), ("rout", c_void_p, 1), ("roff", c_int, 1),
                            ("rincr", c_int, 1))


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """Audio bytes: "OGG" (Vorbis, about 15x smaller than WAV) or "WAV" (16-bit PCM)."""
    import soundfile
    buf = io.BytesIO()
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    soundfile.write(buf, audio, SAMPLE_RATE, format=fmt, subtype=subtype)
    return buf.getvalue()
