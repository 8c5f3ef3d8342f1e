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

from . import finetune, schema
from . import presets as presets_mod
from .archive import ArchiveError, safe_extract
from .constants import MIDI_LAYOUTS
from .folders import DEFAULT_MODEL, FILES, MODELS_DIR, GenerationDefaults, read_defaults
from .pattern import MAX_MIDI_BYTES, atomic_write_bytes
from .render import Renderer, RenderError, UnknownKit, encode
from .requests import Request
from .schema import RequestError, setting

USER_MODELS = Path(os.environ.get("DRUMGEN_USER_MODELS",
                                  Path(__file__).resolve().parent.parent / "runs" / "models"))
MAX_UPLOAD_BYTES = 50_000_000

#: The player's audio: $DRUMGEN_AUDIO. "auto" is FLAC when the app serves this machine only
#: (it encodes about 5x faster than OGG Vorbis, 0.09 s a click saved here, and its 6x larger
#: file costs nothing over loopback), and OGG Vorbis when it serves a network or a share link,
#: where every click's file crosses it.
PLAYER_AUDIO = ("auto", "ogg", "flac")
_player = {"suffix": ".ogg"}  # what `package` writes; the app sets it at launch


def player_audio(server_name: str, share: bool = False) -> str:
    """The player's file suffix (".ogg" or ".flac") for an app serving `server_name`."""
    raw = setting("DRUMGEN_AUDIO", PLAYER_AUDIO)
    if raw == "auto":
        local = server_name in ("127.0.0.1", "localhost", "::1") and not share
        raw = "flac" if local else "ogg"
    return f".{raw}"


def set_player_audio(suffix: str) -> None:
    """Write the player's audio as `suffix` (".ogg" or ".flac") from now on."""
    if suffix not in [f".{name}" for name in PLAYER_AUDIO if name != "auto"]:
        raise ValueError(f"the player's audio is .ogg or .flac; got {suffix!r}")
    _player["suffix"] = suffix
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

def _generator():
    """`drumgen.generate.Generator`, imported at first use. Torch and transformers take seconds
    to import, and the app serves its page before they are (it calls `preload` once it is up),
    so nothing this module needs to build the page imports them."""
    from .generate import Generator
    return Generator


def models() -> dict[str, Path]:
    """Model name -> folder: the shipped ones, then those trained here (newest first)."""
    found = {}
    for root in (MODELS_DIR, USER_MODELS):
        if root.is_dir():
            for folder in sorted(root.iterdir(), key=lambda p: -p.stat().st_mtime):
                # dot-folders are models still training (Trainer stages them there)
                if not folder.name.startswith(".") and all(
                        (folder / f).is_file() for f in FILES):
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


def preload(model: str | None = None) -> None:
    """Load `model` (default: the shipped one) now, so that the first request need not wait."""
    _generator().load(model_path(model))


def kits() -> list[str]:
    """The full names of the installed kits, best first (what `kit` accepts)."""
    return [k.name for k in Renderer.default().kits]


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
    """What a request made, as facts (the app words them): the takes, the verb and request
    that made them, the first take's groove, the kit and the times. Only the first take's
    audio comes at once: `finish` renders the WAV and the other takes' audio after the first
    answer has gone out."""

    takes: list[Take]
    verb: str = "generate"  # "generate", an edit verb (`EDITS`), or "draft"
    request: object = None  # as asked (a draft has none)
    groove: object = None  # the first take's Groove: style, preset, seed, settings
    kit: str | None = None  # the kit the audio plays with; None: no audio
    midi_layout: str = "gm"
    gen_s: float = 0.0  # the model's time (0 for a draft)
    render_s: float = 0.0  # the first take's audio
    audio_note: str = ""  # why there is no audio, or why some failed
    wav: bool = True  # whether each take gets a .wav as well
    pending: bool = False  # audio still to render (`finish`)
    samples: object = field(default=None, repr=False)  # the first take's audio, for its .wav
    player: str = field(default_factory=lambda: _player["suffix"])  # the player audio's suffix

    @property
    def files(self) -> list[Path]:
        """Every take's .mid and audio that exist so far."""
        return [p for t in self.takes for p in (t.midi, t.audio) if p]


