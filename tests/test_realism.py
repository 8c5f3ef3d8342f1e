"""Realism measures (`drumgen.realism`) on patterns built here, where the answer is known, and
the targets `evaluate --check` applies to them."""

from __future__ import annotations

import numpy as np
import pytest

from drumgen import realism
from drumgen.constants import DRUMS
from drumgen.evaluate import C2ST_MARGIN, DIVERSITY_RANGE, realism_misses
from drumgen.pattern import Hit, Pattern

KICK, SNARE, HAT = (DRUMS.index(d) for d in ("kick", "snare", "closed_hat"))


def window(seed: int, busy: float = 0.3, velocity: int = 90, bars: int = 2) -> Pattern:
    """A random 2-bar groove: kick on 1, snare on 2 and 4, and each other 16th of the hats
    and kick on with probability `busy`."""
    rng = np.random.default_rng(seed)
    hits = []
    for bar in range(bars):
        hits += [Hit(bar, 0, KICK, velocity), Hit(bar, 4, SNARE, velocity),
                 Hit(bar, 12, SNARE, velocity)]
        hits += [Hit(bar, s, d, int(np.clip(rng.normal(velocity, 10), 1, 127)))
                 for s in range(16) for d in (HAT, KICK) if s and rng.random() < busy]
    return Pattern(hits, bars, 100.0)


def test_c2st_is_chance_for_one_distribution_and_near_one_for_two():
    same_a = realism.feature_matrix([window(i) for i in range(120)])
    same_b = realism.feature_matrix([window(1000 + i) for i in range(120)])
    assert realism.c2st(same_a, same_b) == pytest.approx(0.5, abs=0.08)
    busy = realism.feature_matrix([window(2000 + i, busy=0.7, velocity=50) for i in range(120)])
    assert realism.c2st(same_a, busy) > 0.95
    # balanced: the larger side is subsampled to the smaller one's size
    assert realism.c2st(same_a[:30], busy) > 0.9
    assert np.isnan(realism.c2st(same_a[:3], busy))  # fewer rows than folds


def test_feature_kinds_are_blocks_of_the_window_vector():
    f = realism.window_features(window(0))
    assert tuple(f) == realism.KINDS
    assert len(f["drum_counts"]) == len(DRUMS) and len(f["onset_grid"]) == len(DRUMS) * 16
    assert realism.feature_matrix([window(0)]).shape[1] == sum(len(v) for v in f.values())
    two = Pattern([Hit(0, 0, KICK, 100, 0.1), Hit(1, 1, KICK, 60, -0.1)], 2, 120.0)
    f = realism.window_features(two)
    assert f["drum_counts"][KICK] == 1 and f["hits"][0] == 1  # per bar
    assert f["velocity_mean"][0] == 80 and f["velocity_sd"][0] == 20
    assert f["syncopation"][0] == 0.5
    step_ms = 60_000 / 120 / 4
    assert f["timing"] == pytest.approx([0.0, 0.1 * step_ms])


def test_mean_distance_counts_differing_onsets():
    a = Pattern([Hit(0, 0, KICK, 100)], 2, 100.0)
    b = Pattern([Hit(0, 0, KICK, 100), Hit(1, 4, SNARE, 100)], 2, 100.0)
    c = Pattern([Hit(1, 8, HAT, 100), Hit(1, 9, HAT, 30)], 2, 100.0)
    # distances: a-b 1, a-c 3, b-c 4; velocity and timing do not count
    assert realism.mean_distance([a, b, c]) == pytest.approx((1 + 3 + 4) / 3)
    assert realism.mean_distance([a, a]) == 0
    assert np.isnan(realism.mean_distance([a]))


def test_copy_rate_needs_the_same_onsets_in_the_same_bars():
    train = [window(i) for i in range(5)]
    seen = {realism.onsets(w).tobytes() for w in train}
    louder = [Pattern([Hit(h.bar, h.step, h.drum, 127, 0.2) for h in w.hits], 2, 80.0)
              for w in train[:2]]
    assert realism.copy_rate(louder, seen) == 1.0  # onsets only: velocity and timing aside
    assert realism.copy_rate(louder + [window(99)], seen) == pytest.approx(2 / 3)
    one = Pattern([Hit(0, 0, KICK, 100), Hit(1, 4, SNARE, 100)], 2, 100.0)
    swapped = Pattern([Hit(1, 0, KICK, 100), Hit(0, 4, SNARE, 100)], 2, 100.0)
    assert realism.copy_rate([swapped], {realism.onsets(one).tobytes()}) == 0.0
    assert realism.copy_rate([one], {realism.onsets(one).tobytes()}) == 1.0
    assert realism.copy_rate([window(50 + i) for i in range(10)], seen) == 0.0


def test_two_bar_windows_leave_out_silent_bars_and_trailing_bars():
    hits = [Hit(b, 0, KICK, 100) for b in (0, 1, 2, 4, 5, 6)]  # bar 3 silent, bar 6 trailing
    windows = realism.two_bar_windows([Pattern(hits, 7, 100.0)])
    assert [sorted({h.bar for h in w.hits}) for w in windows] == [[0, 1], [0, 1]]
    assert all(w.bars == 2 for w in windows)
    assert len(windows) == 2  # bars 0-1 and 4-5; 2-3 has a silent bar


def _report(c2st_gen, c2st_train=0.8, ratios=(1.0, 1.0), copies=(0.0, 0.01)):
    rows = []
    for style, ratio in zip(("rock", "funk"), ratios, strict=True):
        rows.append({"style": style, "realism": {
            "c2st_gen": c2st_gen, "c2st_train": c2st_train, "distance_gen": 10 * ratio,
            "distance_train": 10.0, "copy_gen": copies[0], "copy_val": copies[1],
            "windows": {"generated": 100, "train": 500, "validation": 50}}})
    return {"rows": rows}


def test_realism_misses_name_each_target_missed_and_only_those():
    lo, hi = DIVERSITY_RANGE
    assert realism_misses(_report(0.8 + C2ST_MARGIN / 2)) == []
    assert realism_misses(_report(0.8, ratios=(lo, hi))) == []  # the range's ends are in it
    assert realism_misses(_report(0.8 + 2 * C2ST_MARGIN)) == [
        f"C2ST: generated vs validation 0.840, over training vs validation 0.800 + {C2ST_MARGIN}"]
    assert realism_misses(_report(0.8, ratios=(0.85, 1.2))) == [
        f"rock: diversity ratio 0.85, outside {lo}-{hi}",
        f"funk: diversity ratio 1.20, outside {lo}-{hi}"]
    assert realism_misses(_report(0.8, copies=(0.02, 0.01))) == [
        "copies: 2.0% of generated windows repeat a training window's onsets, over 1.0% of real "
        "validation ones"]
    assert realism_misses({"rows": [{"style": "rock"}]}) == []  # no style had enough windows
