"""Shared fixtures. Tests read the Groove MIDI Dataset from ../shared/data/groove (never a
copy in the repository) and use the shipped model in models/ or a debug model trained here."""

from __future__ import annotations

import csv
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GMD = Path(os.environ.get("DRUMGEN_DATA", ROOT.parent / "shared" / "data" / "groove"))
SHIPPED = ROOT / "models" / "drumgen-small"


@pytest.fixture(scope="session")
def gmd() -> Path:
    assert (GMD / "info.csv").is_file(), f"the Groove MIDI Dataset is expected at {GMD}"
    return GMD


def gmd_rows(split: str | None = None) -> list[dict]:
    with open(GMD / "info.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if split is None or r["split"] == split]


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


@pytest.fixture(scope="session")
def debug_model(tmp_path_factory, small_gmd) -> Path:
    """A debug-preset model trained for a few dozen steps on `small_gmd`."""
    from drumgen.train import TrainConfig, train
    out = tmp_path_factory.mktemp("debug_model")
    train(TrainConfig(preset="debug", epochs=2, batch_size=8, checkpoint_every=1000,
                      warmup_steps=5), small_gmd, out)
    return out


@pytest.fixture(scope="session")
def shipped() -> Path:
    assert (SHIPPED / "model.safetensors").is_file(), "the shipped model is missing"
    return SHIPPED
