"""Data: the Groove MIDI Dataset, a user's folder of MIDI, and training windows."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .archive import download, safe_extract
from .constants import GMD_SHA256, GMD_URL
from .pattern import Hit, MidiError, Pattern
from .tokenizer import Tokenizer

ENV_VAR = "DRUMGEN_DATA"
DEFAULT_GMD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "groove"
WINDOW_BARS = 8  # bars in a training example; 8 bars is about 270 tokens
WINDOW_STRIDE = 4
TRANSITION_BARS = 3  # beat bars before a fill in a groove-into-fill example


@dataclass(frozen=True)
class Record:
    """One MIDI file with its labels."""

    path: Path
    style: str
    split: str = "train"  # train, validation or test
    fill: bool = False  # GMD's beat_type == "fill"
    bpm: float | None = None
    drummer: str = ""


@dataclass
class Dataset:
    records: list[Record]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def styles(self) -> list[str]:
        return sorted({r.style for r in self.records})

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]


#: Where `python -m drumgen data fetch` puts GMD when no place is named (outside the checkout,
#: where the dataset could be committed by mistake).
CACHE_GMD = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drumgen" / "groove"


def default_data_dir() -> Path | None:
    """Where GMD is, looked for in order: $DRUMGEN_DATA; ../shared/data/groove beside the
    checkout; the cache `data fetch` fills (CACHE_GMD). None if none has it."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    for place in (DEFAULT_GMD, CACHE_GMD):
        if (place / "info.csv").is_file():
            return place
    return None


def load(root: str | os.PathLike) -> Dataset:
    """GMD (a folder with info.csv) or a user's folder of MIDI files."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no data folder at {root}")
    return load_gmd(root) if (root / "info.csv").is_file() else load_folder(root)


def load_gmd(root: Path) -> Dataset:
    records, skipped = [], []
    with open(root / "info.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / row["midi_filename"]
            if not path.is_file():
                skipped.append((path, "listed in info.csv but missing"))
                continue
            records.append(Record(path, row["style"].split("/")[0].lower(), row["split"],
                                  row["beat_type"] == "fill", float(row["bpm"]), row["drummer"]))
    return Dataset(records, skipped)


def style_name(text: str) -> str:
    """A folder or prefix as a style name: lower case, words joined by `_`."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def load_folder(root: Path, validation_share: float = 0.1) -> Dataset:
    """MIDI files under `root`, styled by their subfolder (`mydata/dilla/x.mid`) or, at the top
    level, by their filename prefix (`jdilla_001.mid`). One file in ten goes to validation, by a
    hash of its path, so the split is stable when files are added."""
    records, skipped = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in (".mid", ".midi"):
            skipped.append((path, "not a .mid or .midi file"))
            continue
        rel = path.relative_to(root)
        label = rel.parts[0] if len(rel.parts) > 1 else re.split(r"[_\-\s]", path.stem)[0]
        style = style_name(label)
        if not style or (len(rel.parts) == 1 and style == style_name(path.stem)):
            skipped.append((path, "no style: put it in a style folder or name it style_name.mid"))
            continue
        digest = int(hashlib.sha1(str(rel).encode()).hexdigest(), 16) % 1000
        split = "validation" if digest < validation_share * 1000 else "train"
        records.append(Record(path, style, split, "fill" in path.stem.lower()))
    if not records:
        raise FileNotFoundError(f"no labelled MIDI files under {root}")
    return Dataset(records, skipped)


def read_patterns(records: Iterable[Record], skipped: list[tuple[Path, str]] | None = None,
                  progress: Callable[[int], None] | None = None) -> list[tuple[Record, Pattern]]:
    """Parse each record's MIDI; a file that fails is appended to `skipped` with its reason."""
    out = []
    for i, record in enumerate(records):
        try:
            pattern = Pattern.from_midi(record.path)
            if pattern.time_signature != (4, 4):
                raise MidiError(f"{pattern.time_signature[0]}/{pattern.time_signature[1]}: "
                                "the model is trained on 4/4 only")
            out.append((record, pattern))
        except MidiError as exc:
            if skipped is not None:
                skipped.append((record.path, str(exc)))
        if progress:
            progress(i + 1)
    return out


