"""Feel: swing, laid-back timing, velocity shape and humanize, applied to a generated pattern.

The model already plays with GMD drummers' microtiming; a feel moves that timing further on
purpose. Offsets stay inside a 16th step's [-0.5, 0.5) window, so a hit never changes grid slot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from .constants import DRUMS
from .pattern import Hit, Pattern

MAX_OFFSET = 0.49

#: Velocity shapes: (drum or "*", step rule) -> gain. Steps are 16ths in a 4/4 bar.
VELOCITY_SHAPES: dict[str, list[tuple[str, str, float]]] = {
    "natural": [],
    "soft_hats": [("closed_hat", "*", 0.75), ("open_hat", "*", 0.8)],
    "ghost_notes": [("snare", "offbeat", 0.55), ("snare", "backbeat", 1.1)],
    "hard": [("*", "*", 1.25)],
    "accent_backbeat": [("snare", "backbeat", 1.2), ("closed_hat", "offbeat", 0.8)],
}


@dataclass(frozen=True)
class Feel:
    """swing: 50 (straight) to 75 (hard shuffle), MPC-style percent on 16th pairs.
    humanize: 0 to 1; at 1, timing jitter of sd 12 ms and velocity jitter of sd 12.
    laid_back_ms: per drum name, milliseconds late (negative: early)."""

    swing: float = 50.0
    humanize: float = 0.0
    laid_back_ms: dict[str, float] = field(default_factory=dict)
    velocity_shape: str = "natural"

    def __post_init__(self) -> None:
        if not 50 <= self.swing <= 75:
            raise ValueError(f"swing must be between 50 and 75 (percent); got {self.swing}")
        if not 0 <= self.humanize <= 1:
            raise ValueError(f"humanize must be between 0 and 1; got {self.humanize}")
        if self.velocity_shape not in VELOCITY_SHAPES:
            raise ValueError(f"velocity_shape must be one of {', '.join(VELOCITY_SHAPES)}")
        unknown = set(self.laid_back_ms) - set(DRUMS)
        if unknown:
            raise ValueError(f"laid_back_ms: unknown drums {sorted(unknown)}")

    def combine(self, other: Feel) -> Feel:
        """This feel with `other`'s non-neutral settings on top (user over preset)."""
        return replace(
            self,
            swing=other.swing if other.swing != 50 else self.swing,
            humanize=other.humanize if other.humanize else self.humanize,
            laid_back_ms={**self.laid_back_ms, **other.laid_back_ms},
            velocity_shape=(other.velocity_shape if other.velocity_shape != "natural"
                            else self.velocity_shape))


def _step_matches(rule: str, step: int) -> bool:
    return (rule == "*" or (rule == "backbeat" and step in (4, 12))
            or (rule == "offbeat" and step % 4 != 0))


def apply(pattern: Pattern, feel: Feel, seed: int = 0) -> Pattern:
    """A new pattern with `feel` applied; deterministic for a given seed."""
    rng = random.Random(seed)
    step_ms = pattern.step_seconds * 1000
    swing_shift = (feel.swing / 100 * 2 - 1)  # in steps, on the second 16th of each pair
    shape = VELOCITY_SHAPES[feel.velocity_shape]
    hits = []
    for h in pattern.hits:
        name = DRUMS[h.drum]
        offset = h.offset + feel.laid_back_ms.get(name, 0.0) / step_ms
        if h.step % 2 == 1:
            offset += swing_shift
        velocity = float(h.velocity)
        for drum, rule, gain in shape:
            if drum in ("*", name) and _step_matches(rule, h.step):
                velocity *= gain
        if feel.humanize:
            offset += rng.gauss(0, 12 * feel.humanize) / step_ms
            velocity += rng.gauss(0, 12 * feel.humanize)
        offset = min(MAX_OFFSET, max(-MAX_OFFSET, offset))
        hits.append(Hit(h.bar, h.step, h.drum, int(min(127, max(1, round(velocity)))), offset))
    return Pattern(hits, pattern.bars, pattern.tempo, pattern.time_signature)
