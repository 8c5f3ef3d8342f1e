"""Audio: render a pattern through FluidSynth with a drum kit, to a seamless loop.

One `fluidsynth.Synth` is loaded once per process and reused under a lock (a 4-bar render
takes 12-35 ms dry and unnormalised, 40-90 ms with the room and the loudness, against
100-200 ms for the fluidsynth CLI's fast render, measured on this project's 2-core machine;
bench/render.py). Soundfonts are found in the repository's
`soundfonts/` (our own CC0 kit), in $DRUMGEN_SOUNDFONTS, and where Debian installs soundfonts.
The best installed kit plays by default (`drumgen.kits`: multi-sampled acoustic kits, then GM
kits, then ours); a style or preset picks its own, and a kit asked for by name always wins.

The mix (`drumgen.kits`): each drum on its own channel, panned from the drummer's seat; a light
room from FluidSynth's own reverb (`reverb=False`, or DRUMGEN_REVERB=0, turns it off); and the
loop scaled to one loudness whatever the kit or the groove.

Renders are reproducible: the same pattern and kit give the same samples, whatever was rendered
before. FluidSynth habits that stood in the way, each measured here:
- its 16-bit output is dithered with noise that carries on from call to call: we read floats;
- `system_reset()` leaves some voices sounding (FluidR3's 808 cymbals rang into the next
  render): every channel also gets `all_sounds_off`;
- the reverb's tail outlives `system_reset()` and never quite ends (it settles on a 1e-8
  offset); FluidSynth 2.3 has no call to clear it but `fluid_synth_set_sample_rate`, which
  rebuilds the reverb: each reset calls it, and the reverb stays off until a render turns it
  on. A voice slot's reverb send also carries over (a FluidR3 render with reverb moved the
  next render by 2e-4): the slots are reset with the reverb on;
- a note starts at the next 64-sample block, so timing depended on how many samples earlier
  renders had read: renders start on a block boundary and onsets are rounded to blocks (1.45 ms);
- a voice slot starts each note from the state its previous note left (a fresh slot attacks
  softer, one last used by another kit differently): after each render every slot plays the
  same note for one block (about 6 ms).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import kits as kitdefs
from . import presets
from .constants import DRUMS, KITS
from .mix import SAMPLE_RATE, balance_db, normalise
from .pattern import Pattern, atomic_write_bytes

BLOCK = 64  # FluidSynth renders, and starts notes, in blocks of this many samples
TAIL_SECONDS = 1.5  # ring-out folded back onto the start, so the loop is seamless
PAN_PROBE = 64 * 64  # samples (93 ms) of a hit whose stereo balance sets its channel's pan
REPO_SOUNDFONTS = Path(__file__).resolve().parent.parent / "soundfonts"
SYSTEM_SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/soundfonts"),
                         Path("/usr/share/sounds/sf3"))
#: The channels the drums play on (`drumgen.kits.DRUM_CHANNELS`), each given the kit.
CHANNELS = tuple(sorted(set(kitdefs.DRUM_CHANNELS.values())))


class RenderError(RuntimeError):
    """Audio could not be made; the message says why (the MIDI and grid still work)."""


class UnknownKit(ValueError):
    """A kit name that no installed soundfont has; the message names the `kit` parameter."""


@dataclass(frozen=True)
class Kit:
    name: str  # what the UI shows, e.g. "808 (FluidR3_GM)"
    soundfont: Path
    bank: int
    program: int
    keys: tuple[int, ...] = KITS["gm"]  # the key each drum plays, in DRUMS order
    rank: int = kitdefs.RANK_GM  # lower sounds better (drumgen.kits.RANK_*)

    @property
    def short(self) -> str:
        return self.name.split(" (")[0]


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

    def __init__(self, soundfonts: list[Path] | None = None, reverb: bool | None = None):
        """`reverb`: the room reverb's default for `render` (None: on unless DRUMGEN_REVERB=0)."""
        self._lock = threading.Lock()
        self.reason = ""
        self.synth = None
        self.reverb = os.environ.get("DRUMGEN_REVERB", "1") != "0" if reverb is None else reverb
        self._sfids: dict[Path, int] = {}
        self._pans: dict[str, dict[int, int]] = {}  # kit name -> channel -> CC 10, measured
        self._keys: range | list[int] | None = None  # the first kit's keys that sound
        self._write_float = self._reverb_on = self._set_rate = None
        self._clock = 0  # samples read from the synth so far, to keep renders block-aligned
        try:
            # pyfluidsynth prints where it found the library when CI is set; that line is not
            # ours to put on stdout, where the CLI writes its results
            with contextlib.redirect_stdout(sys.stderr):
                import fluidsynth  # needs Debian's libfluidsynth3
            self.synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE), gain=0.6,
                                          **{"synth.reverb.active": 1,
                                             "synth.chorus.active": 0})
            self.synth.set_reverb(**kitdefs.REVERB)
            self._write_float, self._reverb_on, self._set_rate = _c_functions(fluidsynth)
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
        """Every kit in these soundfonts, best first (`drumgen.kits` ranks them)."""
        if self.synth is None:
            return []
        kits = []
        for path in paths:
            try:
                sfid = self._sfid(path)
            except RenderError:
                continue
            ours = path.resolve().parent == REPO_SOUNDFONTS.resolve()
            acoustic = kitdefs.ACOUSTIC_KITS.get(self.synth.sfpreset_name(sfid, 0, 0) or "")
            if acoustic:
                name, keys = acoustic
                kits.append(Kit(f"{name} ({path.stem})", path, 0, 0, keys,
                                kitdefs.RANK_ACOUSTIC))
            for name, program in kitdefs.GM_PROGRAMS.items():
                if self.synth.sfpreset_name(sfid, 128, program):
                    kits.append(Kit(f"{name} ({path.stem})", path, 128, program,
                                    rank=kitdefs.RANK_OURS if ours else kitdefs.RANK_GM))
        return sorted(kits, key=lambda k: k.rank)  # stable: soundfont and program order

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
        if self._set_rate is not None:  # rebuilds the reverb: its tail outlives the reset
            self._set_rate(self.synth.synth, float(SAMPLE_RATE))
        if self._reverb_on is not None:  # and keeps it off, fresh, until a render wants it
            self._reverb_on(self.synth.synth, 0)
        self._samples(2 * BLOCK)
        self._align()

    def _reset_voices(self) -> None:
        """Play every voice slot for a block with the same notes, then silence them all. A
        voice slot starts each note from the state its last note left (a fresh slot gives a
        softer attack), so without this a render would depend on what was rendered before."""
        synth, kit = self.synth, self.kits[0]
        self._silence()
        if self._reverb_on is not None:  # with the reverb on, so each slot's send is reset too
            self._reverb_on(synth.synth, 1)
        sfid = self._sfid(kit.soundfont)
        for channel in range(16):
            synth.program_select(channel, sfid, kit.bank, kit.program)
        polyphony = int(synth.get_setting("synth.polyphony") or 256)
        count = getattr(synth, "get_active_voice_count", None)
        if self._keys is None:
            self._keys = self._sounding_keys(count)
        active, step = 0, 1
        for _ in range(polyphony):  # rounds; notes pile up until every slot is playing
            for channel in range(16):
                for key in self._keys:
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

    def _sounding_keys(self, count) -> range | list[int]:
        """The keys of the first kit that start a voice (26 of 128 for Black Pearl): the
        others start none and kill none, so the slot reset skips them (about 1,200 note-ons
        a reset down to 256, one a voice slot; measured here)."""
        if count is None:
            return range(128)
        keys = []
        for key in range(128):
            self.synth.noteon(0, key, 100)
            if count():
                keys.append(key)
            self.synth.all_sounds_off(0)
            self._samples(BLOCK)
        return keys

    def kit(self, name: str | None) -> Kit:
        """A kit by its full name, or by short name ("808") from the best soundfont with it;
        None is the best installed kit. An unknown name raises `UnknownKit`."""
        if not self.available:
            raise RenderError(self.reason)
        if not name:
            return self.kits[0]
        key = name.strip().lower()
        for kit in self.kits:
            if key in (kit.name.lower(), kit.short):
                return kit
        raise UnknownKit(f"kit: no installed kit is called {name!r}; installed: "
                         f"{', '.join(k.name for k in self.kits)}")

    def choose(self, style: str | None = None, kit: str | None = None) -> Kit:
        """The kit to play: the one asked for by name (it always wins), else the first
        installed of the preset's kit and its style's kits (`drumgen.kits.STYLE_KITS`), else
        the best installed kit."""
        if kit:
            return self.kit(kit)
        preset = presets.find(style or "")
        wanted = (preset.kit,) if preset else ()
        wanted += kitdefs.STYLE_KITS.get(preset.style if preset else (style or "").lower(), ())
        installed = {k.short for k in self.kits} if self.available else set()
        return self.kit(next((w for w in wanted if w in installed), None))

    def render(self, pattern: Pattern, kit: str | None = None, reverb: bool | None = None,
               normalised: bool = True) -> np.ndarray:
        """Stereo float32 audio of exactly `pattern.bars` bars, loopable, at the loudness
        target (`drumgen.kits.LOUDNESS_LUFS`; `normalised=False`: as FluidSynth made it).
        `reverb` None: the renderer's default."""
        chosen = self.kit(kit)
        length = round(pattern.bars * pattern.steps_per_bar * pattern.step_seconds * SAMPLE_RATE)
        events = []
        for h in pattern.hits:
            at = round(pattern.hit_seconds(h) * SAMPLE_RATE)
            if at < 0:  # played ahead of the first downbeat: the end of the previous loop
                at += length
            # rounded to FluidSynth's 64-sample blocks, where it starts notes anyway
            events.append((min(length - 1, max(0, BLOCK * round(at / BLOCK))),
                           kitdefs.DRUM_CHANNELS[DRUMS[h.drum]], chosen.keys[h.drum],
                           h.velocity))
        events.sort()
        total = length + round(TAIL_SECONDS * SAMPLE_RATE)
        with self._lock:
            synth = self.synth
            try:
                self._set_up(chosen, self.reverb if reverb is None else reverb)
                chunks, now = [], 0
                for at, channel, note, velocity in events:
                    if at > now:
                        chunks.append(self._samples(at - now))
                        now = at
                    synth.noteon(channel, note, velocity)
                chunks.append(self._samples(total - now))
            finally:
                self._reset_voices()  # leaves the synth as a fresh render expects it
        audio = np.concatenate(chunks)
        loop = audio[:length].copy()
        for start in range(length, total, length):  # ring-out folded onto the loop's start
            tail = audio[start:start + length]
            loop[: len(tail)] += tail
        return normalise(loop) if normalised else loop

    def _set_up(self, kit: Kit, reverb: bool) -> None:
        """The kit on every drum channel, each panned to its drum's place; the reverb on or
        off. `system_reset()` after the render puts pans (and programs) back."""
        if kit.name not in self._pans:
            self._pans[kit.name] = self._measure_pans(kit)
        sfid = self._sfid(kit.soundfont)
        for channel in CHANNELS:
            self.synth.program_select(channel, sfid, kit.bank, kit.program)
        for channel, value in self._pans[kit.name].items():
            self.synth.cc(channel, 10, value)
            self.synth.cc(channel, 91, kitdefs.REVERB_SEND)
        if self._reverb_on is not None:
            self._reverb_on(self.synth.synth, int(reverb))

    def _measure_pans(self, kit: Kit) -> dict[int, int]:
        """Channel -> the pan (CC 10) that puts its drum at `drumgen.kits.BALANCE_DB`.

        Soundfonts place their drums themselves (AVL's hats sit left, FluidR3's right) and
        pan answers differently in each (FluidR3's stereo samples move at most 7.6 dB), so
        the pan is found by bisection on short dry hits. It starts from the synth's reset
        state and runs the same steps each time, so it gives the same pans every time."""
        self._reset_voices()  # leaves the reverb off
        sfid = self._sfid(kit.soundfont)
        pans = {}
        for drum, target in kitdefs.BALANCE_DB.items():
            channel, key = kitdefs.DRUM_CHANNELS[drum], kit.keys[DRUMS.index(drum)]
            if channel in pans:
                continue  # the open hat goes where the closed one is
            self.synth.program_select(channel, sfid, kit.bank, kit.program)
            lo, hi = 0, 127
            while lo < hi:  # the balance rises with the pan
                mid = (lo + hi) // 2
                self.synth.cc(channel, 10, mid)
                self.synth.noteon(channel, key, 100)
                measured = balance_db(self._samples(PAN_PROBE))
                self.synth.all_sounds_off(channel)
                self._samples(BLOCK)
                lo, hi = (mid + 1, hi) if measured < target else (lo, mid)
            pans[channel] = lo
        self._reset_voices()
        return pans

    def to_ogg(self, pattern: Pattern, kit: str | None = None,
               reverb: bool | None = None) -> bytes:
        return encode(self.render(pattern, kit, reverb), "OGG")

    def write_wav(self, pattern: Pattern, path: str | os.PathLike, kit: str | None = None,
                  reverb: bool | None = None):
        return atomic_write_bytes(path, encode(self.render(pattern, kit, reverb), "WAV"))