def generate(request: Request, model: str | None = None, kit: str | None = None,
             midi_layout: str = "gm", wav: bool = True, audio: bool = True) -> Result:
    """Generate, write MIDI (and the player audio and .wav when FluidSynth works) into a fresh
    folder."""
    _check_layout(midi_layout)
    kit = _kit_for(request.style, kit) if audio else None  # an unknown kit fails here, first
    request.prime = _read_upload("prime", request.prime)
    gen = _generator().load(model_path(model))
    start = time.perf_counter()
    grooves = gen.generate(request)
    gen_s = time.perf_counter() - start
    return _package(grooves, "generate", request, gen_s, kit, midi_layout, wav, audio)


#: The edit verbs of `Generator` (and `drumgen.edit`) the app offers.
EDITS = ("regenerate", "groove", "drumify")


def edit(verb: str, request, model: str | None = None, kit: str | None = None,
         midi_layout: str = "gm", wav: bool = True, audio: bool = True) -> Result:
    """Run an edit (`regenerate`, `groove` or `drumify`) and package it like `generate`."""
    if verb not in EDITS:
        raise RequestError(f"unknown edit {verb!r}; choose from {', '.join(EDITS)}")
    _check_layout(midi_layout)
    kit = _kit_for(request.style, kit) if audio else None
    if not hasattr(request.midi, "hits"):  # a Pattern (the page's draft) passes as it is
        request.midi = _read_upload("midi", request.midi)
    gen = _generator().load(model_path(model))
    start = time.perf_counter()
    grooves = getattr(gen, verb)(request)
    gen_s = time.perf_counter() - start
    return _package(grooves, verb, request, gen_s, kit, midi_layout, wav, audio)


def _check_layout(midi_layout: str) -> None:
    if midi_layout not in MIDI_LAYOUTS:
        raise RequestError(f"midi_layout must be {', '.join(MIDI_LAYOUTS)}; got "
                           f"{midi_layout!r}")


def _read_upload(name: str, value):
    """An uploaded file's bytes (a path from the page or the API), size-checked."""
    if not isinstance(value, (str, os.PathLike)):
        return value
    return _checked_file(name, value, MAX_MIDI_BYTES).read_bytes()


def _checked_file(name: str, value: str | os.PathLike, limit: int) -> Path:
    """The uploaded file at `value`, refused by name when missing or over `limit` bytes."""
    path = Path(value)
    if not path.is_file():
        raise RequestError(f"{name}: no such file {path.name!r}")
    size = path.stat().st_size
    if size > limit:
        raise RequestError(f"{name}: {size:,} bytes is over the {limit:,}-byte limit")
    return path


def _package(grooves, verb: str, request, gen_s: float, kit: str | None, midi_layout: str,
             wav: bool, audio: bool) -> Result:
    """Each groove's .mid (and audio) in a fresh folder, with what made them."""
    tempo = grooves[0].pattern.tempo
    items = []
    for i, groove in enumerate(grooves):
        stem = f"drumgen_{groove.style}_{int(tempo)}bpm_seed{groove.seed}" + (
            f"_v{i + 1}" if len(grooves) > 1 else "")
        items.append((groove.pattern, stem, f"drumgen {groove.preset or groove.style}"))
    result = package(items, kit, midi_layout, wav, audio)
    result.verb, result.request, result.groove, result.gen_s = verb, request, grooves[0], gen_s
    return result


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
                 midi_layout: str = "gm", wav: bool = True, audio: bool = True) -> Result:
    """A hand-edited draft's .mid and audio (no model involved)."""
    _check_layout(midi_layout)
    stem = f"drumgen_draft_{int(pattern.tempo)}bpm_{uuid.uuid4().hex[:6]}"
    result = package([(pattern, stem, "drumgen draft")],
                     _kit_for(style, kit) if audio else None, midi_layout, wav, audio)
    result.verb = "draft"
    return result


def package(items, kit: str | None, midi_layout: str, wav: bool, audio: bool) -> Result:
    """(pattern, file stem, track name) items written as .mid into a fresh folder, and the
    first item's player audio (`finish` writes the rest)."""
    folder = TEMP.new()
    renderer = Renderer.default()
    takes = [Take(pattern.save(folder / f"{stem}.mid", kit=midi_layout, name=name), None, None,
                  pattern, f"Variation {i + 1}") for i, (pattern, stem, name) in enumerate(items)]
    playing = audio and renderer.available
    result = Result(takes, kit=renderer.kit(kit).name if playing else None,
                    midi_layout=midi_layout, wav=wav)
    if not audio:
        result.audio_note = "Audio off (kit: none)."
    elif not renderer.available:
        result.audio_note = f"No audio: {renderer.reason}. The MIDI and the grid still work."
    else:
        t = time.perf_counter()
        result.samples = _render_take(result, takes[0], wav=False)
        result.render_s = time.perf_counter() - t
        result.pending = result.samples is not None and (wav or len(takes) > 1)
    return result


