"""What the app does per request, with no UI in it: generate and package files, list models,
and run one training job at a time. `app.py` only wires widgets to these functions."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import presets as presets_mod
from .archive import safe_extract
from .constants import MIDI_LAYOUTS
from .generate import DEFAULT_MODEL, MODELS_DIR, Generator, Request, RequestError
from .model import FILES, GenerationDefaults, read_defaults
from .pattern import MAX_MIDI_BYTES, atomic_write_bytes
from .render import Renderer, RenderError, UnknownKit, encode

USER_MODELS = Path(os.environ.get("DRUMGEN_USER_MODELS",
                                  Path(__file__).resolve().parent.parent / "runs" / "models"))
MAX_UPLOAD_BYTES = 50_000_000
TEMP_MAX_AGE_S = 15 * 60
MAX_REQUEST_DIRS = 64


class TempStore:
    """Per-request folders under one private root, removed at exit. Request folders older
    than `max_age_s`, or beyond the newest `max_dirs`, are pruned whenever a new one is made:
    Gradio copies what a handler returns into its own cache, so ours are only needed briefly.
    Job folders (training data) live until their job removes them. Nothing is ever written
    to a fixed shared path."""

    def __init__(self, max_age_s: float = TEMP_MAX_AGE_S, max_dirs: int = MAX_REQUEST_DIRS):
        self.root = Path(tempfile.mkdtemp(prefix="drumgen-"))
        self.requests, self.jobs = self.root / "requests", self.root / "jobs"
        self.requests.mkdir()
        self.jobs.mkdir()
        self.max_age_s, self.max_dirs = max_age_s, max_dirs
        self._lock = threading.Lock()
        atexit.register(shutil.rmtree, self.root, True)

    def new(self, job: bool = False) -> Path:
        with self._lock:
            if not job:
                self._prune()
            path = (self.jobs if job else self.requests) / uuid.uuid4().hex
            path.mkdir()
            return path

    def _prune(self) -> None:
        now, dated = time.time(), []
        for old in self.requests.iterdir():
            try:
                dated.append((old.stat().st_mtime, old))
            except FileNotFoundError:
                continue
        dated.sort()
        for i, (mtime, old) in enumerate(dated):
            if now - mtime > self.max_age_s or i < len(dated) - (self.max_dirs - 1):
                shutil.rmtree(old, ignore_errors=True)

    def count(self) -> int:
        return sum(1 for _ in self.requests.iterdir()) + sum(1 for _ in self.jobs.iterdir())


TEMP = TempStore()


# ---------------------------------------------------------------------------------------------
# Models

def models() -> dict[str, Path]:
    """Model name -> folder: the shipped ones, then those trained here (newest first)."""
    found = {}
    for root in (MODELS_DIR, USER_MODELS):
        if root.is_dir():
            for folder in sorted(root.iterdir(), key=lambda p: -p.stat().st_mtime):
                if all((folder / f).is_file() for f in FILES):
                    found.setdefault(folder.name, folder)
    return found


def model_path(name: str | None) -> Path:
    if not name:
        return DEFAULT_MODEL
    known = models()
    if name not in known:
        raise RequestError(f"model: unknown model {name!r}; available: {', '.join(known)}")
    return known[name]


def sampling_defaults(model: str | None = None) -> GenerationDefaults:
    """A model's saved generation defaults (read from its folder, without loading it)."""
    return read_defaults(model_path(model))


def style_choices(model: str | None = None) -> list[str]:
    """A model's conditioning styles (read from its styles.json, without loading it), then the
    producer presets."""
    folder = model_path(model)
    try:
        styles = json.loads((folder / "styles.json").read_text())
    except (OSError, ValueError) as exc:
        raise RequestError(f"model: cannot read the styles of {folder.name} ({exc})") from None
    return [str(s).lower() for s in styles] + [p.name for p in presets_mod.PRESETS.values()]


# ---------------------------------------------------------------------------------------------
# Generation

@dataclass
class Take:
    """One variation's files (`audio` and `wav` are None until rendered)."""

    midi: Path
    audio: Path | None
    wav: Path | None
    pattern: object
    title: str


