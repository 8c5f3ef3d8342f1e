"""The drum grid: named drums as rows, 16th steps as columns, bar lines, velocity as colour
and size, and microtiming as each dot's distance from its grid line."""

from __future__ import annotations

import io

from matplotlib.figure import Figure  # no pyplot: it keeps global state, unsafe in a server

from .constants import DRUM_LABELS
from .pattern import Pattern


def figure(pattern: Pattern, title: str = "") -> Figure:
    """A matplotlib Figure of `pattern` (built without pyplot)."""
    steps = pattern.steps_per_bar
    total = pattern.bars * steps
    # about 8 x 3.2 inches for 4 bars: wider figures shrink to illegible type in the app's column
    width = min(11.0, max(6.0, 1.6 + total * 0.1))
    fig = Figure(figsize=(width, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    # grid lines: bars bold, beats medium, 16ths faint; one collection each, because one
    # artist per line made drawing the figure the slowest part of a request
    lines = range(total + 1)
    top, bottom = len(DRUM_LABELS) - 0.3, -0.7
    for keep, color, weight in ((lambda i: i % steps == 0, "#555", 1.6),
                                (lambda i: i % steps and i % 4 == 0, "#bbb", 0.7),
                                (lambda i: i % 4, "#bbb", 0.25)):
        ax.vlines([i - 0.5 for i in lines if keep(i)], bottom, top, colors=color, lw=weight,
                  zorder=0)
    ax.hlines(range(len(DRUM_LABELS)), -0.6, total - 0.4, colors="#eee", lw=0.5, zorder=0)
    if pattern.hits:
        x = [h.bar * steps + h.step + h.offset for h in pattern.hits]
        y = [h.drum for h in pattern.hits]
        v = [h.velocity for h in pattern.hits]
        dots = ax.scatter(x, y, c=v, s=[18 + 0.9 * vel for vel in v], cmap="viridis",
                          vmin=1, vmax=127, edgecolors="black", linewidths=0.4, zorder=3)
        fig.colorbar(dots, ax=ax, label="velocity", pad=0.01, fraction=0.03)
    ax.set_yticks(range(len(DRUM_LABELS)), DRUM_LABELS, fontsize=8)
    ax.set_xticks([b * steps for b in range(pattern.bars)],
                  [f"bar {b + 1}" for b in range(pattern.bars)], fontsize=8)
    ax.set_xlim(-0.6, total - 0.4)
    ax.set_ylim(bottom, top)
    ax.set_title(title or f"{pattern.bars} bars at {pattern.tempo:g} bpm", fontsize=9)
    return fig


def png(pattern: Pattern, title: str = "") -> bytes:
    buf = io.BytesIO()
    figure(pattern, title).savefig(buf, format="png")
    return buf.getvalue()
