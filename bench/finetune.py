"""Fine-tuning benchmark: a producer's style from a zip of MIDI, fine-tuned from the shipped
model against trained from scratch, for the same minutes on the same zip.

    python bench/finetune.py [--mode finetune|scratch|both] [--minutes 5] [--lr LR]
                             [--batch-size N] [--patience N] [--files 13] [--per-style 64]
                             [--out runs/bench-finetune]

The zip holds GMD hip-hop beats (training split) under a new style name, `dilla/`, as a
user would upload them; it is unpacked with the app's own checks and trained with the
Train tab's defaults unless told otherwise. For each model it reports the validation loss on
the zip's validation files and the style classifier's accuracy for the source style
(`drumgen.evaluate.source_style_accuracy`): how often generated `dilla` grooves are called
hip-hop, beside how often the zip's real grooves are (the classifier never saw those files).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drumgen import data as data_mod  # noqa: E402
from drumgen.archive import safe_extract  # noqa: E402
from drumgen.evaluate import source_style_accuracy  # noqa: E402
from drumgen.finetune import FINETUNE_TRAIN  # noqa: E402
from drumgen.finetune import config as finetune_config  # noqa: E402
from drumgen.generate import DEFAULT_MODEL  # noqa: E402
from drumgen.train import train  # noqa: E402

SOURCE, STYLE = "hiphop", "dilla"


def source_files(gmd: Path, count: int) -> list[Path]:
    """Every other GMD hip-hop beat of the training split, up to `count` (so the classifier
    keeps the rest of hip-hop to learn from)."""
    with open(gmd / "info.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["style"].split("/")[0] == SOURCE
                and r["beat_type"] == "beat" and r["split"] == "train"
                and r["time_signature"] == "4-4"]
    return [gmd / r["midi_filename"] for r in rows[::2][:count]]


def make_zip(path: Path, files: list[Path]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for f in files:
            z.write(f, f"{STYLE}/{f.parent.parent.name}_{f.parent.name}_{f.name}")
    return path


def measure(model: Path, data: Path, args, gmd: Path, files: list[Path],
            style: str = STYLE) -> dict:
    """The classifier's figures for `style` of `model` (and for --old-styles)."""
    patterns = [p for _, p in data_mod.read_patterns(data_mod.load(data).records)]
    also = tuple(s for s in args.old_styles.split(",") if s)
    return source_style_accuracy(model, style, SOURCE, gmd, patterns, set(files),
                                 per_style=args.per_style, also=also)


def run(mode: str, data: Path, out: Path, args, gmd: Path, files: list[Path]) -> dict:
    cfg = finetune_config(scratch=mode == "scratch", time_budget=args.minutes, lr=args.lr,
                          batch_size=args.batch_size, train_only=args.train_only)
    if args.patience is not None:
        cfg.patience = args.patience
    started = time.time()
    evals: list[float] = []
    summary = train(cfg, data, out, init_from=None if mode == "scratch" else DEFAULT_MODEL,
                    callback=lambda e: e["event"] == "eval" and evals.append(e["val_loss"]))
    train_s = time.time() - started
    acc = measure(out, data, args, gmd, files)
    return {"mode": mode, "train_only": cfg.train_only, "lr": cfg.lr, "batch_size": cfg.batch_size,
            "minutes": args.minutes, "patience": cfg.patience, "train_s": round(train_s),
            "steps": summary["step"], "reason": summary["reason"],
            "epochs": summary["epoch"], "best_val": summary["best_val"], "evals": evals,
            "tokens_per_s": summary["tokens_per_s"], **acc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="both", choices=["finetune", "scratch", "both"])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--train-only", default=FINETUNE_TRAIN, choices=["style", "all"],
                        help="what fine-tuning trains (default: the Train tab's)")
    parser.add_argument("--patience", type=int, default=None,
                        help="epochs without a better validation loss before stopping "
                             "(default: the Train tab's; 0 = never stop early)")
    parser.add_argument("--old-styles", default="",
                        help="comma-separated GMD styles to classify too (did they move?)")
    parser.add_argument("--shipped", action="store_true",
                        help="also measure the shipped model itself (--old-styles and hiphop)")
    parser.add_argument("--evaluate", type=Path, action="append", default=[],
                        help="measure this model folder (trained on the same zip) instead "
                             "of training; may repeat")
    parser.add_argument("--files", type=int, default=13)
    parser.add_argument("--per-style", type=int, default=64)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-finetune"))
    args = parser.parse_args()
    gmd = args.data or data_mod.default_data_dir()
    if gmd is None:
        raise SystemExit("no data: pass --data, set DRUMGEN_DATA or run "
                         "`python -m drumgen data fetch` (GMD with info.csv)")
    files = source_files(gmd, args.files)
    with tempfile.TemporaryDirectory() as tmp:
        data = safe_extract(make_zip(Path(tmp) / "dilla.zip", files), Path(tmp) / "data")
        dataset = data_mod.load(data)
        print(f"{len(files)} files: {sum(r.split == 'train' for r in dataset.records)} "
              f"training, {sum(r.split == 'validation' for r in dataset.records)} validation")
        if args.shipped:  # the shipped model's own hip-hop, beside the new style
            print(json.dumps({"mode": "shipped", **measure(DEFAULT_MODEL, data, args, gmd,
                                                           files, style=SOURCE)}))
        if args.evaluate:  # a model trained before: measure it, train nothing
            for folder in args.evaluate:
                print(json.dumps({"mode": str(folder), **measure(folder, data, args, gmd,
                                                                 files)}))
            return
        modes = ["finetune", "scratch"] if args.mode == "both" else [args.mode]
        for mode in modes:
            trained = args.train_only if mode == "finetune" else "all"
            tag = f"{mode}-{trained}-{args.minutes:g}min" + (
                f"-lr{args.lr:g}" if args.lr else "") + (
                f"-b{args.batch_size}" if args.batch_size else "") + (
                f"-p{args.patience}" if args.patience is not None else "") + (
                f"-{args.files}files" if args.files != 13 else "")
            result = run(mode, data, args.out / tag, args, gmd, files)
            print(json.dumps(result))


if __name__ == "__main__":
    main()