@dataclass
class Result:
    """What a request made. Only the first take's audio comes at once: `finish` renders the
    WAV and the other takes' audio after the first answer has gone out."""

    takes: list[Take]
    info: str
    audio_note: str = ""
    kit: str | None = None  # the kit the audio plays with
    wav: bool = True  # whether each take gets a .wav as well
    pending: bool = False  # audio still to render (`finish`)
    first: object = field(default=None, repr=False)  # the first take's samples, for its .wav

    @property
    def files(self) -> list[Path]:
        """Every take's .mid and audio that exist so far."""
        return [p for t in self.takes for p in (t.midi, t.audio) if p]


def generate(request: Request, model: str | None = None, kit: str | None = None,
             midi_layout: str = "gm", wav: bool = True, audio: bool = True) -> Result:
    """Generate, write MIDI (and OGG/WAV audio when FluidSynth works) into a fresh folder."""
    _check_layout(midi_layout)
    kit = _kit_for(request.style, kit) if audio else None  # an unknown kit fails here, first
    request.prime = _read_upload("prime", request.prime)
    gen = Generator.load(model_path(model))
    start = time.perf_counter()
    grooves = gen.generate(request)
    gen_s = time.perf_counter() - start
    result, used, render_s = _package(grooves, request.tempo, kit, midi_layout, wav, audio)
    first = grooves[0]
    result.info = (
        f"**{first.preset or first.style}** (style `{first.style}`), {request.bars} bars at "
        f"{request.tempo:g} bpm, seed **{first.seed}**, {len(grooves)} variation(s)  \n"
        f"{_sampling_line(first)}, density {request.density}, fill "
        f"{'on' if request.fill else 'off'}, swing {first.settings['feel'].swing:g}%, "
        f"humanize {first.settings['feel'].humanize:g}, kit {used}, MIDI {midi_layout}  \n"
        f"generated in {gen_s * 1000:.0f} ms, rendered in {render_s * 1000:.0f} ms")
    return result


#: The edit verbs of `Generator` (and `drumgen.edit`) the app offers, with their summaries.
EDITS = {
    "regenerate": lambda g: (f"kept {', '.join(g.settings['keep_drums'])}, regenerated the "
                             "rest" if "keep_drums" in g.settings else
                             f"regenerated bar(s) {', '.join(map(str, g.settings['bars']))}"
                             + (" as fills" if g.settings.get("fill") else "")),
    "groove": lambda g: (f"played every hit with the model's "
                         f"{'timing' if g.settings['keep_velocity'] else 'velocity and timing'}"
                         f", strength {g.settings['strength']:g} ({g.settings['player']})"),
    "drumify": lambda g: f"drums on {g.settings['onsets']} onsets",
}


def edit(verb: str, request, model: str | None = None, kit: str | None = None,
         midi_layout: str = "gm", wav: bool = True, audio: bool = True) -> Result:
    """Run an edit (`regenerate`, `groove` or `drumify`) and package it like `generate`."""
    if verb not in EDITS:
        raise RequestError(f"unknown edit {verb!r}; choose from {', '.join(EDITS)}")
    _check_layout(midi_layout)
    kit = _kit_for(request.style, kit) if audio else None
    if not hasattr(request.midi, "hits"):  # a Pattern (the page's draft) passes as it is
        request.midi = _read_upload("midi", request.midi)
    gen = Generator.load(model_path(model))
    start = time.perf_counter()
    grooves = getattr(gen, verb)(request)
    gen_s = time.perf_counter() - start
    first = grooves[0]
    result, used, render_s = _package(grooves, first.pattern.tempo, kit, midi_layout, wav,
                                      audio)
    result.info = (
        f"**{verb}**: {EDITS[verb](first)}. **{first.preset or first.style}** (style "
        f"`{first.style}`), {first.pattern.bars} bars at {first.pattern.tempo:g} bpm, seed "
        f"**{first.seed}**, {len(grooves)} variation(s)  \n{_sampling_line(first)}, kit "
        f"{used}, MIDI {midi_layout}  \nedited in {gen_s * 1000:.0f} ms, rendered in "
        f"{render_s * 1000:.0f} ms")
    return result


def _check_layout(midi_layout: str) -> None:
    if midi_layout not in MIDI_LAYOUTS:
        raise RequestError(f"midi_layout must be {', '.join(MIDI_LAYOUTS)}; got "
                           f"{midi_layout!r}")


