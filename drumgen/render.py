"""Audio: render a pattern through FluidSynth with a drum kit, to a seamless loop.

One `fluidsynth.Synth` is loaded once per process and reused under a lock (30-50 ms a render
against 100-200 ms for the CLI, DESIGN.md), with `system_reset()` between renders. Soundfonts are
found in the repository's `soundfonts/` (our own CC0 kit), in $DRUMGEN_SOUNDFONTS, and where
Debian installs GM soundfonts.
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
        try:
            import fluidsynth  # needs Debian's libfluidsynth3
            self.synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE), gain=0.6)
        except Exception as exc:  # ImportError, OSError when the library is missing
            self.reason = f"FluidSynth is not available ({type(exc).__name__}: {exc})"
        self.kits = self._find_kits(soundfonts if soundfonts is not None else soundfont_paths())
        if self.synth and not self.kits:
            self.reason = "no drum soundfont found"

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
        events = sorted((max(0, round(pattern.hit_seconds(h) * SAMPLE_RATE)), pitches[h.drum],
                         h.velocity) for h in pattern.hits)
        with self._lock:
            synth = self.synth
            synth.system_reset()
            synth.program_select(DRUM_CHANNEL, self._sfid(chosen.soundfont), chosen.bank,
                                 chosen.program)
            chunks, now = [], 0
            for at, note, velocity in events:
                if at > now:
                    chunks.append(synth.get_samples(at - now))
                    now = at
                synth.noteon(DRUM_CHANNEL, note, velocity)
            total = length + round(TAIL_SECONDS * SAMPLE_RATE)
            chunks.append(synth.get_samples(total - now))
            synth.system_reset()
        audio = np.concatenate(chunks).astype(np.float32).reshape(-1, 2) / 32768.0
        loop = audio[:length].copy()
        tail = audio[length:]
        loop[: len(tail)] += tail[: len(loop)]
        return np.clip(loop, -1.0, 1.0)

    def to_ogg(self, pattern: Pattern, kit: str | None = None) -> bytes:
        return encode(self.render(pattern, kit), "OGG")

    def write_wav(self, pattern: Pattern, path: str | os.PathLike, kit: str | None = None):
        return atomic_write_bytes(path, encode(self.render(pattern, kit), "WAV"))


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """Audio bytes: "OGG" (Vorbis, about 15x smaller than WAV) or "WAV" (16-bit PCM)."""
    import soundfile
    buf = io.BytesIO()
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    soundfile.write(buf, audio, SAMPLE_RATE, format=fmt, subtype=subtype)
    return buf.getvalue()
