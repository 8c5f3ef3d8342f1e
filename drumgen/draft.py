"""The draft: a groove as the page edits it, as JSON and as a compact share-link code.

JSON (what travels between the page and the server)::

    {"bars": 4, "tempo": 100, "hits": [{"bar": 0, "step": 0, "drum": "kick",
     "velocity": 110, "offset": 0.02}, ...]}

`bar` and `step` are 0-based, `drum` is a name from `constants.DRUMS`, `offset` the
microtiming in 16th steps. Everything from outside is checked here, with errors that name
the field: a draft is user input like any other.

The link code packs each hit into 4 bytes (bar, step and drum in 2, velocity, offset in MIDI
ticks), then base64url: a busy 4-bar groove of 100 hits is about 540 characters. Offsets are
kept to the tick (1/120 of a 16th at the 480 PPQ drumgen writes), so a draft from a link
writes the same .mid, byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

from .constants import DRUMS, MAX_EDIT_BARS, MAX_STEPS_PER_BAR, PPQ, STEPS_PER_QUARTER
from .pattern import Hit, Pattern

MAX_DRAFT_HITS = 4_000  # GMD's busiest 64 bars hold 2,196 hits (measured over train and validation)
STEPS = MAX_STEPS_PER_BAR  # drafts are 4/4: the model edits 4/4 only
CODE_VERSION = 1
TICKS = PPQ // STEPS_PER_QUARTER  # ticks per 16th step in the files drumgen writes


class DraftError(ValueError):
    """A draft the server cannot use; the message names the field."""


def to_json(pattern: Pattern) -> dict:
    return {"bars": pattern.bars, "tempo": pattern.tempo,
            "hits": [{"bar": h.bar, "step": h.step, "drum": DRUMS[h.drum],
                      "velocity": h.velocity, "offset": h.offset}
                     for h in pattern.hits]}


def from_json(obj) -> Pattern:
    """The pattern a draft describes; raises `DraftError` naming the first bad field."""
    if not isinstance(obj, dict):
        raise DraftError(f"draft must be an object with bars, tempo and hits; got "
                         f"{type(obj).__name__}")
    bars = _number(obj.get("bars"), "draft.bars", 1, MAX_EDIT_BARS, integer=True)
    tempo = _number(obj.get("tempo", 120), "draft.tempo", 40, 300)
    hits = obj.get("hits")
    if not isinstance(hits, list):
        raise DraftError("draft.hits must be a list of hits")
    if len(hits) > MAX_DRAFT_HITS:
        raise DraftError(f"draft.hits: {len(hits):,} hits is over the limit of "
                         f"{MAX_DRAFT_HITS:,}")
    out = []
    for i, h in enumerate(hits):
        name = f"draft.hits[{i}]"
        if not isinstance(h, dict):
            raise DraftError(f"{name} must be an object with bar, step, drum and velocity")
        drum = h.get("drum")
        if drum not in DRUMS:
            raise DraftError(f"{name}.drum: unknown drum {drum!r}; one of {', '.join(DRUMS)}")
        out.append(Hit(_number(h.get("bar"), f"{name}.bar", 0, bars - 1, integer=True),
                       _number(h.get("step"), f"{name}.step", 0, STEPS - 1, integer=True),
                       DRUMS.index(drum),
                       _number(h.get("velocity"), f"{name}.velocity", 1, 127, integer=True),
                       min(math.nextafter(0.5, 0.0),  # [-0.5, 0.5), as in `Hit`
                           _number(h.get("offset", 0.0), f"{name}.offset", -0.5, 0.5))))
    return Pattern(out, bars, tempo)


def _number(value, name: str, lo: float, hi: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise DraftError(f"{name} must be a number from {lo:g} to {hi:g}; got {value!r}")
    if integer and value != int(value):
        raise DraftError(f"{name} must be a whole number from {lo:g} to {hi:g}; got {value!r}")
    if not lo <= value <= hi:
        raise DraftError(f"{name} must be from {lo:g} to {hi:g}; got {value!r}")
    return int(value) if integer else float(value)


def pack(pattern: Pattern) -> str:
    """The share-link code of `pattern` (offsets to the tick, tempo to 0.01 bpm)."""
    head = struct.pack(">BBH", CODE_VERSION, pattern.bars, round(pattern.tempo * 100))
    body = b"".join(struct.pack(">HBb", (h.bar * STEPS + h.step) * len(DRUMS) + h.drum,
                                h.velocity, max(-TICKS // 2, min(TICKS // 2,
                                                                  round(h.offset * TICKS))))
                    for h in pattern.hits)
    return base64.urlsafe_b64encode(head + body).decode().rstrip("=")


def unpack(code: str) -> Pattern:
    """The pattern a share-link code holds; raises `DraftError` on a damaged code."""
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (binascii.Error, ValueError, TypeError):
        raise DraftError("draft: the link's draft code is damaged (not base64url)") from None
    if len(raw) < 4 or (len(raw) - 4) % 4 or raw[0] != CODE_VERSION:
        raise DraftError("draft: the link's draft code is damaged or from another version")
    _, bars, tempo = struct.unpack(">BBH", raw[:4])
    hits = []
    for i in range(4, len(raw), 4):
        cell, velocity, offset = struct.unpack(">HBb", raw[i:i + 4])
        rest, drum = divmod(cell, len(DRUMS))
        bar, step = divmod(rest, STEPS)
        hits.append({"bar": bar, "step": step, "drum": DRUMS[drum], "velocity": velocity,
                     "offset": offset / TICKS})
    return from_json({"bars": bars, "tempo": tempo / 100, "hits": hits})