def _c_functions(fluidsynth):
    """`fluid_synth_write_float`, `fluid_synth_set_reverb_on` (in FluidSynth 1 and 2 alike)
    and `fluid_synth_set_sample_rate` through pyfluidsynth's ctypes helper (each None where
    the library lacks it)."""
    from ctypes import c_float, c_int, c_void_p
    write = fluidsynth.cfunc("fluid_synth_write_float", c_int, ("synth", c_void_p, 1),
                             ("len", c_int, 1), ("lout", c_void_p, 1), ("loff", c_int, 1),
                             ("lincr", c_int, 1), ("rout", c_void_p, 1), ("roff", c_int, 1),
                             ("rincr", c_int, 1))
    reverb_on = fluidsynth.cfunc("fluid_synth_set_reverb_on", None, ("synth", c_void_p, 1),
                                 ("on", c_int, 1))
    set_rate = fluidsynth.cfunc("fluid_synth_set_sample_rate", None, ("synth", c_void_p, 1),
                                ("sample_rate", c_float, 1))
    return write, reverb_on, set_rate


#: libsndfile's format and subtype for each audio format drumgen writes, by file suffix. For a
#: 10-second loop here (bench/render.py --encode-only): OGG Vorbis is the smallest (136 KB)
#: and the slowest to make (about 0.1 s), FLAC 855 KB in a fifth of that time, WAV 1.7 MB.
ENCODINGS = {".ogg": ("OGG", "VORBIS"), ".flac": ("FLAC", "PCM_16"), ".wav": ("WAV", "PCM_16")}


def encode(audio: np.ndarray, fmt: str) -> bytes:
    """Audio bytes in `fmt`: "OGG" (Vorbis), "FLAC" or "WAV" (16-bit PCM), or a suffix of
    `ENCODINGS`."""
    import soundfile
    key = fmt.lower() if fmt.startswith(".") else f".{fmt.lower()}"
    if key not in ENCODINGS:
        raise ValueError(f"audio format must be one of {', '.join(ENCODINGS)}; got {fmt!r}")
    buf = io.BytesIO()
    soundfile.write(buf, audio, SAMPLE_RATE, format=ENCODINGS[key][0], subtype=ENCODINGS[key][1])
    return buf.getvalue()
