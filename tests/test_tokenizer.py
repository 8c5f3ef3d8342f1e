"""The compound tokenizer: fidelity on real GMD files, compactness, flams, the grammar's error
messages, its generation mask, the saved vocabulary, and `python -m drumgen roundtrip`."""

from __future__ import annotations

import json
import random
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GMD, ROOT, gmd_params, gmd_rows

from drumgen.constants import GMD_STYLES, SHIFT_BINS, VELOCITY_BINS
from drumgen.fidelity import compare, roundtrip
from drumgen.pattern import Hit, Pattern
from drumgen.tokenizer import (
    Grammar,
    TokenError,
    Tokenizer,
    base_vocab,
    bin_shift,
    bin_velocity,
    shift_bin,
    velocity_bin,
)

KEPT_MIN, P99_MAX_MS, MAE_MAX = 0.98, 10.0, 6.0


def _one_beat_per_style(n: int = 10) -> list[str]:
    """The first 4/4 groove (not fill) of each of the `n` most common GMD styles (none
    without GMD)."""
    rows = gmd_rows()
    if not rows:
        return []
    out = []
    for style in GMD_STYLES[:n]:
        out.append(next(r["midi_filename"] for r in rows if r["style"].split("/")[0] == style
                        and r["beat_type"] == "beat" and r["time_signature"] == "4-4"))
    return out


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def names(tok: Tokenizer, text: str) -> list[int]:
    return [tok.ids[n] for n in text.split()]


HEAD = "BOS TEMPO_3 DENS_2"


# ---------------------------------------------------------------------------------------------
# Fidelity on real data

@pytest.mark.parametrize("midi_filename", gmd_params(_one_beat_per_style()))
def test_roundtrip_real_file(tok, midi_filename, gmd):
    pattern = Pattern.from_midi(GMD / midi_filename)
    ids = tok.encode(pattern) + [tok.eos]
    assert tok.check(ids, bars=pattern.bars) == []
    assert tok.fill_flags(ids) == [False] * pattern.bars

    decoded, figures = roundtrip(pattern, tok)
    assert decoded.bars == pattern.bars
    assert figures["hits_in"] == len(pattern.hits) and figures["tokens"] == len(ids)
    assert figures["kept"] >= KEPT_MIN, figures["kept"]
    assert figures["timing_p99_ms"] <= P99_MAX_MS, figures["timing_p99_ms"]
    assert figures["velocity_mae"] <= MAE_MAX, figures["velocity_mae"]
    # every decoded hit sits on a slot where the original had that drum
    slots = {(h.bar, h.step, h.drum) for h in pattern.hits}
    assert all((h.bar, h.step, h.drum) in slots for h in decoded.hits)
    # the error bounds the bins promise: half a velocity bin, half a shift bin
    assert max(figures["timing_ms"]) <= pattern.step_seconds * 1000 / SHIFT_BINS / 2 + 1e-6


def test_roundtrip_whole_validation_split(tok, gmd):
    rows = gmd_rows("validation")
    timing, velocity_errors, hits_in, kept, skipped = [], 0.0, 0, 0, []
    for row in rows:
        pattern = Pattern.from_midi(GMD / row["midi_filename"])
        if pattern.steps_per_bar != tok.steps_per_bar:
            skipped.append(row["midi_filename"])
            continue
        ids = tok.encode(pattern) + [tok.eos]
        assert tok.check(ids, bars=pattern.bars) == [], row["midi_filename"]
        decoded = tok.decode(ids, tempo=pattern.tempo)
        assert decoded.bars == pattern.bars
        figures = compare(pattern, decoded)
        hits_in += figures["hits_in"]
        kept += len(figures["timing_ms"])
        timing += figures["timing_ms"]
        velocity_errors += figures["velocity_mae"] * len(figures["timing_ms"])
    # only the split's files in meters other than 4/4 are left out
    assert skipped == [r["midi_filename"] for r in rows if r["time_signature"] != "4-4"]
    timing.sort()
    share, p99 = kept / hits_in, timing[int(len(timing) * 0.99)]
    mae = velocity_errors / kept
    print(f"\nvalidation split: {len(rows) - len(skipped)} files, {hits_in} hits; "
          f"hits kept {share:.4%}, timing p99 {p99:.2f} ms, velocity MAE {mae:.2f}")
    assert share >= KEPT_MIN and p99 <= P99_MAX_MS and mae <= MAE_MAX


