"""The drum grid as SVG: named drums as rows (kick at the bottom), 16th steps as columns, bar
lines, velocity as colour and size, and microtiming as each dot's distance from its grid line.

Written as text, not drawn with matplotlib: the PNG figure took 127 ms a request, more than
half of the time the app spent after generating, and this takes a few. SVG also stays sharp
at any width, and each hit carries a tooltip with its drum, position, velocity and offset.
"""

from __future__ import annotations

from html import escape

from .constants import DRUM_LABELS
from .pattern import Pattern

CELL, ROW = 12, 22  # px per 16th step and per drum row, before the SVG scales to its box
LEFT, TOP, BOTTOM, RIGHT = 74, 26, 22, 56  # margins: labels, title, bar numbers, colour key
# viridis at 5 stops (velocity 1 -> 127), as in the matplotlib figure this replaced
STOPS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def velocity_colour(velocity: int) -> str:
    x = min(max((velocity - 1) / 126, 0.0), 1.0) * (len(STOPS) - 1)
    i = min(int(x), len(STOPS) - 2)
    a, b, f = STOPS[i], STOPS[i + 1], x - i
    return "#" + "".join(f"{round(p + (q - p) * f):02x}" for p, q in zip(a, b, strict=True))


def svg(pattern: Pattern, title: str = "") -> str:
    """A standalone <svg> element of `pattern` that scales to the width of its container."""
    steps = pattern.steps_per_bar
    total = pattern.bars * steps
    rows = len(DRUM_LABELS)
    width, height = LEFT + total * CELL + RIGHT, TOP + rows * ROW + BOTTOM
    x0, y_end = LEFT, TOP + rows * ROW
    def y(drum: int) -> float:  # row centre, kick at the bottom
        return TOP + (rows - 1 - drum) * ROW + ROW / 2

    title = title or f"{pattern.bars} bars at {pattern.tempo:g} bpm"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="drumgen-grid" role="img" '
           f'viewBox="0 0 {width} {height}" width="100%" '
           f'style="max-width:{max(width, 640)}px;height:auto;font-family:sans-serif">',
           f"<title>Drum grid: {escape(title)}</title>",
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{width / 2}" y="17" font-size="12" text-anchor="middle" '
           f'fill="#222">{escape(title)}</text>']
    for d, label in enumerate(DRUM_LABELS):
        out.append(f'<line x1="{x0}" x2="{x0 + total * CELL}" y1="{y(d)}" y2="{y(d)}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y(d) + 4}" font-size="11" text-anchor="end" '
                   f'fill="#333">{label}</text>')
    for i in range(total + 1):  # bar lines bold, beats medium, 16ths faint
        stroke, w = ("#555", 1.6) if i % steps == 0 else ("#bbb", 0.8) if i % 4 == 0 \
            else ("#e2e2e2", 0.5)
        out.append(f'<line x1="{x0 + i * CELL}" x2="{x0 + i * CELL}" y1="{TOP}" y2="{y_end}" '
                   f'stroke="{stroke}" stroke-width="{w}"/>')
    for b in range(pattern.bars):
        out.append(f'<text x="{x0 + (b * steps + 0.2) * CELL}" y="{y_end + 15}" '
                   f'font-size="11" fill="#333">bar {b + 1}</text>')
    ms_per_step = pattern.step_seconds * 1000
    for h in sorted(pattern.hits, key=lambda h: h.velocity):  # loud dots on top
        cx = x0 + (h.bar * steps + h.step + 0.5 + h.offset) * CELL
        r = 2.2 + 4.3 * h.velocity / 127
        tip = (f"{DRUM_LABELS[h.drum]}, bar {h.bar + 1} step {h.step + 1}, velocity "
               f"{h.velocity}, {h.offset * ms_per_step:+.0f} ms")
        out.append(f'<circle class="hit" cx="{cx:.1f}" cy="{y(h.drum)}" r="{r:.1f}" '
                   f'fill="{velocity_colour(h.velocity)}" stroke="#000" stroke-width="0.5">'
                   f"<title>{tip}</title></circle>")
    key_x = x0 + total * CELL + 14  # the velocity colour key
    span = rows * ROW
    for i in range(32):
        vel = 127 - i * 126 / 31
        out.append(f'<rect x="{key_x}" y="{TOP + i * span / 32:.1f}" width="10" '
                   f'height="{span / 32 + 0.5:.1f}" fill="{velocity_colour(round(vel))}"/>')
    out.append(f'<text x="{key_x + 13}" y="{TOP + 9}" font-size="10" fill="#333">127</text>')
    out.append(f'<text x="{key_x + 13}" y="{y_end}" font-size="10" fill="#333">1</text>')
    out.append(f'<text x="{key_x + 5}" y="{y_end + 15}" font-size="10" text-anchor="middle" '
               'fill="#333">velocity</text>')
    out.append("</svg>")
    return "\n".join(out)