def finish(result: Result) -> bool:
    """Render what the first answer left out: the first take's .wav and every other take's
    audio. Returns whether there was anything to do."""
    if not result.pending:
        return False
    first, *rest = result.takes
    if result.wav and first.wav is None:
        try:
            first.wav = atomic_write_bytes(first.midi.with_suffix(".wav"),
                                           encode(result.samples, "WAV"))
        except OSError as exc:  # the folder pruned meanwhile, a full disk
            result.audio_note = f"The .wav failed ({exc}); the audio and the MIDI are fine."
    for take in rest:
        if take.audio is None and _render_take(result, take, result.wav) is None:
            break  # the note says why; the takes after it would fail alike
    result.pending, result.samples = False, None
    return True


def take_audio(result: Result, take: Take) -> Take:
    """`take` with its audio, rendered now if `finish` has not yet reached it (a variation
    chosen on the page before the whole answer came)."""
    if take.audio is None and result.kit is not None and not result.audio_note:
        _render_take(result, take, result.wav)
    return take


def _render_take(result: Result, take: Take, wav: bool):
    """Render `take` and write its player audio (`set_player_audio`; and its .wav) beside
    its .mid; returns the samples, or None when the audio failed (the result's note says
    why)."""
    try:
        samples = Renderer.default().render(take.pattern, result.kit)
        suffix = result.player
        take.audio = atomic_write_bytes(take.midi.with_suffix(suffix), encode(samples, suffix))
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


#: A model name: what the Generate tab lists and the folder under USER_MODELS (no paths).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
GMD_SOURCE = "Groove MIDI Dataset (on this server)"
DATA_SOURCES = ("Uploaded zip", GMD_SOURCE)


@dataclass
class TrainRequest:
    """One training job, as the Train tab and /train ask for it (the same names). By default
    it fine-tunes `init_from` (the Generate tab's model) for the CPU defaults of
    `drumgen.finetune`; `from_scratch` trains a new `preset` model instead. None and 0 take
    the defaults ("no limit" for epochs and time_budget)."""

    name: str
    zip_file: str | os.PathLike | None = None
    data_source: str = DATA_SOURCES[0]
    init_from: str | None = None  # a model name; None: the shipped model
    from_scratch: bool = False
    preset: str = "small"  # the size of a model trained from scratch
    epochs: float | None = None
    time_budget: float | None = finetune.FINETUNE_MINUTES  # minutes
    lr: float | None = None
    batch_size: int | None = None
    overwrite: bool = False  # replace a model of the same name (else refused)
    train_only: str = finetune.FINETUNE_TRAIN  # fine-tuning: "style" embeddings, or "all"

    def validate(self) -> None:
        """Raise `RequestError` naming the first bad parameter."""
        if not isinstance(self.name, str) or not MODEL_NAME.fullmatch(self.name):
            raise RequestError(f"name: use 1 to 40 letters, digits, - or _, starting with a "
                               f"letter or digit; got {self.name!r}")
        if self.data_source not in DATA_SOURCES:
            raise RequestError(f"data_source must be one of {', '.join(DATA_SOURCES)}; got "
                               f"{self.data_source!r}")
        for flag in ("from_scratch", "overwrite"):
            if not isinstance(getattr(self, flag), bool):
                raise RequestError(f"{flag} must be true or false; got "
                                   f"{getattr(self, flag)!r}")
        if self.train_only not in finetune.TRAIN_ONLY:
            raise RequestError(f"train_only must be {' or '.join(finetune.TRAIN_ONLY)}; got "
                               f"{self.train_only!r}")
        if self.from_scratch and self.preset not in finetune.SCRATCH_PRESETS:
            raise RequestError(f"preset must be {' or '.join(finetune.SCRATCH_PRESETS)} here; "
                               f"got {self.preset!r}")
        for key in finetune.TRAIN_RANGES:
            if (value := getattr(self, key)) is not None:
                schema.check(key, value)
        if not self.epochs and not self.time_budget:
            raise RequestError("epochs, time_budget: give a number of epochs or a time budget "
                               "in minutes (0 = no limit, but not both)")

    def config(self):
        return finetune.config(self.from_scratch, self.time_budget or None,
                               self.epochs or None, self.lr or None, self.batch_size or None,
                               self.preset, self.train_only)