def _read_upload(name: str, value):
    """An uploaded file's bytes (a path from the page or the API), size-checked."""
    if not isinstance(value, (str, os.PathLike)):
        return value
    path = Path(value)
    if not path.is_file():
        raise RequestError(f"{name}: no such file {path.name!r}")
    size = path.stat().st_size
    if size > MAX_MIDI_BYTES:
        raise RequestError(f"{name}: {size:,} bytes is over the {MAX_MIDI_BYTES:,}-byte limit")
    return path.read_bytes()


def _sampling_line(groove) -> str:
    s = groove.settings
    return (f"temperature {s['temperature']:g}, top-k {s['top_k']}, top-p {s['top_p']:g}, "
            f"style strength {s['style_strength']:g}")


def _package(grooves, tempo: float, kit: str | None, midi_layout: str, wav: bool,
             audio: bool) -> tuple[Result, str, float]:
    """Each groove's .mid (and audio) in a fresh folder; returns the result, the kit that
    played and the render time."""
    items = []
    for i, groove in enumerate(grooves):
        stem = f"drumgen_{groove.style}_{int(tempo)}bpm_seed{groove.seed}" + (
            f"_v{i + 1}" if len(grooves) > 1 else "")
        items.append((groove.pattern, stem, f"drumgen {groove.preset or groove.style}"))
    return package(items, kit, midi_layout, wav, audio)


def _kit_for(style: str | None, kit: str | None) -> str | None:
    """The full name of the kit to play (`Renderer.choose`: the one asked for, else the
    preset's or the style's, else the best installed); None when there is no audio. A kit
    no soundfont has is refused, naming the `kit` parameter."""
    renderer = Renderer.default()
    if not renderer.available:
        return None
    try:
        return renderer.choose(style, kit).name
    except UnknownKit as exc:
        raise RequestError(str(exc)) from None


def render_draft(pattern, style: str | None = None, kit: str | None = None,
                 midi_layout: str = "gm", wav: bool = True,
                 audio: bool = True) -> tuple[Result, str, float]:
    """A hand-edited draft's .mid and audio (no model involved)."""
    _check_layout(midi_layout)
    stem = f"drumgen_draft_{int(pattern.tempo)}bpm_{uuid.uuid4().hex[:6]}"
    return package([(pattern, stem, "drumgen draft")], _kit_for(style, kit) if audio else None,
                   midi_layout, wav, audio)


def package(items, kit: str | None, midi_layout: str, wav: bool,
            audio: bool) -> tuple[Result, str, float]:
    """(pattern, file stem, track name) items written as .mid into a fresh folder, and the
    first item's OGG audio (`finish` writes the rest); returns the result, the kit that
    played and the first render's time."""
    folder = TEMP.new()
    renderer = Renderer.default()
    takes = [Take(pattern.save(folder / f"{stem}.mid", kit=midi_layout, name=name), None, None,
                  pattern, f"Variation {i + 1}") for i, (pattern, stem, name) in enumerate(items)]
    result = Result(takes, "", kit=kit, wav=wav)
    render_s = 0.0
    if not audio:
        result.audio_note = "Audio off (kit: none)."
    elif not renderer.available:
        result.audio_note = f"No audio: {renderer.reason}. The MIDI and the grid still work."
    else:
        t = time.perf_counter()
        result.first = _render_take(result, takes[0], wav=False)
        render_s = time.perf_counter() - t
        result.pending = result.first is not None and (wav or len(takes) > 1)
    used = renderer.kit(kit).name if renderer.available and audio else "none"
    return result, used, render_s


def finish(result: Result) -> bool:
    """Render what the first answer left out: the first take's .wav and every other take's
    audio. Returns whether there was anything to do."""
    if not result.pending:
        return False
    first, *rest = result.takes
    if result.wav and first.wav is None:
        try:
            first.wav = atomic_write_bytes(first.midi.with_suffix(".wav"),
                                           encode(result.first, "WAV"))
        except OSError as exc:  # the folder pruned meanwhile, a full disk
            result.audio_note = f"The .wav failed ({exc}); the audio and the MIDI are fine."
    for take in rest:
        if take.audio is None and _render_take(result, take, result.wav) is None:
            break  # the note says why; the takes after it would fail alike
    result.pending, result.first = False, None
    return True


def take_audio(result: Result, take: Take) -> Take:
    """`take` with its audio, rendered now if `finish` has not yet reached it (a variation
    chosen on the page before the whole answer came)."""
    if take.audio is None and result.kit is not None and not result.audio_note:
        _render_take(result, take, result.wav)
    return take


