"""The inference API: `Generator.load(folder).generate(Request(...))` -> list of `Groove`.

The CLI, the app, the tests and the benchmarks all call this, and only this.
"""

from __future__ import annotations

import os
import random
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch

from . import model as model_mod
from . import presets as presets_mod
from .constants import DENSITY_EDGES, DENSITY_NAMES
from .constraints import BarSpec, EditGrammar
from .feel import Feel, apply
from .folders import DEFAULT_MODEL, MODELS_DIR  # noqa: F401  (re-exported)
from .pattern import MidiError, Pattern
from .requests import Request  # noqa: F401  (re-exported: its home before requests.py)
from .sampling import DECODERS, WEIGHTS, resolve_engine, sample
from .schema import RequestError, setting
from .tokenizer import Grammar, density_bucket, tempo_bucket

MAX_PASS_BARS = 8  # bars one pass may hold: the model trains on 8-bar windows
CONTEXT_BARS = 4  # bars of context carried into the next pass when a groove is longer
#: Tokens an edited bar may spend beyond its forced ones when passes are sized: GMD bars take
#: about 33 tokens on average, and EditGrammar closes bars early rather than overflow.
FREE_TOKENS_PER_BAR = 48
GROOVE_HEAD = "groove"  # a model folder's Groove-task model, if it has one
MAX_LOADED = 4  # models kept in memory (each Groove head counts as one)


# All of drumgen's inference math runs on this one thread. PyTorch's CPU ops run on an OpenMP
# team owned by the calling thread, so a server that calls the model from each of its worker
# threads in turn builds a team per thread; once more OpenMP threads exist than cores, libgomp
# stops spinning between ops and sleeps instead, and a 4-bar groove took 260-290 ms in the app
# against 170 ms from a script. One thread, one team: the app gets the script's speed (and
# generation is serialised, which a 2-core machine wants anyway).
_INFERENCE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drumgen-inference")


