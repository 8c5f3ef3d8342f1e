"""How faithfully the tokenizer keeps a pattern: hits kept, timing and velocity error."""

from __future__ import annotations

from collections import defaultdict

from .pattern import Pattern
from .tokenizer import Tokenizer


def roundtrip(pattern: Pattern, tok: Tokenizer) -> tuple[Pattern, dict]:
    """Encode and decode `pattern`; returns the decoded pattern and the figures."""
    ids = tok.encode(pattern) + [tok.eos]
    decoded = tok.decode(ids, tempo=pattern.tempo)
    figures = compare(pattern, decoded)
    figures["tokens"] = len(ids)
    return decoded, figures


def compare(original: Pattern, decoded: Pattern) -> dict:
    """Match hits by (bar, step, drum), in time order, and measure the differences."""
    slots: dict[tuple, list] = defaultdict(list)
    for h in decoded.hits:
        slots[(h.bar, h.step, h.drum)].append(h)
    timing_ms, velocity = [], []
    for h in original.hits:
        bucket = slots.get((h.bar, h.step, h.drum))
        if not bucket:
            continue
        match = min(bucket, key=lambda d: abs(d.offset - h.offset))
        bucket.remove(match)
        timing_ms.append(abs(match.offset - h.offset) * original.step_seconds * 1000)
        velocity.append(abs(match.velocity - h.velocity))
    timing_ms.sort()
    p99 = timing_ms[min(len(timing_ms) - 1, int(len(timing_ms) * 0.99))] if timing_ms else 0.0
    return {"hits_in": len(original.hits), "hits_out": len(decoded.hits),
            "kept": len(timing_ms) / max(1, len(original.hits)), "timing_p99_ms": p99,
            "timing_ms": timing_ms, "velocity_mae": sum(velocity) / max(1, len(velocity))}