@dataclass
class Job:
    name: str
    out: Path
    base: str | None = None  # the model fine-tuned, None from scratch
    events: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: str = ""
    done: bool = False
    workdir: Path | None = None
    train_only: str = "all"


def _target(name: str, overwrite: bool) -> Path:
    """Where a new model called `name` goes; refuses a shipped model's name, and a name in
    use unless `overwrite`."""
    if (MODELS_DIR / name).exists():
        raise RequestError(f"name: {name!r} is a shipped model's name; choose another")
    target = USER_MODELS / name
    if target.exists() and not overwrite:
        raise RequestError(f"name: a model called {name!r} already exists; choose another "
                           "name, or set overwrite to replace it")
    return target


def _publish(staged: Path, target: Path, overwrite: bool) -> None:
    """Move a finished model from its staging folder to its name, replacing the old model
    only when `overwrite`; a reader sees the old folder or the new one, never half of one."""
    shutil.rmtree(staged / "checkpoints", ignore_errors=True)  # the tab offers no resume
    old = None
    if target.exists():
        if not overwrite:
            raise RequestError(f"name: a model called {target.name!r} appeared during "
                               "training; this run was not saved: train again under another "
                               "name, or with overwrite")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(staged, target)
    _generator().forget(target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


class Trainer:
    """Runs `drumgen.train.train` in a background thread; only one job at a time. A model
    trains in a hidden staging folder and takes its name only when it is finished."""

    def __init__(self):
        self._lock = threading.Lock()
        self.job: Job | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.done

    def start(self, request: TrainRequest) -> Job:
        """Check `request` and start it: on the uploaded zip, or on this server's Groove MIDI
        Dataset when `data_source` asks for it."""
        enabled, why = training_enabled()
        if not enabled:
            raise RequestError(why)
        request.validate()
        gmd = _gmd() if request.data_source == GMD_SOURCE else None
        base = None if request.from_scratch else _base(request.init_from)
        cfg = request.config()
        with self._lock:
            if self.busy:
                raise RequestError("a training run is already going; stop it or wait")
            target = _target(request.name, request.overwrite)
            workdir = TEMP.new(job=True)
            try:
                data_dir = gmd or _unpack(request.zip_file, workdir)
                if data_dir is None:
                    raise RequestError("zip_file: no data: upload a zip of style folders of "
                                       "MIDI files")
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            USER_MODELS.mkdir(parents=True, exist_ok=True)
            staged = USER_MODELS / f".{request.name}.training-{uuid.uuid4().hex[:8]}"
            job = Job(request.name, target, base and base.name, workdir=workdir,
                      train_only=cfg.train_only)
            job.thread = threading.Thread(
                target=self._run, args=(job, cfg, data_dir, staged, base, request.overwrite),
                daemon=True, name="drumgen-train")
            self.job = job
            job.thread.start()
            return job

    @staticmethod
    def _run(job: Job, cfg, data_dir: Path, staged: Path, base: Path | None,
             overwrite: bool) -> None:
        from .train import train
        try:
            summary = train(cfg, data_dir, staged, init_from=base,
                            callback=job.events.append, should_stop=job.stop.is_set)
            finetune.write_card(staged, job.name, job.base, cfg, summary)
            _publish(staged, job.out, overwrite)
        except Exception as exc:  # reported to the page; the app stays up
            job.error = str(exc) if isinstance(exc, RequestError) else \
                f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            if job.workdir:
                shutil.rmtree(job.workdir, ignore_errors=True)
            job.done = True

    def stop(self) -> bool:
        if self.busy:
            self.job.stop.set()
            return True
        return False


def _base(name: str | None) -> Path:
    try:
        return model_path(name)
    except RequestError as exc:
        raise RequestError(f"init_from: {str(exc).removeprefix('model: ')}") from None


def _gmd() -> Path:
    """This server's Groove MIDI Dataset (`drumgen.data.default_data_dir`), refused by
    `data_source` when there is none."""
    from .data import default_data_dir  # imports the tokenizer, so torch: see `_generator`
    found = default_data_dir()
    if found is None:
        raise RequestError("data_source: this server has no Groove MIDI Dataset; upload a zip "
                           "instead")
    return found


def _unpack(zip_file: str | os.PathLike | None, workdir: Path) -> Path | None:
    if not zip_file:
        return None
    path = _checked_file("zip_file", zip_file, MAX_UPLOAD_BYTES)
    try:
        return safe_extract(path, workdir / "data")
    except ArchiveError as exc:
        raise RequestError(f"zip_file: {exc}") from None


TRAINER = Trainer()
