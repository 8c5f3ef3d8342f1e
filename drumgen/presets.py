"""Producer presets: named starting points that steer the GMD-trained model.

A preset is honest about what it is: a conditioning style the model learned from the Groove MIDI
Dataset, a tempo range, a feel applied after generation (swing, laid-back timing per drum, a
velocity shape) and a kit to render with. It is our reading of a producer's well-documented
habits, not a model of their playing: to learn a real producer's style, fine-tune on their MIDI
(`python -m drumgen train --init-from ... --data your_folder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .feel import Feel


@dataclass(frozen=True)
class Preset:
    name: str
    style: str  # the conditioning style, one of the model's styles
    tempo_range: tuple[int, int]
    feel: Feel
    kit: str  # the kit tried first (a short kit name, drumgen.kits), then its style's
    description: str
    density: str = "auto"
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tempo(self) -> int:
        return round(sum(self.tempo_range) / 2)


PRESETS: dict[str, Preset] = {p.name.lower(): p for p in (
    Preset("J Dilla", "hiphop", (82, 96),
           Feel(swing=58, laid_back_ms={"snare": 22, "closed_hat": 12, "kick": -6},
                velocity_shape="soft_hats", humanize=0.35),
           "black pearl",
           "Hip-hop with MPC swing, a dragging snare and pushed kicks: the 'drunk' feel."),
    Preset("Questlove", "soul", (84, 100),
           Feel(swing=54, laid_back_ms={"snare": 14}, velocity_shape="ghost_notes",
                humanize=0.2),
           "black pearl",
           "Deep-pocket neo-soul: a late, fat backbeat over quiet ghost notes."),
    Preset("Metro Boomin", "hiphop", (130, 150),
           Feel(swing=50, velocity_shape="hard", humanize=0.0),
           "808",
           "Trap at half-time tempo: quantised, hard-hitting 808 kit, busy hats.",
           density="busy"),
    Preset("DJ Premier", "hiphop", (86, 96),
           Feel(swing=56, laid_back_ms={"snare": 8}, velocity_shape="accent_backbeat",
                humanize=0.15),
           "black pearl",
           "Boom-bap: swung 16ths and a heavy, slightly late snare on 2 and 4."),
    Preset("Tony Allen", "afrobeat", (100, 120),
           Feel(swing=53, velocity_shape="ghost_notes", humanize=0.25),
           "black pearl",
           "Afrobeat: busy, interlocking hi-hat and snare patterns over a floating kick.",
           density="busy"),
)}


def find(name: str) -> Preset | None:
    return PRESETS.get(name.strip().lower())


def style_of(name: str) -> str:
    """The model style a style or preset name plays (a preset plays its GMD style)."""
    preset = find(name)
    return preset.style if preset else name.strip().lower()