def test_tokens_per_bar_is_compact(tok, gmd):
    per_bar = []
    for row in gmd_rows("train")[::25]:
        pattern = Pattern.from_midi(GMD / row["midi_filename"])
        if pattern.steps_per_bar != 16:
            continue
        body = tok.encode_bars(pattern, [False] * pattern.bars)
        starts = [i for i, t in enumerate(body) if t == tok.bar] + [len(body)]
        assert len(starts) - 1 == pattern.bars
        per_bar += [b - a for a, b in zip(starts, starts[1:], strict=False)]
    median = statistics.median(per_bar)
    print(f"\nmedian tokens per bar over {len(per_bar)} bars: {median}")
    assert 1 < median < 45


# ---------------------------------------------------------------------------------------------
# Bins and flams

def test_velocity_and_shift_bins_invert_within_half_a_bin():
    assert sorted({velocity_bin(v) for v in range(1, 128)}) == list(range(VELOCITY_BINS))
    for v in range(1, 128):
        assert abs(bin_velocity(velocity_bin(v)) - v) <= 127 / VELOCITY_BINS / 2 + 0.5
    offsets = [i / 1000 - 0.5 for i in range(1000)]
    assert sorted({shift_bin(o) for o in offsets}) == list(range(SHIFT_BINS))
    for o in offsets:
        assert abs(bin_shift(shift_bin(o)) - o) <= 1 / SHIFT_BINS / 2 + 1e-12
    assert shift_bin(-0.5) == 0 and shift_bin(0.4999) == SHIFT_BINS - 1


def test_fit_velocities_decodes_each_bin_to_the_mean_of_its_hits(tmp_path):
    # snare hits at the ceiling, where drummers play: bin 7 spans 112-127, its centre is 120
    snares = [Hit(0, s, 1, v) for s, v in enumerate((127, 127, 121))]
    kicks = [Hit(0, 4, 0, 60), Hit(0, 8, 0, 62)]
    pattern = Pattern(snares + kicks, 1, 120)
    tok = Tokenizer().fit_velocities([pattern])
    assert tok.velocities[1][7] == 125 and tok.velocities[0][velocity_bin(60)] == 61
    centres = [bin_velocity(b) for b in range(VELOCITY_BINS)]
    assert tok.velocities[2] == centres  # no closed-hat hits: every bin keeps its centre
    assert tok.velocities[1][:7] == centres[:7]
    decoded = tok.decode(tok.encode(pattern))
    assert [h.velocity for h in decoded.hits if h.drum == 1] == [125, 125, 125]
    assert [h.velocity for h in decoded.hits if h.drum == 0] == [61, 61]
    assert [h.velocity for h in Tokenizer().decode(tok.encode(pattern)).hits
            if h.drum == 1] == [120, 120, 120]
    tok.save(tmp_path)
    assert Tokenizer.load(tmp_path).velocities == tok.velocities
    (tmp_path / "velocities.json").unlink()  # a folder saved before the table existed
    assert Tokenizer.load(tmp_path).velocities == [centres] * len(tok.velocities)


