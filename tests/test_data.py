"""Data: GMD and user-folder loading, pattern reading with skips, training windows and
examples, fetching the dataset (checksum, safe unpacking) and `python -m drumgen data`."""

from __future__ import annotations

import csv
import hashlib
import os
import random
import re
import stat
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import GMD, ROOT, gmd_rows

from drumgen import cli, constants
from drumgen import data as data_mod
from drumgen.archive import (
    MAX_ZIP_ENTRIES,
    ArchiveError,
    download,
    safe_extract,
    sha256_of,
)
from drumgen.data import (
    Record,
    examples,
    fetch_gmd,
    load,
    load_folder,
    load_gmd,
    read_patterns,
    windows,
)
from drumgen.pattern import Hit, Pattern
from drumgen.tokenizer import Tokenizer

INFO_FIELDS = ["drummer", "session", "id", "style", "bpm", "beat_type", "time_signature",
               "midi_filename", "audio_filename", "duration", "split"]


def make_midi(path: Path, bars: int = 2, seed: int = 0, sig: tuple[int, int] = (4, 4)) -> Path:
    """A small groove written by drumgen itself (mido underneath)."""
    rng = random.Random(seed)
    steps = 16 * sig[0] // sig[1]
    hits = [Hit(b, s, d, rng.randint(30, 127), 0.0) for b in range(bars)
            for s in range(steps) for d in (0, 1, 2) if rng.random() < 0.4 or (b, s) == (0, 0)]
    return Pattern(hits, bars, 100, sig).save(path)


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drumgen", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------
# load_gmd

def test_load_gmd_matches_info_csv(gmd):
    rows = gmd_rows()
    dataset = load_gmd(gmd)
    assert dataset.skipped == []
    assert len(dataset.records) == len(rows)
    for split in ("train", "validation"):
        assert len(dataset.split(split)) == sum(r["split"] == split for r in rows) > 0
    by_path = {r.path: r for r in dataset.records}
    for row in rows:
        record = by_path[gmd / row["midi_filename"]]
        assert record.style == row["style"].split("/")[0]
        assert "/" not in record.style and record.style == record.style.lower()
        assert record.fill == (row["beat_type"] == "fill")
        assert record.bpm == float(row["bpm"]) and record.drummer == row["drummer"]
        assert record.split == row["split"]
    assert set(dataset.styles) == {r["style"].split("/")[0] for r in rows}
    assert Counter(r.fill for r in dataset.records)[True] == sum(
        r["beat_type"] == "fill" for r in rows)
    assert load(gmd).records == dataset.records  # load() sees info.csv


