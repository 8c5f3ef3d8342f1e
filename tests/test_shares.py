"""Drum-share calibration: the rates it matches, where its biases land, that they play in
beats and not in fills, the same in every engine, and the fit end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from drumgen import shares
from drumgen.constants import DRUMS
from drumgen.generate import Generator, Request
from drumgen.model import ModelError
from drumgen.pattern import Hit, Pattern
from drumgen.sampling import sample
from drumgen.tokenizer import Grammar

ROOT = Path(__file__).resolve().parent.parent
RIDE, KICK = DRUMS.index("ride"), DRUMS.index("kick")


def _entry(steps=0.0, hits=0.0) -> dict:
    return {"steps": np.broadcast_to(steps, (16,)).tolist(),
            "hits": np.broadcast_to(hits, (len(DRUMS), 16)).tolist()}


@pytest.fixture
def folder(shipped, tmp_path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(shipped, out, ignore=shutil.ignore_patterns("groove"))
    (out / shares.SHARES_FILE).unlink(missing_ok=True)
    return out


def test_rates_are_onsets_per_step_and_hits_per_onset_by_drum_and_step():
    # two bars: bar 0 kick+snare on 0, kick on 8; bar 1 kick on 0 only
    p = Pattern([Hit(0, 0, KICK, 100), Hit(0, 0, 1, 90), Hit(0, 8, KICK, 100),
                 Hit(1, 0, KICK, 100)], 2, 100)
    r = shares.rates([p])
    assert r["steps"][0] == 1.0 and r["steps"][8] == 0.5 and r["steps"].sum() == 1.5
    overall_kick = 3 / 3  # kick hits over all onsets
    assert r["hits"][KICK, 0] == pytest.approx((2 + shares.FIT_PRIOR * overall_kick)
                                               / (2 + shares.FIT_PRIOR))
    assert r["hits"][1, 0] == pytest.approx((1 + shares.FIT_PRIOR / 3) / (2 + shares.FIT_PRIOR))
    # a step nobody plays reads as the drum's overall rate, not as 0/0
    assert r["hits"][1, 5] == pytest.approx(1 / 3)


def test_bias_table_puts_each_bias_on_its_tokens(shipped):
    tok = Generator.load(shipped, device="cpu").tokenizer
    entry = _entry(np.arange(16) / 10, np.arange(len(DRUMS))[:, None] + np.arange(16) / 100)
    table = shares.bias_table(tok, entry)
    assert table.shape == (16, len(tok))
    pos3, hit = tok.ids["POS_3"], tok.hit_token(RIDE, 2, 5)
    assert table[:, pos3].tolist() == pytest.approx([0.3] * 16)  # the same at every step
    assert table[7, hit].item() == pytest.approx(RIDE + 0.07)  # ride's bias at step 7
    assert table[2, hit].item() == pytest.approx(RIDE + 0.02)
    assert torch.all(table[:, tok.bar] == 0) and torch.all(table[:, tok.eos] == 0)


def test_biases_play_in_beat_bars_and_not_in_fills(folder):
    """A huge bias for the ride on every step and against odd steps: every onset of a beat
    bar has a ride and none is on an odd step. A fill bar samples from the model as it is."""
    shares.write(folder, {"funk": _entry(np.where(np.arange(16) % 2, -30.0, 0.0),
                                         np.where(np.arange(len(DRUMS)) == RIDE, 30.0, 0.0)[
                                             :, None] * np.ones(16))}, {})
    gen = Generator.load(folder, device="cpu")
    grooves = gen.generate(Request(style="funk", bars=2, fill=True, variations=8, seed=2))
    fill_like_beat = 0
    for g in grooves:
        beat, fill = g.raw.bar_hits(0), g.raw.bar_hits(1)
        assert beat and all(h.step % 2 == 0 for h in beat)
        assert {h.step for h in beat} == {h.step for h in beat if h.drum == RIDE}
        fill_like_beat += all(h.step % 2 == 0 for h in fill) and \
            {h.step for h in fill} == {h.step for h in fill if h.drum == RIDE}
    assert fill_like_beat < len(grooves)
    # a call without them, or the setting that turns them off, plays the model as it is
    plain = gen.generate(Request(style="funk", bars=2, variations=8, seed=2), shares=False)
    assert any(h.step % 2 or h.drum != RIDE for g in plain for h in g.raw.bar_hits(0))
    gen.shares = False
    assert [g.tokens for g in gen.generate(Request(style="funk", bars=2, variations=8,
                                                   seed=2))] == [g.tokens for g in plain]
    # styles without biases play as before
    assert gen.bundle.logit_bias("rock") is None


@pytest.mark.parametrize("engine", ["naive", "hf", "onnx"])
def test_engines_apply_the_same_biases(shipped, engine):
    """The fast decoder, the onnx engine (which adds the bias inside its graph) and the
    reference engines pick the same tokens under a bias table."""
    gen = Generator.load(shipped, device="cpu")
    tok = gen.tokenizer
    rng = np.random.default_rng(0)
    bias = shares.bias_table(tok, _entry(rng.normal(0, 1, 16), rng.normal(0, 1, (len(DRUMS), 16))))
    prompt = [tok.bos, tok.ids["TEMPO_4"], tok.ids["DENS_4"]]

    def run(engine, bias):
        grammars = []
        for _ in range(2):
            g = Grammar(tok, 2, [False, True])
            for t in prompt:
                g.advance(t)
            grammars.append(g)
        return sample(gen.bundle.model, [prompt] * 2, 1, grammars,
                      torch.Generator().manual_seed(4), 1.0, 0, 0.95, 300, engine=engine,
                      weights="own", bias=bias)
    biased = run("fast", bias)
    assert biased == run(engine, bias)
    assert biased != run("fast", None)


def test_a_corrupt_shares_file_is_refused_by_name(folder):
    (folder / shares.SHARES_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="shares.json"):
        Generator.load(folder, device="cpu")
    shares.write(folder, {"funk": {"steps": [0.0] * 16, "hits": [[0.0] * 3] * 9}}, {})
    with pytest.raises(ModelError, match="funk needs 16 step biases"):
        Generator.load(folder, device="cpu")
    shares.write(folder, {"funk": _entry(float("nan"))}, {})
    with pytest.raises(ModelError, match="not a finite number"):
        Generator.load(folder, device="cpu")
    shares.write(folder, {"fnuk": _entry()}, {})
    with pytest.raises(ModelError, match="shares.json has biases for styles the model does "
                                         "not know: fnuk"):
        Generator.load(folder, device="cpu")


def test_fit_shares_cli_moves_the_rates_toward_the_training_split(folder, train_data):
    """`fit-shares` on synthetic training MIDI (funk, rock and jazz templates the shipped model
    never saw): each style's error falls, the file is written and the model plays with it."""
    run = subprocess.run([sys.executable, "-m", "drumgen", "fit-shares", "--model", str(folder),
                          "--data", str(train_data), "--rounds", "2", "--per-style", "8"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "round 2: mean error" in run.stdout
    assert f"wrote {folder / shares.SHARES_FILE} for 3 styles" in run.stdout
    saved = json.loads((folder / shares.SHARES_FILE).read_text())
    assert set(saved["styles"]) == {"funk", "rock", "jazz"}
    # the settings they were fitted at: the model's defaults, each style at its own strength
    defaults = Generator.load(folder, device="cpu").bundle.defaults
    assert {s: v["style_strength"] for s, v in saved["fitted"]["sampling"].items()} == {
        s: defaults.strength_for(s) for s in ("funk", "rock", "jazz")}
    for style, error in saved["fitted"]["error"].items():
        assert len(error) == 3 and error[-1] < error[0], (style, error)
    gen = Generator.load(folder, device="cpu")
    assert gen.bundle.logit_bias("funk") is not None and gen.bundle.logit_bias("latin") is None
    bad = subprocess.run([sys.executable, "-m", "drumgen", "fit-shares", "--model", str(folder),
                          "--data", str(train_data), "--rounds", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--rounds must be at least 1; got 0" in bad.stderr


def test_saving_a_model_keeps_its_biases_and_a_new_model_drops_the_old_ones(folder, tmp_path):
    from drumgen import model as model_mod
    shares.write(folder, {"funk": _entry(0.25)}, {})
    bundle = model_mod.load(folder)
    assert bundle.shares["funk"]["steps"] == [0.25] * 16
    model_mod.save(bundle, tmp_path / "copy")
    assert model_mod.load(tmp_path / "copy").shares == bundle.shares
    # a model trained into that folder (a Bundle of its own, without biases) drops them
    model_mod.save(model_mod.Bundle(bundle.model, bundle.tokenizer, bundle.styles,
                                    bundle.defaults), tmp_path / "copy")
    assert not (tmp_path / "copy" / shares.SHARES_FILE).exists()
    assert model_mod.load(tmp_path / "copy").shares == {}
