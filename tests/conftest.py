"""Shared fixtures. Tests that need the Groove MIDI Dataset find it where drumgen does
(`--data`, $DRUMGEN_DATA, ../shared/data/groove, then the cache `python -m drumgen data fetch`
fills) and are skipped, with one reason, where none has it. Everything else uses the shipped
model in models/, synthetic patterns and MIDI files built here, or MIDI that LilyPond and
abc2midi write. Nothing is ever copied from the dataset into the repository."""

from __future__ import annotations

import csv
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from drumgen.data import default_data_dir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "drumgen-small"
GMD: Path | None = None  # set from --data / the search order when the session starts
NO_GMD = ("the Groove MIDI Dataset is not here (looked in --data, $DRUMGEN_DATA, "
          "../shared/data/groove and the cache): get it with `python -m drumgen data fetch`, "
          "or pass --data DIR")


def pytest_addoption(parser):
    parser.addoption("--data", default=None, help="the Groove MIDI Dataset folder (info.csv)")


def pytest_configure(config):
    global GMD
    given = config.getoption("--data")
    if given:
        os.environ["DRUMGEN_DATA"] = str(Path(given).resolve())
    found = default_data_dir()
    GMD = found if found and (found / "info.csv").is_file() else None


def pytest_terminal_summary(terminalreporter):
    """Skipped tests as one line per reason (the GMD line says how to get the data)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        terminalreporter.write_line(f"SKIPPED {count} test(s): {reason}")


def pytest_report_header(config):
    return f"GMD: {GMD}" if GMD else f"GMD: none, so its tests are skipped: {NO_GMD}"


@pytest.fixture(scope="session")
def gmd() -> Path:
    if GMD is None:
        pytest.skip(NO_GMD)
    return GMD


def gmd_rows(split: str | None = None) -> list[dict]:
    if GMD is None:
        return []
    with open(GMD / "info.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if split is None or r["split"] == split]


def gmd_params(values: list) -> list:
    """Parameters built from GMD at collection time, or one skipped case without it."""
    return values if GMD is not None else [pytest.param(None, marks=pytest.mark.skip(NO_GMD))]


@pytest.fixture(scope="session")
def small_gmd(tmp_path_factory, gmd) -> Path:
    """A GMD-shaped folder: an info.csv listing 48 real files by absolute path (train and
    validation, beats and fills, four styles), so loaders run on real data in seconds."""
    rows, seen = [], {}
    for row in gmd_rows():
        style = row["style"].split("/")[0]
        key = (style, row["split"], row["beat_type"])
        if style in ("funk", "rock", "jazz", "hiphop") and seen.get(key, 0) < 6:
            seen[key] = seen.get(key, 0) + 1
            rows.append({**row, "midi_filename": str(gmd / row["midi_filename"])})
    folder = tmp_path_factory.mktemp("small_gmd")
    with open(folder / "info.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def synthetic_groove(style: str, seed: int, bars: int = 8):
    """A procedurally played groove: a style's kick, snare and cymbal template with random
    ghost notes, velocities and microtiming (for tests that need MIDI, not GMD)."""
    import random

    from drumgen.pattern import Hit, Pattern
    rng = random.Random(f"{style}-{seed}")
    kick, snare, cymbal, step = {
        "funk": ((0, 3, 10), (4, 12), 2, 1), "rock": ((0, 8, 10), (4, 12), 2, 2),
        "jazz": ((0,), (7, 15), 8, 3)}[style]
    hits = []
    for b in range(bars):
        for s in range(0, 16, step):
            hits.append(Hit(b, s, cymbal, rng.randint(40, 100), rng.uniform(-0.2, 0.2)))
        hits += [Hit(b, s, 0, rng.randint(90, 127), rng.uniform(-0.1, 0.1)) for s in kick]
        hits += [Hit(b, s, 1, rng.randint(95, 127), rng.uniform(-0.1, 0.15)) for s in snare]
        hits += [Hit(b, s, 1, rng.randint(20, 50), 0.0) for s in rng.sample(range(16), 2)]
    return Pattern(hits, bars, rng.choice([84, 96, 110, 124]))


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> Path:
    """A user-style training folder (funk/, rock/, jazz/) of synthetic MIDI files: the
    trainer's tests run on it in seconds, with or without GMD."""
    folder = tmp_path_factory.mktemp("train_data")
    for style in ("funk", "rock", "jazz"):
        for i in range(12):
            synthetic_groove(style, i).save(folder / style / f"{style}_{i}.mid")
    return folder


@pytest.fixture(scope="session")
def debug_model(tmp_path_factory, train_data) -> Path:
    """A debug-preset model trained for a few dozen steps on `train_data`."""
    from drumgen.train import TrainConfig, train
    out = tmp_path_factory.mktemp("debug_model")
    train(TrainConfig(preset="debug", epochs=2, batch_size=8, checkpoint_every=1000,
                      warmup_steps=5), train_data, out)
    return out


@pytest.fixture(scope="session")
def shipped() -> Path:
    assert (SHIPPED / "model.safetensors").is_file(), "the shipped model is missing"
    return SHIPPED


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """The real app.py, one process for the whole session (tests/apputil.py)."""
    import apputil
    with apputil.shared_app(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def client(app):
    """A gradio_client for `app`, downloading into the app's downloads/ folder."""
    return app.client()
