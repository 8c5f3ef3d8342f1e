"""Every request parameter's range, declared once, and the reader of drumgen's settings.

`Request.validate` and the edit requests check values with `check`; the app builds its
sliders from `PARAMS`; the CLI's `--help`, the About tab and the README's parameter table are
written from `markdown_table` (a test holds the README to it). `setting` reads a `DRUMGEN_*`
environment variable that names one of a few choices.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .constants import DENSITY_NAMES, MAX_BARS, MAX_EDIT_BARS, MIDI_LAYOUTS


class RequestError(ValueError):
    """A request parameter out of range or of the wrong kind; names the parameter."""


@dataclass(frozen=True)
class Param:
    name: str  # as the user types it: the keyword of every endpoint and request
    lo: float
    hi: float
    integer: bool = False
    step: float = 1
    help: str = ""

    def _fmt(self, v: float) -> str:
        return f"{int(v)}" if self.integer else f"{v:g}"

    @property
    def range(self) -> str:
        lo, hi = self._fmt(self.lo), self._fmt(self.hi)
        return f"{lo} to {hi}" if "e-" in lo + hi else f"{lo}-{hi}"

    def check(self, value) -> None:
        """Raise `RequestError` naming the parameter unless `value` is in range."""
        lo, hi = self._fmt(self.lo), self._fmt(self.hi)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"{self.name} must be a number from {lo} to {hi}; got {value!r}")
        if self.integer and value != int(value):
            raise RequestError(f"{self.name} must be a whole number from {lo} to {hi}; "
                               f"got {value!r}")
        if not (self.lo <= value <= self.hi) or (isinstance(value, float) and math.isnan(value)):
            raise RequestError(f"{self.name} must be from {lo} to {hi}; got {value!r}")


#: The ranges, by key. Keys are the parameter names, except `edit_bars` (the `bars` of a
#: typed rhythm, and the longest input an edit takes).
PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("bars", 1, MAX_BARS, True, help="bars to write (in passes of up to 8 bars)"),
    Param("tempo", 40, 300, help="beats per minute"),
    Param("variations", 1, 8, True, help="takes from one request, decoded as one batch"),
    Param("temperature", 0.05, 2, step=0.05, help="sampling temperature"),
    Param("top_k", 0, 200, True, help="keep the k likeliest tokens at each step; 0 = off"),
    Param("top_p", 0.05, 1, step=0.01, help="keep the likeliest tokens up to this mass"),
    Param("style_strength", 0, 3, step=0.05,
          help="1 = the style as trained, 0 = no particular style, above 1 exaggerated"),
    Param("seed", 0, 2**31 - 1, True, help="the same seed and settings give the same groove"),
    Param("swing", 50, 75, help="percent: 50 straight, 66.7 triplet; empty = the preset's"),
    Param("humanize", 0, 1, step=0.05, help="random timing and velocity jitter"),
    Param("density", 1, 64, help="hits per bar, or " + ", ".join(("auto", *DENSITY_NAMES))),
    Param("strength", 0, 1, step=0.05, help="Groove: 0 = your pattern, 1 = the model's playing"),
    Param("track", 1, 10_000, True, help="Drumify: the MIDI track to follow (1-based)"),
    Param("epochs", 0, 100, help="Train: epochs, 0 = no limit (give epochs or time_budget)"),
    Param("time_budget", 0, 24 * 60, help="Train: minutes, 0 = no limit"),
    Param("lr", 1e-6, 1e-2, help="Train: peak learning rate; empty or 0 = the mode's default"),
    Param("batch_size", 1, 256, True, help="Train: examples a step; empty or 0 = the default"),
)} | {"edit_bars": Param("bars", 1, MAX_EDIT_BARS, True, help="edits: the longest input "
                         "groove, and the length of a typed rhythm")}

#: Parameters that take one of a list of words.
CHOICES: dict[str, tuple[str, ...]] = {
    "density": ("auto", *DENSITY_NAMES),
    "midi_layout": MIDI_LAYOUTS,
}


def setting(name: str, choices: tuple[str, ...]) -> str:
    """$`name`, one of `choices` (case and spaces aside), else the first choice when unset or
    empty; any other value is refused by name."""
    raw = os.environ.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return raw


def check(key: str, value) -> None:
    PARAMS[key].check(value)


def markdown_table() -> str:
    """The parameter table of the README and the About tab."""
    rows = ["| parameter | range | meaning |", "|---|---|---|"]
    for p in PARAMS.values():
        rows.append(f"| `{p.name}` | {p.range} | {p.help} |")
    for name, words in CHOICES.items():
        rows.append(f"| `{name}` | {' / '.join(words)} | one of these words |")
    return "\n".join(rows)