def inference_threads() -> int:
    """Torch's intra-op threads for the inference thread: $DRUMGEN_THREADS, else 1 on a
    machine of up to 4 cores and half the cores (at most 8) above that. At this model size a
    decoding step is a few small matrix products, so extra threads mostly wait; on a 2-core
    server they also take cores from the web server and its clients (bench/app_load.py
    measures both settings side by side)."""
    raw = os.environ.get("DRUMGEN_THREADS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"DRUMGEN_THREADS must be a whole number; got {raw!r}") from None
        if value < 1:
            raise ValueError(f"DRUMGEN_THREADS must be at least 1; got {value}")
        return value
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else min(8, cores // 2)


_INFERENCE.submit(lambda: torch.set_num_threads(inference_threads())).result()


def decoder_weights() -> str:
    """The decoder's matrices: $DRUMGEN_WEIGHTS (see `sampling.WEIGHTS`), else "auto": fp16
    copies on a CPU whose torch has fbgemm's fp16 linear. "own" decodes with the model's own
    fp32 matrices, as drumgen did before fp16 (bench/generate.py and bench/app_load.py time
    both)."""
    return setting("DRUMGEN_WEIGHTS", WEIGHTS)


def decoder_engine() -> str:
    """The decoder that steps a groove: $DRUMGEN_ENGINE (see `sampling.DECODERS`), else
    "auto": the onnx engine on a CPU where onnxruntime is installed, else FastDecoder ("fast",
    with $DRUMGEN_WEIGHTS). bench/generate.py and bench/app_load.py time both."""
    return setting("DRUMGEN_ENGINE", DECODERS)


def on_inference_thread(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` on the inference thread (directly, if already on it)."""
    if threading.current_thread().name.startswith("drumgen-inference"):
        return fn(*args, **kwargs)
    return _INFERENCE.submit(fn, *args, **kwargs).result()


class Sampling(NamedTuple):
    temperature: float
    top_k: int
    top_p: float
    style_strength: float


@dataclass
class Groove:
    """One generated groove: the pattern after feel, plus what made it."""

    pattern: Pattern
    raw: Pattern  # as the model played it, before the feel
    tokens: list[int]
    style: str
    preset: str | None
    seed: int
    fills: list[bool]
    settings: dict = field(default_factory=dict)


class Generator:
    """A loaded model, ready to generate. Load with `Generator.load`, which caches per
    (folder, device): every caller shares one instance. `generate` is thread-safe: the model
    runs on the one inference thread, one request at a time."""

    #: loaded models, least recently used first; a server whose users train many models
    #: keeps at most MAX_LOADED of them in memory
    _cache: OrderedDict[tuple[str, str], Generator] = OrderedDict()
    _cache_lock = threading.Lock()
    _loading: dict[tuple[str, str], threading.Lock] = {}

    def __init__(self, bundle: model_mod.Bundle, device: torch.device):
        self.bundle, self.device = bundle, device
        self.tokenizer = bundle.tokenizer
        #: FastDecoder's matrices (`sampling.WEIGHTS`), from $DRUMGEN_WEIGHTS
        self.weights = decoder_weights()
        #: the stepping decoder (`sampling.DECODERS`), from $DRUMGEN_ENGINE
        self.engine = decoder_engine()
        #: whether beats play with the model's drum-share biases (`shares.py`), where it has
        #: them, unless a call says otherwise (`generate(shares=)`)
        self.shares = True

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None,
             device: str | None = None) -> Generator:
        folder = Path(folder or DEFAULT_MODEL).resolve()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        key = (str(folder), device)
        with cls._cache_lock:
            if key in cls._cache:
                cls._cache.move_to_end(key)
                return cls._cache[key]
            lock = cls._loading.setdefault(key, threading.Lock())
        with lock:  # one load per model; loading one never blocks requests for another
            with cls._cache_lock:
                if key in cls._cache:
                    return cls._cache[key]
            dtype = torch.float16 if device.startswith("cuda") else torch.float32
            loaded = cls(model_mod.load(folder, device, dtype), torch.device(device))
            loaded.warm()
            with cls._cache_lock:
                cls._cache[key] = loaded
                while len(cls._cache) > MAX_LOADED:
                    cls._cache.popitem(last=False)
                cls._loading.pop(key, None)
            return loaded

    def warm(self) -> None:
        """Build the onnx engine's session now (importing onnx took 1.4-2.3 s here, building
        the session under 0.1 s), where that engine decodes, rather than in the first request."""
        model = self.bundle.model
        if resolve_engine(self.engine, model.transformer.wte.weight) == "onnx":
            from . import onnx_decoder
            on_inference_thread(onnx_decoder.session, model)

    @classmethod
    def forget(cls, folder: str | os.PathLike) -> None:
        """Drop `folder`'s loaded models (a model replaced in place is loaded afresh)."""
        folder = Path(folder).resolve()
        with cls._cache_lock:
            for key in [k for k in cls._cache if Path(k[0]) in (folder, folder / GROOVE_HEAD)]:
                del cls._cache[key]

    @property
    def styles(self) -> list[str]:
        return self.bundle.styles

    def groove_head(self) -> Generator | None:
        """The model trained for the Groove task (`train --task groove`), kept in this model's
        folder as `groove/`; None when the folder has none."""
        folder = self.bundle.path and self.bundle.path / GROOVE_HEAD
        if folder is None or not (folder / "model.safetensors").is_file():
            return None
        return Generator.load(folder, str(self.device))

    def resolve_style(self, name: str) -> tuple[str, presets_mod.Preset | None]:
        """(conditioning style, preset or None) for a style or preset name."""
        if not isinstance(name, str) or not name.strip():
            raise RequestError("style must be a style or preset name; got an empty value")
        preset, style = presets_mod.find(name), presets_mod.style_of(name)
        if style not in self.styles:
            choices = ", ".join(self.styles + [p.name for p in presets_mod.PRESETS.values()])
            raise RequestError(f"style: unknown style or preset {name!r}; choose one of {choices}")
        return style, preset

    def generate(self, request: Request, shares: bool | None = None) -> list[Groove]:
        """`request.variations` grooves of exactly `request.bars` bars each. `shares`: whether
        beats play with the model's drum-share biases; None: `self.shares`."""
        request.validate()
        style, preset = self.resolve_style(request.style)
        seed = request.seed if request.seed is not None else random.randrange(2**31)
        sampling = self.sampling(request, style)
        density = _density_bucket(request.density if request.density != "auto" or not preset
                                  else preset.density)
        prime, prime_density = self._prime_tokens(request.prime)
        if density is None and prime:
            density = prime_density  # a primed groove keeps the prime's density unless asked
        fills = [False] * (request.bars - 1) + [request.fill]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        bodies = on_inference_thread(self.decode, style, request.variations, request.bars,
                                     tempo_bucket(request.tempo), fills, density, sampling,
                                     generator, prime=prime, shares=shares)
        feel = Feel(swing=50.0 if request.swing is None else request.swing,
                    humanize=request.humanize)
        if preset:
            feel = preset.feel.combine(feel)
        if request.swing is not None:  # a swing asked for wins, straight (50) included
            feel = replace(feel, swing=request.swing)
        grooves = []
        for i, tokens in enumerate(bodies):
            raw = self.tokenizer.decode(tokens, tempo=float(request.tempo))
            grooves.append(Groove(apply(raw, feel, seed + i), raw, tokens, style,
                                  preset.name if preset else None, seed, fills,
                                  {**sampling._asdict(), "feel": feel}))
        return grooves

    def sampling(self, request, style: str) -> Sampling:
        """The request's sampling settings, the model's saved defaults where it gives None
        (the style strength is `style`'s own, where the model has one)."""
        d = self.bundle.defaults
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return Sampling(pick(request.temperature, d.temperature), pick(request.top_k, d.top_k),
                        pick(request.top_p, d.top_p),
                        pick(request.style_strength, d.strength_for(style)))

    def regenerate(self, request) -> list[Groove]:
        """Keep some drums or bars of a groove and let the model write the rest; see
        `drumgen.edit.RegenerateRequest`."""
        from .edit import regenerate
        return regenerate(self, request)

    def groove(self, request) -> list[Groove]:
        """Every hit of a pattern kept, played with the model's velocity and timing; see
        `drumgen.edit.GrooveRequest`."""
        from .edit import groove
        return groove(self, request)

    def drumify(self, request) -> list[Groove]:
        """Drums whose kicks and snares follow any MIDI's (or a typed) rhythm; see
        `drumgen.edit.DrumifyRequest`."""
        from .edit import drumify
        return drumify(self, request)

    def _prime_tokens(self, prime) -> tuple[list[int] | None, int | None]:
        """The prime's last bars as body tokens, and its density bucket."""
        if prime is None:
            return None, None
        try:
            pattern = Pattern.from_midi(prime)
        except MidiError as exc:
            raise RequestError(f"prime: {exc}") from None
        if pattern.steps_per_bar != self.tokenizer.steps_per_bar:
            raise RequestError("prime: the model continues 4/4 grooves only; this file is in "
                               f"{pattern.time_signature[0]}/{pattern.time_signature[1]}")
        keep = pattern.slice(max(0, pattern.bars - CONTEXT_BARS), pattern.bars)
        return (self.tokenizer.encode_bars(keep, [False] * keep.bars),
                density_bucket(len(keep.hits) / keep.bars))

    def decode(self, style: str, n: int, bars: int, tempo: int, fills: list[bool],
               density: int | None, sampling: Sampling, generator: torch.Generator,
               prime: list[int] | None = None, specs: list[BarSpec | None] | None = None,
               observe=None, prefix: list[int] | None = None,
               shares: bool | None = None) -> list[list[int]]:
        """`n` whole token sequences of `bars` bars. Generates in passes of at most
        MAX_PASS_BARS bars, each pass seeing up to CONTEXT_BARS earlier bars (of the prime, or
        of the previous pass). `specs` constrains bars (edits; see `constraints.py`): a kept
        bar joins the context without decoding, and a pass stops at its last bar that is not
        kept. `observe(row, token, logits)` sees every sampled token (see `sample`).
        `prefix` goes after the DENS token of every pass, outside the grammar: a task's input
        (the Groove task's quantized pattern); it is not part of the returned sequences.
        `shares`: see `generate`."""
        tok = self.tokenizer
        bias = self.bundle.logit_bias(style) if (self.shares if shares is None else shares) \
            else None
        specs = specs or [None] * bars
        heads = [[tok.bos, tok.ids[f"TEMPO_{tempo}"]] for _ in range(n)]
        bodies: list[list[list[int]]] = [[] for _ in range(n)]  # per variation, per bar
        context = [_split_bars(tok, prime)[-CONTEXT_BARS:] if prime else [] for _ in range(n)]
        dens = [density] * n
        while len(bodies[0]) < bars:
            done = len(bodies[0])
            if specs[done] is not None and specs[done].exact and dens[0] is not None:
                bar = [tok.fill if fills[done] else tok.bar, *specs[done].known]
                for i in range(n):
                    bodies[i].append(bar)
                    context[i] = (context[i] + [bar])[-CONTEXT_BARS:]
                continue
            new = self._pass_bars(context, specs, done, bars, len(prefix or []))
            prompts, grammars = [], []
            for i in range(n):
                prompt = heads[i] + ([tok.ids[f"DENS_{dens[i]}"]] if dens[i] is not None else [])
                g_prompt = list(prompt)
                prompt += prefix or []
                ctx_fills = tok.fill_flags([t for bar in context[i] for t in bar])
                pass_fills = ctx_fills + fills[done:done + new]
                pass_specs = specs[done:done + new]
                if any(pass_specs):
                    g = EditGrammar(tok, len(context[i]) + new, pass_fills, tempo, dens[i],
                                    [None] * len(context[i]) + pass_specs)
                else:
                    g = Grammar(tok, len(context[i]) + new, pass_fills, tempo, dens[i])
                ctx = [t for bar in context[i] for t in bar]
                prompt += ctx
                for t in g_prompt + ctx:
                    g.advance(t)
                g.closed = len(context[i])
                prompts.append(prompt)
                grammars.append(g)
            room = self.bundle.model.config.n_positions - max(len(p) for p in prompts)
            if isinstance(grammars[0], EditGrammar) and room < grammars[0].need():
                raise RequestError(f"bars {done + 1}-{done + new} hold too many hits to edit "
                                   f"in one pass ({grammars[0].need()} tokens, room for {room})")
            outs = sample(self.bundle.model, prompts, self.bundle.style_index(style), grammars,
                          generator, sampling.temperature, sampling.top_k, sampling.top_p, room,
                          style_strength=sampling.style_strength, observe=observe,
                          engine=self.engine, weights=self.weights, bias=bias)
            for i, out in enumerate(outs):
                if dens[i] is None:  # the model chose the density on the first pass
                    dens[i], out = tok.value[out[0]], out[1:]
                new_bars = _split_bars(tok, [t for t in out if t != tok.eos])
                bodies[i] += new_bars
                context[i] = (context[i] + new_bars)[-CONTEXT_BARS:]
        return [[*heads[i], tok.ids[f"DENS_{dens[i]}"], *[t for bar in bodies[i] for t in bar],
                 tok.eos] for i in range(n)]

    def _pass_bars(self, context: list[list[list[int]]], specs: list[BarSpec | None],
                   done: int, bars: int, prefix: int = 0) -> int:
        """How many bars the next pass writes. Without constraints, as many as fit beside the
        context. With them, the pass ends at its last bar that is not kept, and shrinks until
        its slots and a free allowance per bar fit in the model's context; the oldest context
        bars give way if even one bar does not fit."""
        new = min(bars - done, MAX_PASS_BARS - len(context[0]))
        window = specs[done:done + new]
        if not any(window):
            return new
        new = 1 + max(k for k, spec in enumerate(window) if spec is None or not spec.exact)
        limit = self.bundle.model.config.n_positions - 4 - prefix  # BOS, TEMPO, DENS, EOS

        def need(k: int) -> int:
            ctx = max(sum(len(bar) for bar in c) for c in context)
            return ctx + sum(1 + FREE_TOKENS_PER_BAR + (s.cost() if s else 0)
                             for s in specs[done:done + k])
        while new > 1 and need(new) > limit:
            new -= 1
        while need(new) > limit and context[0]:
            for c in context:
                del c[0]
        return new


def _split_bars(tok, ids: list[int]) -> list[list[int]]:
    bars: list[list[int]] = []
    for t in ids:
        if tok.kind[t] in ("BAR", "FILL"):
            bars.append([])
        if bars:
            bars[-1].append(t)
    return bars


def _density_bucket(density: str | float) -> int | None:
    """None lets the model choose (auto); a name or hits-per-bar picks the bucket."""
    if isinstance(density, str):
        key = density.strip().lower()
        return None if key == "auto" else density_bucket(DENSITY_NAMES[key])
    return min(len(DENSITY_EDGES), density_bucket(float(density)))