@pytest.mark.parametrize("table, message", [
    ([[1] * VELOCITY_BINS], "9 rows of 8"),
    ([[bin_velocity(b) for b in range(VELOCITY_BINS)]] * 8 + [[8] * VELOCITY_BINS],
     "drum 8, bin 1 holds 8"),
    ([[bin_velocity(b) for b in range(VELOCITY_BINS - 1)] + [128]] * 9, "bin 7 holds 128"),
    ([[bin_velocity(b) for b in range(VELOCITY_BINS - 1)] + [120.5]] * 9, "holds 120.5"),
])
def test_a_bad_velocity_table_is_refused(tmp_path, table, message):
    Tokenizer().save(tmp_path)
    (tmp_path / "velocities.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match=re.escape(message)):
        Tokenizer.load(tmp_path)


def test_flams_survive_a_roundtrip(tok, tmp_path):
    hits = [Hit(0, 0, 0, 110, 0.0), Hit(0, 4, 1, 50, -0.3), Hit(0, 4, 1, 115, 0.2),
            Hit(1, 12, 1, 70, -0.05), Hit(1, 12, 1, 72, 0.05)]
    pattern = Pattern(hits, 2, 96)
    ids = tok.encode(pattern) + [tok.eos]
    at = ids.index(tok.ids["POS_4"])
    flam = [tok.vocab[t] for t in ids[at + 1:at + 3]]
    assert flam[0].startswith("HIT_1_") and flam[1].startswith("HIT_1_") and flam[0] != flam[1]
    assert tok.check(ids) == []
    # through a MIDI file as well: write, read, encode, decode
    read = Pattern.from_midi(pattern.save(tmp_path / "flam.mid"))
    decoded, figures = roundtrip(read, tok)
    assert figures["kept"] == 1.0
    for step, bar in ((4, 0), (12, 1)):
        got = sorted(h.offset for h in decoded.hits if (h.bar, h.step, h.drum) == (bar, step, 1))
        want = sorted(h.offset for h in hits if (h.bar, h.step, h.drum) == (bar, step, 1))
        assert len(got) == 2 and all(abs(a - b) <= 1 / 32 for a, b in zip(got, want, strict=True))


# ---------------------------------------------------------------------------------------------
# check(): what is wrong with a sequence

def test_check_accepts_valid_sequences(tok):
    valid = names(tok, f"{HEAD} BAR POS_0 HIT_0_5_8 HIT_2_3_7 POS_4 HIT_1_6_8 FILL EOS")
    assert tok.check(valid) == [] and tok.check(valid, bars=2) == []
    assert tok.check(valid + [tok.pad, tok.pad]) == []  # padding after EOS
    assert tok.check(valid[:-1], partial=True) == []


@pytest.mark.parametrize("text, bars, message", [
    ("BAR POS_4 HIT_0_5_8 POS_2 HIT_1_5_8 EOS", None,
     "token 6 (POS_2): position 2 does not come after position 4"),
    ("BAR POS_4 HIT_0_5_8 POS_4 HIT_1_5_8 EOS", None,
     "token 6 (POS_4): position 4 does not come after position 4"),
    ("BAR POS_0 POS_4 HIT_0_5_8 EOS", None, "token 5 (POS_4): POS_0 has no hit"),
    ("BAR POS_0 BAR EOS", None, "token 5 (BAR): POS_0 has no hit"),
    ("BAR POS_3 EOS", None, "token 5 (EOS): POS_3 has no hit"),
    ("BAR POS_3 EOS", 1, "token 5 (EOS): POS_3 has no hit"),
    ("BAR HIT_0_5_8 EOS", None, "token 4 (HIT_0_5_8): a hit before any position in the bar"),
    ("HIT_0_5_8 EOS", None, "token 3 (HIT_0_5_8): a hit before any position in the bar"),
    ("POS_0 HIT_0_5_8 EOS", None, "token 3 (POS_0): a position before the first BAR"),
    ("BAR POS_0 HIT_1_5_8 HIT_0_5_8 EOS", None,
     "token 6 (HIT_0_5_8): hits at one position must be in increasing (drum, velocity, shift) "
     "order"),
    ("BAR POS_0 HIT_1_5_8 HIT_1_5_8 EOS", None,
     "token 6 (HIT_1_5_8): hits at one position must be in increasing"),
    ("BAR POS_0 HIT_1_5_9 HIT_1_5_8 EOS", None,
     "token 6 (HIT_1_5_8): hits at one position must be in increasing"),
    ("EOS", None, "token 3 (EOS): EOS before any bar"),
    ("EOS", 2, "token 3 (EOS): EOS before any bar"),
    ("BAR POS_0 HIT_0_5_8 EOS", 2, "token 6 (EOS): EOS after 1 bars; 2 were asked for"),
    ("BAR BAR FILL EOS", 2, "token 5 (FILL): more than the 2 bars asked for"),
    ("BAR TEMPO_1 EOS", None, "token 4 (TEMPO_1): TEMPO_1 cannot appear in the body"),
    ("BAR BOS EOS", None, "token 4 (BOS): BOS cannot appear in the body"),
    ("BAR EOS HIT_0_5_8", None, "token 5 (HIT_0_5_8): expected nothing after EOS"),
])
def test_check_reports_what_is_wrong(tok, text, bars, message):
    errors = tok.check(names(tok, f"{HEAD} {text}"), bars=bars)
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_check_reports_a_bad_prefix(tok):
    assert tok.check(names(tok, "BAR POS_0 HIT_0_5_8 EOS")) == ["token 0 (BAR): expected BOS"]
    assert tok.check(names(tok, "BOS DENS_1 BAR EOS")) == [
        "token 1 (DENS_1): expected a TEMPO token"]
    assert tok.check(names(tok, "BOS TEMPO_1 BAR EOS")) == [
        "token 2 (BAR): expected a DENS token"]


def test_check_reports_a_missing_eos(tok):
    ids = names(tok, f"{HEAD} BAR POS_0 HIT_0_5_8 BAR")
    assert tok.check(ids) == ["the sequence does not end with EOS"]
    assert tok.check([]) == ["the sequence does not end with EOS"]
    assert tok.check(ids, partial=True) == []


@pytest.mark.parametrize("bad", [len(base_vocab()), 10**6, -1])
def test_check_reports_ids_outside_the_vocabulary(tok, bad):
    ids = names(tok, f"{HEAD} BAR POS_0") + [bad]
    assert tok.check(ids) == [f"token 5: id {bad} is outside the vocabulary"]


def test_check_reports_a_position_past_a_short_bar():
    tok = Tokenizer(steps_per_bar=12)
    errors = tok.check(names(tok, f"{HEAD} BAR POS_12 HIT_0_5_8 EOS"))
    assert errors == ["token 4 (POS_12): position 12 is past the bar's 12 steps"]
    assert tok.check(names(tok, f"{HEAD} BAR POS_11 HIT_0_5_8 EOS")) == []


def test_forced_bar_kinds_are_reported(tok):
    grammar = Grammar(tok, bars=2, fills=[False, True])
    for t in names(tok, f"{HEAD} BAR POS_0 HIT_0_5_8"):
        assert grammar.why_not(t) is None
        grammar.advance(t)
    assert grammar.why_not(tok.bar) == "bar 2 must be a FILL"
    assert grammar.why_not(tok.fill) is None
    with pytest.raises(ValueError, match="at least one bar"):
        Grammar(tok, bars=0)


def test_decode_refuses_an_invalid_sequence(tok):
    with pytest.raises(TokenError, match="POS_0 has no hit"):
        tok.decode(names(tok, f"{HEAD} BAR POS_0 BAR EOS"))
    decoded = tok.decode(names(tok, f"{HEAD} BAR BAR POS_8 HIT_1_7_8 FILL EOS"), tempo=91)
    assert decoded.bars == 3 and decoded.tempo == 91
    assert decoded.hits == [Hit(1, 8, 1, bin_velocity(7), bin_shift(8))]


# ---------------------------------------------------------------------------------------------
# The grammar as a generation mask

def _walk(tok: Tokenizer, rng: random.Random, bars: int | None, fills: list[bool] | None,
          max_new: int | None = None, on_state=None) -> list[int]:
    """Sample uniformly among the allowed tokens until EOS, as `sampling.sample` does (with
    its token budget when `max_new` is given)."""
    grammar, seq = Grammar(tok, bars, fills), []
    for step in range(100_000):
        mask = grammar.allowed()
        choices = mask.nonzero().flatten().tolist()
        assert choices, f"nothing allowed after {[tok.vocab[t] for t in seq]}"
        if on_state:
            on_state(grammar, mask)
        t = rng.choice(choices)
        seq.append(t)
        grammar.advance(t)
        if grammar.state.phase == "DONE":
            return seq
        if max_new is not None:
            grammar.budget = max_new - step - 1
    raise AssertionError("the walk never reached EOS")


@pytest.mark.parametrize("seed", range(6))
def test_random_walks_always_satisfy_check(tok, seed):
    rng = random.Random(seed)
    for _ in range(25):
        bars = rng.randint(1, 4)
        fills = [rng.random() < 0.3 for _ in range(bars)]
        budget = rng.choice([None, rng.randint(bars + 4, 40)])
        seq = _walk(tok, rng, bars, fills, budget)
        assert tok.check(seq, bars=bars) == [], [tok.vocab[t] for t in seq]
        assert tok.fill_flags(seq) == fills
        assert seq[-1] == tok.eos and tok.decode(seq).bars == bars
        if budget is not None:
            assert len(seq) <= budget
    # with no bar count, the walk may stop after any bar
    for _ in range(10):
        seq = _walk(tok, rng, None, None)
        assert tok.check(seq) == [] and tok.fill_flags(seq)


def test_why_not_is_none_exactly_for_allowed_tokens(tok):
    rng = random.Random(7)
    states = []

    def probe(grammar, mask):
        if rng.random() < 0.25 and len(states) < 40:
            reasons = [grammar.why_not(t) for t in range(len(tok))]
            states.append(grammar.state.phase)
            for t, reason in enumerate(reasons):
                assert (reason is None) == bool(mask[t]), (tok.vocab[t], reason)
                assert reason is None or (isinstance(reason, str) and reason)

    while len(states) < 40:
        _walk(tok, rng, 2, [False, True], rng.randint(8, 30), on_state=probe)
    assert states.count("BODY") >= 20


def test_forced_tempo_and_density(tok):
    grammar = Grammar(tok, bars=1, tempo=5, density=3)
    grammar.advance(tok.bos)
    assert grammar.allowed().nonzero().flatten().tolist() == [tok.ids["TEMPO_5"]]
    grammar.advance(tok.ids["TEMPO_5"])
    assert grammar.allowed().nonzero().flatten().tolist() == [tok.ids["DENS_3"]]


# ---------------------------------------------------------------------------------------------
# The saved vocabulary

def test_vocabulary_saves_and_loads(tok, tmp_path):
    tok.save(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == base_vocab()
    loaded = Tokenizer.load(tmp_path)
    assert loaded.vocab == tok.vocab and loaded.ids == tok.ids
    pattern = Pattern([Hit(0, 0, 0, 100), Hit(0, 6, 3, 40, 0.2)], 1, 120)
    assert loaded.encode(pattern) == tok.encode(pattern)
    # atomic: no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tokenizer.json", "velocities.json", "vocab.json"]


def test_appending_a_token_keeps_existing_ids(tok, tmp_path, gmd):
    (tmp_path / "vocab.json").write_text(json.dumps(base_vocab() + ["STYLE_CUE"]))
    grown = Tokenizer.load(tmp_path)
    assert len(grown) == len(tok) + 1 and grown.ids["STYLE_CUE"] == len(tok)
    assert all(grown.ids[name] == i for i, name in enumerate(tok.vocab))
    pattern = Pattern.from_midi(GMD / _one_beat_per_style(1)[0]).slice(0, 4)
    ids = grown.encode(pattern) + [grown.eos]
    assert ids == tok.encode(pattern) + [tok.eos]
    assert grown.decode(ids).hits == tok.decode(ids).hits
    # the new token is never offered, and check() names it
    new = grown.ids["STYLE_CUE"]

    def never_new(grammar, mask):
        assert not mask[new]

    for seed in range(5):
        walk = _walk(grown, random.Random(seed), 2, None, on_state=never_new)
        assert grown.check(walk, bars=2) == []
    bad = ids[:4] + [new] + ids[4:]
    assert grown.check(bad) == ["token 4 (STYLE_CUE): STYLE_CUE cannot appear in the body of "
                                "a sequence"]


def test_a_vocabulary_missing_base_tokens_is_refused(tmp_path):
    vocab = base_vocab()
    vocab.remove("HIT_8_7_15")
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match="lacks 1 tokens, e.g. HIT_8_7_15"):
        Tokenizer.load(tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        Tokenizer(base_vocab() + ["BAR"])


def test_a_reordered_vocabulary_decodes_the_same(tok):
    shuffled = base_vocab()
    random.Random(3).shuffle(shuffled)
    other = Tokenizer(shuffled)
    pattern = Pattern([Hit(0, 0, 0, 100), Hit(0, 0, 2, 60, -0.1), Hit(1, 15, 8, 90, 0.3)], 2, 88)
    a = tok.decode(tok.encode(pattern) + [tok.eos], tempo=88)
    b = other.decode(other.encode(pattern) + [other.eos], tempo=88)
    assert a.hits == b.hits and a.bars == b.bars == 2


# ---------------------------------------------------------------------------------------------
# The CLI

@pytest.mark.slow  # a CLI subprocess
def test_cli_roundtrip(tok, tmp_path, gmd):
    source = GMD / _one_beat_per_style(2)[1]
    out = tmp_path / "out.mid"
    run = subprocess.run([sys.executable, "-m", "drumgen", "roundtrip", str(source), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    found = re.search(r"hits kept ([\d.]+)% \((\d+)/(\d+)\), timing error p99 ([\d.]+) ms, "
                      r"velocity MAE ([\d.]+)", run.stdout)
    assert found, run.stdout
    kept, hits_out, hits_in, p99, mae = found.groups()
    original = Pattern.from_midi(source)
    _, figures = roundtrip(original, tok)
    assert int(hits_in) == len(original.hits) and int(hits_out) == figures["hits_out"]
    assert float(kept) / 100 >= KEPT_MIN and float(p99) <= P99_MAX_MS and float(mae) <= MAE_MAX
    assert float(p99) == pytest.approx(figures["timing_p99_ms"], abs=0.01)
    written = Pattern.from_midi(out)
    assert written.bars == original.bars and len(written.hits) == int(hits_out)
    assert written.tempo == pytest.approx(original.tempo)

    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\0\0\0\6\0\1\0\1\1\xe0MTrk\0\0\0\xff\0")
    run = subprocess.run([sys.executable, "-m", "drumgen", "roundtrip", str(bad),
                          str(tmp_path / "x.mid")], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "drumgen: error: bad.mid: corrupt MIDI data" in run.stderr
    assert not (tmp_path / "x.mid").exists()


def test_one_beat_per_style_picks_distinct_styles(gmd):
    files = _one_beat_per_style()
    assert len(files) == 10 == len({Path(f).name.split("_")[1].split("-")[0] for f in files})


def test_a_model_folder_saves_its_tokenizer_settings_and_others_are_refused(tmp_path):
    """The shipped model's tokenizer.json matches this code; a folder saved with other
    settings (here, other tempo buckets) is refused with the setting named."""
    from drumgen.model import ModelError, load
    from drumgen.tokenizer import SETTINGS_FILE, settings
    shipped = ROOT / "models" / "drumgen-small"
    assert json.loads((shipped / SETTINGS_FILE).read_text()) == settings(16)
    folder = tmp_path / "model"
    shutil.copytree(shipped, folder)
    theirs = settings(16)
    theirs["tempo_edges"] = [60, *theirs["tempo_edges"][1:]]
    (folder / SETTINGS_FILE).write_text(json.dumps(theirs))
    with pytest.raises(ModelError, match="tempo_edges"):
        load(folder)
    (folder / SETTINGS_FILE).unlink()  # a folder from before the file: loads as it is
    assert load(folder).tokenizer.vocab == load(shipped).tokenizer.vocab