def test_load_gmd_reports_missing_files(tmp_path, gmd):
    rows = gmd_rows("validation")[:2]
    listed = [{**r, "midi_filename": str(GMD / r["midi_filename"])} for r in rows]
    listed.append({**rows[0], "midi_filename": "drummer99/session1/1_funk_90_beat_4-4.mid"})
    with open(tmp_path / "info.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(listed)
    dataset = load_gmd(tmp_path)
    assert [r.path for r in dataset.records] == [GMD / r["midi_filename"] for r in rows]
    assert dataset.skipped == [(tmp_path / "drummer99/session1/1_funk_90_beat_4-4.mid",
                                "listed in info.csv but missing")]


# ---------------------------------------------------------------------------------------------
# load_folder

def test_load_folder_styles_and_skips(tmp_path):
    root = tmp_path / "mine"
    make_midi(root / "dilla" / "a.mid")
    make_midi(root / "dilla" / "B.MID")
    make_midi(root / "dilla" / "sub" / "deep.mid")
    make_midi(root / "dilla" / "fill_intro.mid")
    make_midi(root / "Neo Soul" / "c.midi")
    make_midi(root / "jdilla_001.mid")
    make_midi(root / "Boom-Bap 02.mid")
    make_midi(root / "groove.mid")  # no style: neither folder nor prefix
    (root / "notes.txt").write_text("not midi")
    (root / "dilla" / "cover.png").write_bytes(b"\x89PNG")
    (root / ".DS_Store").write_bytes(b"\0")

    dataset = load_folder(root)
    styles = {r.path.relative_to(root).as_posix(): r.style for r in dataset.records}
    assert styles == {"dilla/a.mid": "dilla", "dilla/B.MID": "dilla",
                      "dilla/sub/deep.mid": "dilla", "dilla/fill_intro.mid": "dilla",
                      "Neo Soul/c.midi": "neo_soul", "jdilla_001.mid": "jdilla",
                      "Boom-Bap 02.mid": "boom"}
    assert [r.path.name for r in dataset.records if r.fill] == ["fill_intro.mid"]
    skipped = {p.relative_to(root).as_posix(): why for p, why in dataset.skipped}
    assert skipped.keys() == {"groove.mid", "notes.txt", "dilla/cover.png"}
    assert skipped["groove.mid"].startswith("no style")
    assert skipped["notes.txt"] == skipped["dilla/cover.png"] == "not a .mid or .midi file"
    assert load(root).records == dataset.records  # no info.csv: a user folder


def test_load_folder_split_is_deterministic_and_stable(tmp_path):
    root = tmp_path / "many"
    for i in range(200):
        (root / f"style{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / f"style{i % 4}" / f"take_{i:03d}.mid").write_bytes(b"MThd")  # not parsed here
    first = {r.path: r.split for r in load_folder(root).records}
    assert first == {r.path: r.split for r in load_folder(root).records}
    assert set(first.values()) == {"train", "validation"}
    assert 5 <= Counter(first.values())["validation"] <= 40  # about one in ten
    for i in range(200, 260):  # adding files moves no existing file between splits
        (root / "style0" / f"take_{i:03d}.mid").write_bytes(b"MThd")
    after = {r.path: r.split for r in load_folder(root).records}
    assert len(after) == 260 and all(after[p] == s for p, s in first.items())
    everything_validation = load_folder(root, validation_share=1.0)
    assert {r.split for r in everything_validation.records} == {"validation"}


def test_load_folder_without_labelled_midi(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    make_midi(tmp_path / "groove.mid")
    with pytest.raises(FileNotFoundError, match="no labelled MIDI files"):
        load_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no data folder"):
        load(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# read_patterns

def test_read_patterns_skips_bad_files_and_reads_the_rest(tmp_path):
    good = [make_midi(tmp_path / "funk" / f"good{i}.mid", bars=i + 1, seed=i) for i in range(2)]
    corrupt = tmp_path / "funk" / "corrupt.mid"
    corrupt.write_bytes(good[0].read_bytes()[:40])
    junk = tmp_path / "funk" / "junk.mid"
    junk.write_bytes(random.Random(0).randbytes(500))
    waltz = make_midi(tmp_path / "funk" / "waltz.mid", sig=(3, 4))
    records = [Record(p, "funk") for p in (corrupt, good[0], junk, waltz, good[1])]
    skipped, seen = [], []
    pairs = read_patterns(records, skipped, progress=seen.append)
    assert [r.path for r, _ in pairs] == good
    assert [p.bars for _, p in pairs] == [1, 2]
    assert seen == [1, 2, 3, 4, 5]
    reasons = dict(skipped)
    assert list(reasons) == [corrupt, junk, waltz]
    assert "corrupt MIDI data (truncated" in reasons[corrupt]
    assert "not a MIDI file" in reasons[junk]
    assert reasons[waltz] == "3/4: the model is trained on 4/4 only"
    assert len(read_patterns(records)) == 2  # no skip list: still no exception


# ---------------------------------------------------------------------------------------------
# windows and examples

def full(bars: int) -> Pattern:
    return Pattern([Hit(b, s, 0, 90) for b in range(bars) for s in (0, 8)], bars, 110)


def hit_bars(p: Pattern) -> set[int]:
    return {h.bar for h in p.hits}


def test_windows_of_a_long_pattern_step_by_stride():
    pattern = full(20)
    got = windows(pattern, bars=8, stride=4)
    assert [w.bars for w in got] == [8, 8, 8, 8]
    for start, window in zip(range(0, 13, 4), got, strict=True):
        assert window.hits == pattern.slice(start, start + 8).hits
    # a length that does not fit: the last window is shorter but nothing is left out
    got = windows(full(18), bars=8, stride=4)
    assert [w.bars for w in got] == [8, 8, 8, 6]


def test_windows_never_start_or_end_on_an_empty_bar():
    rng = random.Random(5)
    for _ in range(40):
        bars = rng.randint(1, 30)
        used = [b for b in range(bars) if rng.random() < 0.5]
        pattern = Pattern([Hit(b, 4, 1, 1 + b) for b in used], bars, 100)  # bars told apart
        got = windows(pattern)
        assert bool(got) == bool(used)
        for w in got:
            assert 1 <= w.bars <= 8 and {0, w.bars - 1} <= hit_bars(w)
            assert w.tempo == pattern.tempo
        covered = set()
        for w in got:  # each window is a slice of the pattern, trimmed
            start = w.hits[0].velocity - 1
            assert start + w.bars <= bars and pattern.slice(start, start + w.bars).hits == w.hits
            covered |= {start + b for b in hit_bars(w)}
        assert covered == set(used)


def test_windows_of_real_files(gmd):
    rows = gmd_rows("validation")
    long_row = next(r for r in rows if r["beat_type"] == "beat" and float(r["duration"]) > 60)
    pattern = Pattern.from_midi(gmd / long_row["midi_filename"])
    got = windows(pattern)
    assert pattern.bars > 16 and len(got) == len(range(0, pattern.bars - 8 + 4, 4)) >= 3
    assert all(w.bars <= 8 and {0, w.bars - 1} <= hit_bars(w) for w in got)

    fill = next(r for r in rows if r["beat_type"] == "fill"
                and Pattern.from_midi(gmd / r["midi_filename"]).bars == 1)
    one = Pattern.from_midi(gmd / fill["midi_filename"])
    got = windows(one)
    assert len(got) == 1 and got[0].hits == one.hits and got[0].bars == 1


def test_examples_end_with_eos_and_are_grammar_valid(small_gmd):
    tok = Tokenizer()
    dataset = load(small_gmd)
    records = [r for r in dataset.records if r.split == "validation"][:10]
    pairs = read_patterns(records)
    assert {r.fill for r, _ in pairs} == {True, False}
    styles = dataset.styles
    got = examples(pairs, tok, styles)
    expected = [(w.bars, [r.fill] * w.bars, styles.index(r.style))
                for r, p in pairs for w in windows(p)]
    expected += [(p.bars, fills, styles.index(r.style))
                 for r, p, fills in data_mod.fill_transitions(pairs)]  # groove-into-fill
    assert len(got) == len(expected) > len(pairs)
    for example, (bars, fills, style) in zip(got, expected, strict=True):
        assert example.tokens[0] == tok.bos and example.tokens[-1] == tok.eos
        assert tok.check(example.tokens, bars=bars) == []
        assert tok.fill_flags(example.tokens) == fills
        assert example.style == style


# ---------------------------------------------------------------------------------------------
# Fetching the dataset

def test_official_dataset_url_and_checksum():
    url = urlparse(constants.GMD_URL)
    assert (url.scheme, url.netloc) == ("https", "storage.googleapis.com")
    assert url.path.endswith("/groove-v1.0.0-midionly.zip")
    assert re.fullmatch(r"[0-9a-f]{64}", constants.GMD_SHA256)
    assert fetch_gmd.__defaults__[:2] == (constants.GMD_URL, constants.GMD_SHA256)


@pytest.fixture
def gmd_zip(tmp_path) -> tuple[Path, str]:
    """A GMD-shaped zip (groove/ with info.csv, LICENSE and two MIDI files) and its SHA-256."""
    src = tmp_path / "src" / "groove"
    files = [("drummer1/session1/1_funk_100_beat_4-4.mid", "funk", "beat", "train"),
             ("drummer1/session1/2_rock-indie_120_fill_4-4.mid", "rock/indie", "fill",
              "validation")]
    rows = []
    for i, (name, style, kind, split) in enumerate(files):
        make_midi(src / name, bars=2, seed=i)
        rows.append({"drummer": "drummer1", "session": "drummer1/session1", "id": str(i),
                     "style": style, "bpm": "100", "beat_type": kind, "time_signature": "4-4",
                     "midi_filename": name, "audio_filename": "", "duration": "4.8",
                     "split": split})
    with open(src / "info.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INFO_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (src / "LICENSE").write_text("CC BY 4.0")
    archive = tmp_path / "groove-test.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(src.rglob("*")):
            z.write(path, path.relative_to(src.parent).as_posix())
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_fetch_unpacks_and_is_then_a_no_op(gmd_zip, tmp_path):
    archive, digest = gmd_zip
    dest = tmp_path / "data" / "groove"
    folder = fetch_gmd(dest, url=archive.as_uri(), sha256=digest)
    assert folder == dest and (folder / "info.csv").is_file()
    src = archive.parent / "src" / "groove"
    assert listing(folder) == listing(src)
    for name in listing(src):
        assert (src / name).is_dir() or (folder / name).read_bytes() == (src / name).read_bytes()
    assert listing(dest.parent) == ["groove"] + [f"groove/{n}" for n in listing(src)]
    dataset = load(folder)
    assert sorted((r.style, r.split, r.fill) for r in dataset.records) == [
        ("funk", "train", False), ("rock", "validation", True)]
    assert len(read_patterns(dataset.records)) == 2
    # a second call finds the dataset and downloads nothing (the zip is gone)
    archive.unlink()
    stamp = (folder / "info.csv").stat().st_mtime_ns
    assert fetch_gmd(dest, url=archive.as_uri(), sha256=digest) == folder
    assert (folder / "info.csv").stat().st_mtime_ns == stamp


def test_fetch_with_a_wrong_checksum_leaves_nothing(gmd_zip, tmp_path):
    archive, digest = gmd_zip
    parent = tmp_path / "fresh"
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(ArchiveError, match=f"checksum mismatch.*expected {wrong}, got {digest}"):
        fetch_gmd(parent / "groove", url=archive.as_uri(), sha256=wrong)
    assert listing(parent) == []


def test_fetch_of_an_archive_without_info_csv(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("stuff/readme.txt", "no dataset here")
    with pytest.raises(FileNotFoundError, match="holds no info.csv"):
        fetch_gmd(tmp_path / "out" / "groove", url=archive.as_uri(), sha256=sha256_of(archive))
    assert listing(tmp_path / "out") == []


def test_a_download_is_verified_and_readable_like_any_file(gmd_zip, tmp_path):
    archive, digest = gmd_zip
    got = download(archive.as_uri(), tmp_path / "dl" / "x.zip", digest)
    assert got.read_bytes() == archive.read_bytes()
    assert stat.S_IMODE(got.stat().st_mode) == 0o644  # not the 0600 of its temp file
    assert listing(tmp_path / "dl") == ["x.zip"]


def test_a_failed_download_leaks_no_file_or_descriptor(tmp_path):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for _ in range(5):
        with pytest.raises(ArchiveError, match="could not download"):
            download((tmp_path / "missing.zip").as_uri(), tmp_path / "dl" / "x.zip", None)
    assert open_fds() == before
    assert listing(tmp_path / "dl") == []


@pytest.mark.slow  # a CLI subprocess
def test_cli_fetch_end_to_end(gmd_zip, tmp_path):
    archive, digest = gmd_zip
    dest = tmp_path / "cli" / "groove"
    run = run_cli("data", "fetch", "--url", archive.as_uri(), "--sha256", digest,
                  "--dest", str(dest))
    assert run.returncode == 0, run.stderr
    assert f"Groove MIDI Dataset ready at {dest}" in run.stdout
    assert (dest / "info.csv").is_file() and len(load(dest).records) == 2



def test_cli_fetch_reports_a_bad_checksum(gmd_zip, tmp_path, capsys):
    archive, _ = gmd_zip
    bad = tmp_path / "cli" / "bad"
    code = cli.main(["data", "fetch", "--url", archive.as_uri(), "--sha256", "ab" * 32,
                     "--dest", str(bad)])
    assert code == 2 and "drumgen: error: checksum mismatch" in capsys.readouterr().err
    assert listing(tmp_path / "cli") == []


def test_cli_fetch_defaults_to_where_data_is_looked_for(gmd_zip, tmp_path, monkeypatch,
                                                       capsys):
    """Without --dest, fetch uses $DRUMGEN_DATA (else ../shared/data/groove), the folder the
    other commands read, and never a folder inside the current directory."""
    archive, digest = gmd_zip
    target = tmp_path / "env" / "groove"
    monkeypatch.setenv(data_mod.ENV_VAR, str(target))
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(
        ["data", "fetch", "--url", archive.as_uri(), "--sha256", digest])
    args.func(args)
    assert (target / "info.csv").is_file()
    assert f"ready at {target}" in capsys.readouterr().out
    assert data_mod.default_data_dir() == target and len(load(target).records) == 2
    assert listing(tmp_path / "env") == ["groove"] + [f"groove/{n}" for n in listing(target)]
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------------------------------------
# safe_extract

def _zip(path: Path, entries: list) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                z.writestr(entry, b"payload")
            else:
                z.writestr(*entry)
    return path


def _symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("groove/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("entries, limits, message", [
    ([("ok.txt", "fine"), ("../evil.txt", "x")], {}, "points outside the archive"),
    ([("ok.txt", "fine"), ("a/../../evil.txt", "x")], {}, "points outside the archive"),
    ([("ok.txt", "fine"), (zipfile.ZipInfo("/etc/evil.txt"), None)], {}, "absolute path"),
    ([("ok.txt", "fine"), (zipfile.ZipInfo("C:/evil.txt"), None)], {}, "absolute path"),
    ([("ok.txt", "fine"), _symlink()], {}, "is a symbolic link"),
    ([(f"f{i}.txt", "x") for i in range(6)], {"max_entries": 5}, "6 entries; the limit is 5"),
    ([(f"f{i}.txt", "y" * 1000) for i in range(3)], {"max_bytes": 2500},
     "unpacks to 3,000 bytes; the limit is 2,500"),
], ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink", "entries", "bytes"])
def test_safe_extract_refuses_and_writes_nothing(tmp_path, entries, limits, message):
    entries = [e if not isinstance(e, tuple) or e[1] is not None else e[0] for e in entries]
    archive = _zip(tmp_path / "bad.zip", entries)
    dest = tmp_path / "out"
    with pytest.raises(ArchiveError, match=message):
        safe_extract(archive, dest, **limits)
    assert not dest.exists() and listing(tmp_path) == ["bad.zip"]


def test_safe_extract_refuses_too_many_entries_by_default(tmp_path):
    archive = _zip(tmp_path / "many.zip", [(f"f{i}", "") for i in range(MAX_ZIP_ENTRIES + 1)])
    with pytest.raises(ArchiveError, match=f"{MAX_ZIP_ENTRIES + 1:,} entries"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_refuses_a_zip_bomb(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("groove/info.csv", "a,b\n")
        with z.open("groove/zeros.bin", "w") as f:
            for _ in range(50):
                f.write(bytes(1 << 20))  # 50 MB of zeros, about 50 KB packed
    with pytest.raises(ArchiveError, match="52,428,800 bytes from .*likely zip bomb"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_refuses_corrupt_and_non_zip_files(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(random.Random(2).randbytes(4096))
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    for bad in (junk, empty, tmp_path / "missing.zip"):
        with pytest.raises(ArchiveError, match="not a readable zip file"):
            safe_extract(bad, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    # a readable directory over damaged data: refused, and what was unpacked is removed
    good = _zip(tmp_path / "good.zip", [("a/first.txt", "intact"), ("a/second.txt", "z" * 5000)])
    data = bytearray(good.read_bytes())
    at = data.index(b"a/second.txt") + len(b"a/second.txt") + 2
    data[at:at + 8] = b"\xff" * 8
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="corrupt zip entry 'a/second.txt'"):
        safe_extract(damaged, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_unpacks_a_good_zip(tmp_path):
    archive = _zip(tmp_path / "good.zip", [("g/info.csv", "x,y\n"), ("g/d/s/1.mid", b"MThd"),
                                           ("g/empty/", "")])
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "g" / "info.csv").read_text() == "x,y\n"
    assert (dest / "g" / "d" / "s" / "1.mid").read_bytes() == b"MThd"
    with pytest.raises(FileExistsError):  # never unpacks over an existing folder
        safe_extract(archive, dest)


# ---------------------------------------------------------------------------------------------
# python -m drumgen data stats

@pytest.mark.slow  # a CLI subprocess
def test_cli_stats_on_a_gmd_folder(small_gmd):
    with open(small_gmd / "info.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    usable = [r for r in rows if r["time_signature"] == "4-4"]
    run = run_cli("data", "stats", str(small_gmd))
    assert run.returncode == 0, run.stderr
    out = run.stdout
    patterns = [Pattern.from_midi(r["midi_filename"]) for r in usable]
    bars = sum(p.bars for p in patterns)
    hits = sum(len(p.hits) for p in patterns)
    assert out.splitlines()[0] == (f"{len(usable)} files read, {len(rows) - len(usable)} "
                                   f"skipped, {bars:,} bars")
    for style, n in Counter(r["style"].split("/")[0] for r in usable).items():
        assert re.search(rf"^  {style}\s+{n} files$", out, re.M), (style, n)
    found = re.search(r"^hits per bar: mean ([\d.]+), median ([\d.]+), p90 ([\d.]+)$", out, re.M)
    assert found and float(found[1]) == pytest.approx(hits / bars, abs=0.051)
    assert float(found[2]) <= float(found[3])
    found = re.search(r"^tokens per bar: median ([\d.]+), p95 ([\d.]+), max (\d+)$", out, re.M)
    assert found and 1 < float(found[1]) < 45 and float(found[1]) <= float(found[2])
    skips = [line for line in out.splitlines() if line.startswith("skipped ")]
    assert len(skips) == len(rows) - len(usable)


@pytest.mark.slow  # a CLI subprocess
def test_cli_stats_lists_skipped_files_of_a_user_folder(gmd, tmp_path):
    root = tmp_path / "user"
    funk = [r for r in gmd_rows("validation") if r["style"] == "funk"][:2]
    for r in funk:  # a temporary copy of two GMD files, outside the repository
        (root / "funk").mkdir(parents=True, exist_ok=True)
        (root / "funk" / Path(r["midi_filename"]).name).write_bytes(
            (gmd / r["midi_filename"]).read_bytes())
    make_midi(root / "lofi" / "take1.mid", bars=4)
    broken = root / "lofi" / "broken.mid"
    broken.write_bytes(b"MThd\0\0\0\6\0\0\0\1\1\xe0MTrk\0\0\1\0\x00\x99")
    (root / "lofi" / "notes.txt").write_text("hi")
    run = run_cli("data", "stats", str(root))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("3 files read, 2 skipped, ")
    assert re.search(r"^  funk\s+2 files$", run.stdout, re.M)
    assert re.search(r"^  lofi\s+1 files$", run.stdout, re.M)
    assert f"skipped {broken}: broken.mid: corrupt MIDI data (truncated" in run.stdout
    assert f"skipped {root / 'lofi' / 'notes.txt'}: not a .mid or .midi file" in lines


def test_fill_transitions_join_a_beat_to_its_sessions_fill(gmd):
    """Groove-into-fill examples: the last bars of a beat, then a fill by the same drummer in
    the same session, style and tempo, marked BAR ... FILL and grammar-valid."""
    from drumgen.tokenizer import Tokenizer
    dataset = data_mod.load_gmd(gmd)
    session = [r for r in dataset.records if r.path.parent.name == "session1"
               and r.drummer == "drummer1" and r.style == "funk" and r.bpm == 95]
    assert any(r.fill for r in session) and any(not r.fill for r in session)
    pairs = data_mod.read_patterns(session)
    joined = data_mod.fill_transitions(pairs)
    assert len(joined) == sum(r.fill for r, _ in pairs)
    tok = Tokenizer()
    for record, pattern, fills in joined:
        assert record.fill and fills[0] is False and fills[-1] is True
        assert fills.index(True) == data_mod.TRANSITION_BARS
        ids = tok.encode(pattern, fills=fills) + [tok.eos]
        assert tok.check(ids) == []
        assert tok.fill_flags(ids) == fills
    styles = sorted({r.style for r, _ in pairs})
    assert len(data_mod.examples(pairs, tok, styles)) > len(joined)