def _render_take(result: Result, take: Take, wav: bool):
    """Render `take` and write its OGG (and .wav) beside its .mid; returns the samples, or
    None when the audio failed (the result's note says why)."""
    try:
        samples = Renderer.default().render(take.pattern, result.kit)
        take.audio = atomic_write_bytes(take.midi.with_suffix(".ogg"), encode(samples, "OGG"))
        if wav:
            take.wav = atomic_write_bytes(take.midi.with_suffix(".wav"), encode(samples, "WAV"))
    except (RenderError, RuntimeError, OSError) as exc:
        result.audio_note = f"Audio failed ({exc}); the MIDI and the grid are fine."
        return None
    return samples


# ---------------------------------------------------------------------------------------------
# Training, one job at a time

def training_enabled() -> tuple[bool, str]:
    """Training is on locally, and off on a public deployment (a Hugging Face Space, or a
    server bound to all interfaces) unless DRUMGEN_ENABLE_TRAINING=1."""
    flag = os.environ.get("DRUMGEN_ENABLE_TRAINING", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True, ""
    if flag in ("0", "false", "no"):
        return False, "Training is disabled on this server (DRUMGEN_ENABLE_TRAINING=0)."
    public = bool(os.environ.get("SPACE_ID")) or \
        os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1") not in ("127.0.0.1", "localhost")
    if public:
        return False, ("Training is off on this public deployment. Run drumgen locally, or "
                       "set DRUMGEN_ENABLE_TRAINING=1 on a server you control.")
    return True, ""


@dataclass
class Job:
    name: str
    out: Path
    events: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: str = ""
    done: bool = False
    workdir: Path | None = None


class Trainer:
    """Runs `drumgen.train.train` in a background thread; only one job at a time."""

    def __init__(self):
        self._lock = threading.Lock()
        self.job: Job | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.done

    def start(self, data_dir: Path | None, zip_path: str | os.PathLike | None, preset: str,
              epochs: float | None, minutes: float | None, name: str) -> Job:
        from .train import TrainConfig, train
        enabled, why = training_enabled()
        if not enabled:
            raise RequestError(why)
        if preset not in ("debug", "small"):
            raise RequestError(f"preset must be debug or small here; got {preset!r}")
        if epochs is not None and not 0 < epochs <= 100:
            raise RequestError(f"epochs must be from 0 to 100; got {epochs}")
        if minutes is not None and not 0 < minutes <= 24 * 60:
            raise RequestError(f"time budget must be from 0 to 1440 minutes; got {minutes}")
        if epochs is None and minutes is None:
            raise RequestError("give a number of epochs or a time budget")
        safe = re.sub(r"[^a-zA-Z0-9_-]+", "-", name or "").strip("-")[:40] or "my-model"
        with self._lock:
            if self.busy:
                raise RequestError("a training run is already going; stop it or wait")
            workdir = None
            if zip_path:
                size = Path(zip_path).stat().st_size
                if size > MAX_UPLOAD_BYTES:
                    raise RequestError(f"the zip is {size:,} bytes; the limit is "
                                       f"{MAX_UPLOAD_BYTES:,}")
                workdir = TEMP.new(job=True)
                try:
                    data_dir = safe_extract(zip_path, workdir / "data")
                except BaseException:
                    shutil.rmtree(workdir, ignore_errors=True)
                    raise
            if data_dir is None:
                raise RequestError("no data: upload a zip of style folders of MIDI files")
            out = USER_MODELS / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
            job = Job(out.name, out, workdir=workdir)
            cfg = TrainConfig(preset=preset, epochs=epochs, time_budget=minutes,
                              batch_size=8 if preset == "debug" else 16,
                              checkpoint_every=200)

            def run() -> None:
                try:
                    train(cfg, data_dir, out, callback=job.events.append,
                          should_stop=job.stop.is_set)
                except Exception as exc:  # reported to the page; the app stays up
                    job.error = f"{type(exc).__name__}: {exc}"
                finally:
                    job.done = True
                    if workdir:
                        shutil.rmtree(workdir, ignore_errors=True)

            job.thread = threading.Thread(target=run, daemon=True, name="drumgen-train")
            self.job = job
            job.thread.start()
            return job

    def stop(self) -> bool:
        if self.busy:
            self.job.stop.set()
            return True
        return False


TRAINER = Trainer()
