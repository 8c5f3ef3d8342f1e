"""What a caller asks for: the generate and edit requests, and their checks.

Plain data with no torch behind it, so that the app can build its page and check requests
before the model stack is imported (`drumgen.generate` and `drumgen.edit` re-export these)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import schema
from .constants import DENSITY_NAMES
from .pattern import Pattern
from .schema import RequestError

#: what an edit reads: a Pattern, MIDI bytes, or a path to a MIDI file
Source = Pattern | bytes | str | os.PathLike


@dataclass
class Request:
    """One generation request. `None` sampling values take the model's saved defaults."""

    style: str = "funk"
    bars: int = 4
    tempo: float = 100.0
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    style_strength: float | None = None  # 1 = as trained, 0 = no style, >1 = exaggerated
    seed: int | None = None
    variations: int = 1
    fill: bool = False
    density: str | float = "auto"  # auto, sparse, normal, busy, or hits per bar
    swing: float | None = None  # percent, 50 straight .. 75; None: the preset's, else 50
    humanize: float = 0.0  # 0..1
    prime: bytes | str | os.PathLike | None = None  # a MIDI whose bars the groove continues

    def validate(self) -> None:
        """Raise `RequestError` naming the first bad parameter and its allowed range."""
        schema.check("bars", self.bars)
        schema.check("tempo", self.tempo)
        check_sampling(self)
        if self.swing is not None:
            schema.check("swing", self.swing)
        schema.check("humanize", self.humanize)
        if not isinstance(self.fill, bool):
            raise RequestError(f"fill must be true or false; got {self.fill!r}")
        if not isinstance(self.style, str) or not self.style.strip():
            raise RequestError("style must be a style or preset name; got an empty value")
        check_density(self.density)


def check_density(density: str | float) -> None:
    if isinstance(density, str):
        if density.strip().lower() not in ("auto", *DENSITY_NAMES):
            raise RequestError("density must be auto, sparse, normal, busy or a number of "
                               f"hits per bar from 1 to 64; got {density!r}")
    else:
        schema.check("density", density)


def check_sampling(request) -> None:
    """The checks every request that samples shares (generate and the edits): variations,
    temperature, top_k, top_p, style_strength and seed (None: the model's default)."""
    schema.check("variations", request.variations)
    for name in ("temperature", "top_k", "top_p", "style_strength", "seed"):
        if (value := getattr(request, name)) is not None:
            schema.check(name, value)


@dataclass
class EditRequest:
    """What every edit takes besides its input. `None` sampling values take the model's saved
    defaults; `tempo` None keeps the input's first tempo."""

    style: str = "funk"
    seed: int | None = None
    tempo: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    style_strength: float | None = None
    variations: int = 1

    def validate(self) -> None:
        if self.tempo is not None:
            schema.check("tempo", self.tempo)
        check_sampling(self)


@dataclass
class RegenerateRequest(EditRequest):
    """Keep `keep_drums` (names or groups: "kick,snare", "hats") and write every other lane,
    or keep every bar but `bars` (1-based: "3,4" or [3, 4]) and write those, as fills when
    `fill`. Give one of the two."""

    midi: Source | None = None
    keep_drums: str | list[str] | None = None
    bars: str | list[int] | None = None
    fill: bool = False


@dataclass
class GrooveRequest(EditRequest):
    """Keep every (drum, 16th step) of `midi` and let the model play its velocity and
    microtiming. `strength` 0..1 blends from the input (0) to the model's playing (1);
    `keep_velocity` changes the timing only."""

    midi: Source | None = None
    strength: float = 1.0
    keep_velocity: bool = False


@dataclass
class DrumifyRequest(EditRequest):
    """Drums that lock to a rhythm: the note onsets of `midi` (every track, or `track`,
    1-based), or a typed `rhythm` of 16 characters a bar (x onset, . rest). Every onset gets a
    kick or a snare, kicks and snares fall only on onsets, and the other drums play as the
    style plays them. `bars` repeats a shorter rhythm to that length."""

    midi: Source | None = None
    rhythm: str | None = None
    track: int | None = None
    bars: int | None = None
    density: str | float = "auto"
