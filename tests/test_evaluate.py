"""`drumgen evaluate`: the overlap estimate, and the whole report on real data and the shipped
model (a small real-data folder keeps it to seconds)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from drumgen import cli
from drumgen.evaluate import FEATURES, MIN_C2ST_WINDOWS, OA_TARGET, overlap, target_misses
from drumgen.realism import KINDS


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


def _row(style, acc_real, acc_gen, oa_gen, oa_real=0.625):
    # overlaps in eighths and 32nds, so that the ratios below are exact in binary
    return {"style": style, "real_val_grooves": 20, "generated": 16, "acc_real": acc_real,
            "acc_gen": acc_gen, "confused_with": {},
            "oa_gen": dict.fromkeys(FEATURES, oa_gen), "oa_real": dict.fromkeys(FEATURES, oa_real)}


def test_target_misses_names_each_target_missed_and_only_those():
    report = {"validity": 1.0,
              "rows": [_row("rock", 0.5, 0.5, 0.625 * OA_TARGET), _row("funk", 0.85, 0.9, 0.625)]}
    assert target_misses(report) == []  # equal accuracy and a ratio of exactly 0.9 both meet
    report["rows"][1] = _row("funk", 0.85, 0.8125, 0.625)
    funk_miss = ("funk: classifier accuracy 0.812 on generated grooves (13 of 16), under 0.850 "
                 "on real ones (17 of 20)")
    assert target_misses(report) == [funk_miss]
    report["rows"][0] = _row("rock", 0.5, 0.5, 0.53125)
    report["validity"] = 0.995
    assert target_misses(report) == [
        "rock: overlap ratio 0.850, under 0.9",  # 0.53125 / 0.625
        funk_miss,
        "grammar-valid 99.5% of generated grooves, not 100%"]
    # one feature low in every style: each style's mean ratio stays over 0.9, the feature's not
    report = {"validity": 1.0,
              "rows": [_row("rock", 0.5, 0.5, 0.625), _row("jazz", 0.7, 0.7, 0.625)]}
    for r in report["rows"]:
        r["oa_gen"]["offset_sd"] = 0.46875
    assert target_misses(report) == ["offset_sd: overlap ratio 0.750, under 0.9"]


@pytest.mark.slow  # three evaluations of a few grooves
def test_calibrate_then_evaluate_cli_prints_the_report(shipped, small_gmd, capsys, tmp_path):
    """`calibrate --save` writes each style's chosen strength into the model folder, and
    `evaluate` at the folder's defaults then plays each style at its own and reports it."""
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    before = json.loads((folder / "generation.json").read_text())
    assert cli.main(["calibrate", "--model", str(folder), "--strengths", "0.5,9"]) == 2
    assert "style_strength" in capsys.readouterr().err  # refused before any work
    assert cli.main(["calibrate", "--model", str(folder), "--data", str(small_gmd),
                     "--strengths", "0.5,2", "--per-style", "8", "--save", "--json",
                     str(tmp_path / "calibration.json")]) in (0, None)
    out = capsys.readouterr().out
    saved = json.loads((folder / "generation.json").read_text())
    written = json.loads((tmp_path / "calibration.json").read_text())
    # the measured styles take their choice; the shipped model's others keep theirs
    assert saved["style_strengths"] == {**before["style_strengths"], **written["chosen"]}
    assert set(written["chosen"]) == {"funk", "rock", "jazz"} < set(before["style_strengths"])
    assert set(written["reports"]) == {"0.5", "2"}
    assert all(r["sampling"]["style_strength"] == float(s) for s, r in written["reports"].items())
    table = re.findall(r"^\| (\w+) \(([\d.]+)\) \| (.*) \| ([\d.]+) \((.*)\) \|$", out, re.M)
    assert {t[0] for t in table} == {"funk", "rock", "jazz"}  # small_gmd's styles with grooves
    for style, _, cells, chosen, _ in table:
        # a candidate, or the style's own default where neither kept the diversity in range
        own = before["style_strengths"].get(style, before["style_strength"])
        assert saved["style_strengths"][style] == float(chosen) in (0.5, 2.0, own)
        assert cells.count("**") == (2 if float(chosen) in (0.5, 2.0) else 0)  # chosen: bold
    assert {k: v for k, v in saved.items() if k != "style_strengths"} == {
        k: v for k, v in before.items() if k != "style_strengths"}
    # the candidates share what does not depend on the strength (NLL, classifier, the real
    # windows' realism figures): a candidate's report is what `evaluate` alone measures
    from drumgen.evaluate import CALIBRATION_SEED, evaluate, report_json
    alone = json.loads(report_json(evaluate(folder, small_gmd, per_style=8,
                                            seed=CALIBRATION_SEED, style_strength=2.0)))
    assert alone["rows"] == written["reports"]["2"]["rows"]
    assert alone["val_nll"] == written["reports"]["2"]["val_nll"]

    out_json = tmp_path / "eval" / "report.json"
    code = cli.main(["evaluate", "--model", str(folder), "--data", str(small_gmd),
                     "--per-style", "8", "--json", str(out_json), "--check"])
    out = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    misses = report["target_misses"]
    assert code == (1 if misses else 0), out  # --check: exit 1 exactly when a target is missed
    head = re.search(r"Validation NLL ([\d.]+) nats/token, perplexity ([\d.]+) .*grammar-valid "
                     r"([\d.]+)% of (\d+) generated 4-bar grooves \((.*)\)", out)
    assert head, out
    nll, ppl = float(head[1]), float(head[2])
    assert 0.5 < nll < 6 and ppl == pytest.approx(math.exp(nll), rel=1e-3)
    assert float(head[3]) == 100.0
    played = ", ".join(f"{s} {saved['style_strengths'][s]:g}" for s in ("rock", "funk", "jazz"))
    assert head[5].endswith(f"style strength {played}"), head[5]
    from drumgen.shares import read as read_shares
    biased = sorted(set(read_shares(folder)) & {"rock", "funk", "jazz"})
    assert f"). Drum-share biases: {', '.join(biased) or 'none'}." in out
    assert report["shares"] == biased
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
    # realism: one row per style with enough real 2-bar validation windows, figures as in JSON
    with_realism = {r["style"]: r["realism"] for r in report["rows"] if "realism" in r}
    assert with_realism, "small_gmd's funk and rock have enough validation windows"
    realism_rows = re.findall(r"^\| (\w+) \| (\d+) / (\d+) \| ([\d.]+) \| ([\d.]+) \| "
                              r"([\d.]+) \| ([\d.]+)% / ([\d.]+)% \|", out, re.M)
    assert {r[0] for r in realism_rows} == set(with_realism)
    for style, n_gen, n_val, c_gen, c_train, ratio, _, _ in realism_rows:
        m = with_realism[style]
        assert int(n_gen) == m["windows"]["generated"] <= 8 * 2  # 4-bar grooves, 2-bar windows
        assert int(n_val) == m["windows"]["validation"] >= MIN_C2ST_WINDOWS
        assert 0 <= float(c_gen) <= 1 and f"{m['c2st_train']:.3f}" == c_train
        assert float(ratio) == pytest.approx(m["distance_gen"] / m["distance_train"], abs=0.006)
    kinds = re.findall(r"^\| ([a-z ]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [k[0] for k in kinds] == [k.replace("_", " ") for k in KINDS]
    if misses:
        assert f"Targets: {len(misses)} missed:" in out and all(f"- {m}" in out for m in misses)
    else:
        assert "Targets: all met." in out
    # the JSON holds the printed figures, and each style's generated grooves are accounted for
    assert {r["style"] for r in report["rows"]} == {r[0] for r in rows}
    for r in report["rows"]:
        assert sum(r["confused_with"].values()) + round(r["acc_gen"] * 8) == r["generated"] == 8
        assert r["style"] not in r["confused_with"]
        printed = next(row for row in rows if row[0] == r["style"])
        assert f"{r['acc_gen']:.2f}" == printed[3]
    assert report["validity"] == 1.0
    assert report["sampling"]["style_strength"] == {
        s: saved["style_strengths"][s] for s in ("rock", "funk", "jazz")}

    # --no-shares plays exactly as a folder without drum-share biases, and leaves the loaded
    # model playing with them
    from drumgen.generate import Generator
    from drumgen.shares import SHARES_FILE
    from drumgen.shares import write as write_shares
    write_shares(folder, {"funk": {"steps": [0.5] * 16, "hits": [[-0.5] * 16] * 9}}, {})
    Generator.forget(folder)
    off, plain = tmp_path / "off.json", tmp_path / "plain.json"
    assert cli.main(["evaluate", "--model", str(folder), "--data", str(small_gmd),
                     "--per-style", "8", "--no-shares", "--json", str(off)]) == 0
    assert "Drum-share biases: none." in capsys.readouterr().out
    gen = Generator.load(folder, device="cpu")
    assert gen.shares and gen.bundle.logit_bias("funk") is not None
    funk_on = next(r for r in json.loads(report_json(evaluate(
        folder, small_gmd, per_style=8)))["rows"] if r["style"] == "funk")
    (folder / SHARES_FILE).unlink()
    Generator.forget(folder)
    assert cli.main(["evaluate", "--model", str(folder), "--data", str(small_gmd),
                     "--per-style", "8", "--json", str(plain)]) == 0
    rows = json.loads(off.read_text())["rows"]
    assert rows == json.loads(plain.read_text())["rows"]
    assert funk_on != next(r for r in rows if r["style"] == "funk")  # the biases played


def test_the_model_card_states_the_saved_generation_defaults(shipped):
    card = (shipped / "README.md").read_text()
    saved = json.loads((shipped / "generation.json").read_text())
    row = re.search(r"\| Generation defaults \| temperature ([\d.]+), top-p ([\d.]+), "
                    r"(no top-k|top-k (\d+)), style strength ([\d.]+)", card)
    assert row, "the card lost its generation-defaults row"
    assert float(row[1]) == saved["temperature"] and float(row[2]) == saved["top_p"]
    assert (int(row[4]) if row[4] else 0) == saved["top_k"]
    assert float(row[5]) == saved["style_strength"]
    per_style = re.search(r"style strength [\d.]+, per style: ([^(]*) \(", card)
    assert per_style, "the card lost the per-style strengths"
    assert {s: float(v) for s, v in (pair.split() for pair in per_style[1].split(", "))} == \
        saved["style_strengths"]


def test_source_style_accuracy_holds_the_users_files_out(small_gmd, shipped):
    """A new style made of GMD funk files is judged by a classifier that never saw them: its
    accuracy on their real grooves is the ceiling for the generated ones. With every funk
    beat held out there is no funk left to learn, and it says so."""
    from drumgen import data as data_mod
    from drumgen.evaluate import source_style_accuracy
    beats = [r for r in data_mod.load(small_gmd).records
             if r.style == "funk" and r.split == "train" and not r.fill]
    mine = beats[::2]
    patterns = [p for _, p in data_mod.read_patterns(mine)]
    result = source_style_accuracy(shipped, "funk", "funk", small_gmd, patterns,
                                   {r.path for r in mine}, per_style=8, also=("rock",))
    assert set(result["also_acc"]) == {"rock"} and result["also_acc"]["rock"] * 8 % 1 == 0
    assert result["real_grooves"] == sum(w.bars == 4 for p in patterns
                                         for w in data_mod.windows(p, 4, 4))
    assert result["generated"] == 8 and result["valid"] == 1.0
    assert sum(result["taken_for"].values()) == 8
    assert result["acc_gen"] == result["taken_for"].get("funk", 0) / 8
    with pytest.raises(ValueError, match="funk: fewer than 4 real training grooves"):
        source_style_accuracy(shipped, "funk", "funk", small_gmd, patterns,
                              {r.path for r in beats}, per_style=8)


def _cal_row(acc_gen, acc_real=0.6, diversity=None, c2st=None, oa=1.0, copies=0.0,
             style="rock"):
    row = {"style": style, "acc_gen": acc_gen, "acc_real": acc_real, "oa_gen": {"hits": oa},
           "oa_real": {"hits": 1.0}}
    if diversity is not None:
        row["realism"] = {"distance_gen": diversity, "distance_train": 1.0, "c2st_gen": c2st,
                          "c2st_train": 0.8, "copy_gen": copies, "copy_val": 0.02,
                          "windows": {"generated": 100, "validation": 100}}
    return row


def test_choose_strength_takes_the_least_telling_recognised_candidate():
    from drumgen.evaluate import CALIBRATION_ACC_MARGIN, CALIBRATION_OA_MARGIN, choose_strength
    ok = 0.6 + CALIBRATION_ACC_MARGIN
    rows = {1.0: _cal_row(ok - 0.01, diversity=1.0, c2st=0.80),   # not recognised enough
            1.5: _cal_row(ok, diversity=1.0, c2st=0.86),          # passes
            2.0: _cal_row(0.95, diversity=1.0, c2st=0.84),        # passes, less telling: chosen
            2.5: _cal_row(0.99, diversity=0.91, c2st=0.70),       # too narrow, by the margin
            2.75: _cal_row(0.99, diversity=1.0, c2st=0.70,        # overlaps too little
                           oa=OA_TARGET + CALIBRATION_OA_MARGIN - 0.01)}
    assert choose_strength(rows, 1.75) == (2.0, "least telling of 2 passing")
    # none passing with the margins: the least telling at the targets themselves
    rows = {1.0: _cal_row(0.61, diversity=1.0, c2st=0.8), 2.0: _cal_row(0.6, diversity=0.9,
                                                                        c2st=0.7)}
    assert choose_strength(rows, 1.75) == (
        2.0, "least telling of 2 passing at the targets (none with the margins)")
    # none recognised: the best recognised sound one
    rows = {1.0: _cal_row(0.3, diversity=1.0, c2st=0.8),
            2.0: _cal_row(0.5, diversity=1.0, c2st=0.9),
            2.5: _cal_row(0.9, diversity=0.5, c2st=0.7)}
    assert choose_strength(rows, 1.75) == (2.0, "none passed: the best recognised sound one")
    # none sound: the model's default stays
    rows = {1.0: _cal_row(0.9, diversity=0.5, c2st=0.8),
            2.0: _cal_row(0.9, diversity=1.3, c2st=0.8)}
    assert choose_strength(rows, 1.75) == (1.75, "none sound: the model's default kept")
    # a style too small for a C2ST: the lowest passing strength
    small = {2.0: _cal_row(0.9), 1.5: _cal_row(0.9), 1.0: _cal_row(0.1)}
    assert choose_strength(small, 1.75)[0] == 1.5


def test_choose_strength_prefers_room_inside_the_targets_among_equally_telling_ones():
    """Jazz on the round-6 selection stream (the model card's calibration table): strength 2
    was the least telling (C2ST 0.770) at a diversity ratio of 0.92, at the sound edge, and
    measured 0.86 on the report stream. 1.75 tells as little within the stream's noise
    (0.772) with its diversity at 0.99, so it wins now; 1.5 (0.781) is outside the band."""
    from drumgen.evaluate import CALIBRATION_C2ST_BAND, choose_strength
    assert CALIBRATION_C2ST_BAND == 0.01
    jazz = {1.0: _cal_row(0.79, 0.74, diversity=1.11, c2st=0.843, oa=1.01),
            1.25: _cal_row(0.86, 0.74, diversity=1.06, c2st=0.793, oa=1.00),
            1.5: _cal_row(0.92, 0.74, diversity=1.01, c2st=0.781, oa=1.03),
            1.75: _cal_row(0.93, 0.74, diversity=0.99, c2st=0.772, oa=1.04),
            2.0: _cal_row(0.98, 0.74, diversity=0.92, c2st=0.770, oa=1.04),
            2.25: _cal_row(0.99, 0.74, diversity=0.85, c2st=0.778, oa=1.03)}
    assert choose_strength(jazz, 1.75) == (
        1.75, "furthest inside the targets of 2 within 0.01 C2ST of the least telling (2), "
              "of 5 passing")
    # out of the band, the least telling still wins however little room it has
    jazz[1.75] = _cal_row(0.93, 0.74, diversity=0.99, c2st=0.781, oa=1.04)
    assert choose_strength(jazz, 1.75) == (2.0, "least telling of 5 passing")


def test_choose_strengths_keeps_the_pooled_copy_rate_under_real_datas():
    """Real validation windows copy 2% here. Rock's least telling pick copies 10% of its
    windows (5% pooled), so rock moves to its best pick among the candidates copying less;
    funk, which copies nothing, keeps its own."""
    from drumgen.evaluate import choose_strengths
    from drumgen.model import GenerationDefaults
    rows = {1.0: [_cal_row(0.9, diversity=1.0, c2st=0.80, copies=0.10),
                  _cal_row(0.9, diversity=1.0, c2st=0.80, style="funk")],
            1.5: [_cal_row(0.9, diversity=1.0, c2st=0.85, copies=0.05),
                  _cal_row(0.9, diversity=1.0, c2st=0.85, style="funk")],
            2.0: [_cal_row(0.9, diversity=1.0, c2st=0.86, copies=0.01),
                  _cal_row(0.9, diversity=1.0, c2st=0.90, style="funk")]}
    picks = choose_strengths({s: {"rows": r} for s, r in rows.items()}, GenerationDefaults())
    assert picks["chosen"] == {"rock": 2.0, "funk": 1.0}  # 5% pooled at 1.5: still over 2%
    assert picks["why"]["rock"].endswith("among those copying less (pooled copies)")
    assert picks["why"]["funk"] == "least telling of 3 passing"


def test_choose_strengths_stops_when_no_candidate_copying_less_is_sound():
    """Both candidates copy too often and neither is sound: the default (one of them) stays,
    and the rule ends (it once looped for ever, re-choosing the same default)."""
    from drumgen.evaluate import choose_strengths
    from drumgen.model import GenerationDefaults
    rows = {1.0: [_cal_row(0.9, diversity=0.5, c2st=0.8, copies=0.5)],
            2.0: [_cal_row(0.9, diversity=0.5, c2st=0.8, copies=0.1)]}
    picks = choose_strengths({s: {"rows": r} for s, r in rows.items()},
                             GenerationDefaults(style_strength=1.0))
    assert picks["chosen"] == {"rock": 1.0}
    assert picks["why"]["rock"] == "none sound: the model's default kept"

