"""`drumgen evaluate`: the overlap estimate, and the whole report on real data and the shipped
model (a small real-data folder keeps it to seconds)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from drumgen import cli
from drumgen.evaluate import FEATURES, overlap


def test_overlap_of_two_gaussians_matches_the_closed_form():
    """N(0, 1) against N(d, 1) overlap by 2 * Phi(-d / 2); a sample against itself by 1."""
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 4000)
    for d in (0.5, 1.0, 2.0):
        expected = math.erfc(d / 2 / math.sqrt(2))  # = 2 * Phi(-d / 2)
        assert overlap(a, rng.normal(d, 1, 4000)) == pytest.approx(expected, abs=0.03)
    assert overlap(a, a) == pytest.approx(1, abs=1e-6)
    assert overlap(a, rng.normal(12, 1, 4000)) < 0.01
    assert math.isnan(overlap([1.0], a))  # too few values for a density


def test_evaluate_cli_prints_the_report(shipped, small_gmd, capsys):
    code = cli.main(["evaluate", "--model", str(shipped), "--data", str(small_gmd),
                     "--per-style", "8", "--style-strength", "0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    head = re.search(r"Validation NLL ([\d.]+) nats/token, perplexity ([\d.]+) .*grammar-valid "
                     r"([\d.]+)% of (\d+) generated 4-bar grooves \((.*)\)", out)
    assert head, out
    nll, ppl = float(head[1]), float(head[2])
    assert 0.5 < nll < 6 and ppl == pytest.approx(math.exp(nll), rel=1e-3)
    assert float(head[3]) == 100.0
    assert "style strength 0.5" in head[5]
    rows = re.findall(r"^\| (\w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) / ([\d.]+) ",
                      out, re.M)
    # small_gmd's validation beats give 4-bar grooves in funk, rock and jazz (hiphop: too few)
    assert {r[0] for r in rows} == {"funk", "rock", "jazz"}
    assert int(head[4]) == 8 * len(rows)
    for _, grooves, acc_real, acc_gen, oa_gen, oa_real in rows:
        assert int(grooves) >= 4
        assert all(0 <= float(v) <= 1 for v in (acc_real, acc_gen, oa_gen, oa_real))
        assert float(oa_real) > 0.3  # real bars of one style overlap themselves well
    features = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [f[0] for f in features] == list(FEATURES)