def windows(pattern: Pattern, bars: int = WINDOW_BARS,
            stride: int = WINDOW_STRIDE) -> list[Pattern]:
    """`bars`-bar slices every `stride` bars; a shorter pattern is one window. Bars without a
    hit at either end of a slice are trimmed, so no example teaches empty bars."""
    starts = range(0, max(1, pattern.bars - bars + stride), stride)
    out = []
    for start in starts:
        window = pattern.slice(start, min(start + bars, pattern.bars))
        used = sorted({h.bar for h in window.hits})
        if not used:
            continue
        out.append(window.slice(used[0], used[-1] + 1) if used[0] or
                   used[-1] < window.bars - 1 else window)
    return out


@dataclass
class Example:
    tokens: list[int]
    style: int
    loss_from: int = 0  # tokens before this index are context only: no loss on them


#: Tokens of the Groove task (`groove_examples`): GROOVE opens the quantized pattern, PLAY
#: opens the drummer's performance of it. Appended to a model's vocabulary when it learns the
#: task (`Tokenizer.extended`).
GROOVE_TOKENS = ("GROOVE", "PLAY")
GROOVE_BARS = 4  # bars of one Groove example: prefix and performance fit the context twice
GROOVE_INPUT_VELOCITY = 90  # the velocity of a typed, quantized pattern (bench/edit.py too)


def quantize(pattern: Pattern, velocity: int = GROOVE_INPUT_VELOCITY) -> Pattern:
    """`pattern` as a user would type it: every hit on the grid at one velocity."""
    hits = sorted({Hit(h.bar, h.step, h.drum, velocity, 0.0) for h in pattern.hits})
    return Pattern(hits, pattern.bars, pattern.tempo, pattern.time_signature)


def groove_prompt(tok: Tokenizer, pattern: Pattern) -> list[int]:
    """GROOVE, the quantized bars of `pattern`, PLAY: what the Groove task reads before it
    plays the pattern."""
    body = tok.encode_bars(quantize(pattern), [False] * pattern.bars)
    return [tok.ids["GROOVE"], *body, tok.ids["PLAY"]]


def groove_examples(pairs: list[tuple[Record, Pattern]], tok: Tokenizer, styles: list[str],
                    stride: int = 2) -> list[Example]:
    """The Groove task (as GrooVAE's, Gillick et al. 2019): a drummer's window quantized and
    flattened, then the drummer's own performance of it, with the loss on the performance.
    Windows of GROOVE_BARS and of 2 bars, so shorter inputs are in the training set too."""
    index = {s: i for i, s in enumerate(styles)}
    out = []
    for record, pattern in pairs:
        for bars in (GROOVE_BARS, 2):
            for window in windows(pattern, bars, stride):
                head = tok.encode(window)[:3]
                prompt = head + groove_prompt(tok, window)
                body = tok.encode_bars(window, [False] * window.bars)
                out.append(Example(prompt + body + [tok.eos], index[record.style],
                                   loss_from=len(prompt)))
    return out


def examples(pairs: list[tuple[Record, Pattern]], tok: Tokenizer, styles: list[str],
             bars: int = WINDOW_BARS, stride: int = WINDOW_STRIDE) -> list[Example]:
    """Token sequences (with EOS) for every window, labelled with the style's index, plus
    groove-into-fill examples (see `fill_transitions`)."""
    index = {s: i for i, s in enumerate(styles)}
    out = []
    for record, pattern in pairs:
        for window in windows(pattern, bars, stride):
            out.append(Example(tok.encode(window, fills=record.fill) + [tok.eos],
                               index[record.style]))
    for record, pattern, fills in fill_transitions(pairs):
        out.append(Example(tok.encode(pattern, fills=fills) + [tok.eos], index[record.style]))
    return out


def fill_transitions(pairs: list[tuple[Record, Pattern]], context: int = TRANSITION_BARS,
                     max_fill_bars: int = 4) -> list[tuple[Record, Pattern, list[bool]]]:
    """Beat bars followed by a fill, as the app asks for them ("a fill in the last bar").

    GMD records fills as separate short files, so no window ever goes from BAR to FILL and a
    model never learns the turn. Each fill is joined to the last `context` bars of a beat
    played by the same drummer, in the same session, style and tempo."""
    beats: dict[tuple, list[Pattern]] = {}
    for record, pattern in pairs:
        if not record.fill and record.drummer:
            key = (record.drummer, record.path.parent, record.style, record.bpm)
            beats.setdefault(key, []).append(pattern)
    out = []
    for record, fill in pairs:
        key = (record.drummer, record.path.parent, record.style, record.bpm)
        if not record.fill or key not in beats:
            continue
        beat = max(beats[key], key=lambda p: p.bars)
        groove = next(iter(windows(beat.slice(max(0, beat.bars - context), beat.bars),
                                   context, context)), None)
        ending = next(iter(windows(fill.slice(0, min(fill.bars, max_fill_bars)),
                                   max_fill_bars, max_fill_bars)), None)
        if groove is None or ending is None:
            continue
        hits = groove.hits + [replace(h, bar=h.bar + groove.bars) for h in ending.hits]
        joined = Pattern(hits, groove.bars + ending.bars, beat.tempo, beat.time_signature)
        out.append((record, joined, [False] * groove.bars + [True] * ending.bars))
    return out


def fetch_gmd(dest: str | os.PathLike, url: str = GMD_URL, sha256: str = GMD_SHA256,
              progress: Callable[[int, int], None] | None = None) -> Path:
    """Download the GMD MIDI-only zip, verify it, and unpack it to `dest`; returns the folder
    holding info.csv: `dest` itself, as the zip's folder with info.csv (groove/) is unpacked
    as `dest`, so `dest` is what --data and $DRUMGEN_DATA name. Does nothing if `dest` already
    holds the dataset."""
    dest = Path(dest)
    found = _find_info(dest)
    if found:
        return found
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = download(url, Path(tmp) / "groove.zip", sha256, progress)
        found = _find_info(safe_extract(archive, Path(tmp) / "unpacked"))
        if not found:
            raise FileNotFoundError(f"the archive from {url} holds no info.csv")
        os.replace(found, dest)
    return dest


def _find_info(dest: Path) -> Path | None:
    if not dest.is_dir():
        return None
    hits = sorted(dest.glob("info.csv")) + sorted(dest.glob("*/info.csv"))
    return hits[0].parent if hits else None


def stats(root: str | os.PathLike, tok: Tokenizer | None = None) -> str:
    """A text report: files per style, bars, hits and tokens per bar, skipped files."""
    tok = tok or Tokenizer()
    data = load(root)
    skipped = list(data.skipped)
    pairs = read_patterns(data.records, skipped)
    by_style = Counter(r.style for r, _ in pairs)
    bars = sum(p.bars for _, p in pairs)
    hpb = [len(p.bar_hits(b)) for _, p in pairs for b in range(p.bars)]
    tpb = [len(tok.encode_bars(p.slice(b, b + 1), [False])) for _, p in pairs
           for b in range(p.bars)]
    # the same bars with one token per attribute: BAR, then POS and drum/velocity/shift per hit
    per_attr = [1 + len({h.step for h in p.bar_hits(b)}) + 3 * len(p.bar_hits(b))
                for _, p in pairs for b in range(p.bars)]
    lines = [f"{len(pairs)} files read, {len(skipped)} skipped, {bars:,} bars"]
    lines += [f"  {style:<14} {n:5d} files" for style, n in by_style.most_common()]
    if hpb:
        lines.append(f"hits per bar: mean {statistics.mean(hpb):.1f}, median "
                     f"{statistics.median(hpb):g}, p90 {_pct(hpb, 90):g}")
        lines.append(f"tokens per bar: median {statistics.median(tpb):g}, "
                     f"p95 {_pct(tpb, 95):g}, max {max(tpb)}")
        lines.append(f"  (one token per attribute would take: median "
                     f"{statistics.median(per_attr):g}, p95 {_pct(per_attr, 95):g})")
    lines += [f"skipped {path}: {why}" for path, why in skipped]
    return "\n".join(lines)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]
