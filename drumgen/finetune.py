"""Fine-tuning on a user's MIDI, as the Train tab runs it: the CPU defaults, what the data is
likely to give (before and after training), and the new model's card.

The training itself is `drumgen.train.train`; this module only chooses its settings and
describes its inputs and results in words.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .pattern import atomic_write_bytes
from .schema import PARAMS

if TYPE_CHECKING:  # drumgen.train imports torch, which the app's page must not wait for
    from .train import TrainConfig

#: Fine-tuning the model selected in the Generate tab (the Train tab's and /train's default),
#: chosen by measurement on the 2-core CPU: bench/finetune.py, README "Fine-tuning on a CPU".
FINETUNE_MINUTES = 5.0
#: What fine-tuning trains (`TrainConfig.train_only`): "style", only the style embeddings,
#: learnt the bench's new style better than every weight did (validation loss 2.025 against
#: 2.126, 0.56 of its grooves called hip-hop against 0.44) and cannot move the old styles;
#: "all" trains every weight, at its own learning rate.
FINETUNE_TRAIN = "style"
FINETUNE_LR = 3e-3  # style embeddings only: the one value tried, not swept
FINETUNE_ALL_LR = 1e-4  # every weight: the best of 1e-3, 3e-4 and 1e-4 (batch 16 and 8)
FINETUNE_BATCH = 16
#: Fine-tuning stops after this many validations (epochs) without a better validation loss: a
#: small zip is learnt in a few epochs and then memorised (the best epoch's model is kept).
FINETUNE_PATIENCE = 4
#: Training from scratch (the advanced choice): the shipped model's first-stage recipe.
SCRATCH_LR = 1e-3
SCRATCH_BATCH = 16
SCRATCH_PRESETS = ("debug", "small")
#: What the Train tab and /train accept: name -> (lowest, highest). An epoch count or a
#: budget of 0 means "no limit" (one of them must be set).
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    key: (PARAMS[key].lo, PARAMS[key].hi) for key in ("epochs", "time_budget", "lr",
                                                      "batch_size")}  # drumgen.schema's

#: Small-data guidance per style, in training files and bars (bench/finetune.py, README).
#: The smallest zip measured to give a usable style held 10 training files, 310 bars. One file
#: of 23 bars (one example, no validation file), every weight fine-tuned for 2 minutes,
#: reached a loss of 0.022 on itself: memorised; the style embeddings alone stopped early at
#: 1.646, a style near hip-hop. FEW_BARS and 3 files are a rule of thumb between the two.
FEW_BARS = 100
ENOUGH_BARS = 300
ENOUGH_FILES = 10


TRAIN_ONLY = ("style", "all")


def config(scratch: bool = False, time_budget: float | None = FINETUNE_MINUTES,
           epochs: float | None = None, lr: float | None = None,
           batch_size: int | None = None, preset: str = "small",
           train_only: str = FINETUNE_TRAIN) -> TrainConfig:
    """The config the Train tab runs: the fine-tuning defaults, or from scratch with
    `scratch` (every weight); None takes the default. No periodic checkpoints: a run takes
    minutes."""
    train_only = "all" if scratch else train_only
    default_lr = SCRATCH_LR if scratch else (
        FINETUNE_LR if train_only == "style" else FINETUNE_ALL_LR)
    from .train import TrainConfig  # torch: imported when a run is set up, not with the app
    return TrainConfig(preset=preset, epochs=epochs, time_budget=time_budget,
                       lr=lr or default_lr,
                       batch_size=batch_size or (SCRATCH_BATCH if scratch else FINETUNE_BATCH),
                       patience=0 if scratch else FINETUNE_PATIENCE, checkpoint_every=10**9,
                       train_only=train_only)


def data_lines(report: dict) -> list[str]:
    """Each style's files, bars and examples, one line a style (`train`'s `data` report)."""
    same = " (training files: none went to validation)" if report["validation_is_training"] \
        else ""
    return [f"`{style}`: {r['train_files']} files, {r['train_bars']} bars, "
            f"{r['train_examples']} examples to train on; {r['val_files']} files, "
            f"{r['val_bars']} bars, {r['val_examples']} examples to validate on{same}"
            for style, r in report["styles"].items()]


def data_warnings(report: dict) -> list[str]:
    """What the data is likely to give, said before training."""
    out = []
    for style, r in report["styles"].items():
        if r["train_bars"] < FEW_BARS or r["train_files"] < 3:
            out.append(f"`{style}` has very little to learn from ({r['train_files']} files, "
                       f"{r['train_bars']} bars): fine-tuning every weight on it memorises "
                       "it, to replay these grooves nearly note for note; the style "
                       "embeddings alone can only place it near a style the model knows.")
        elif r["train_bars"] < ENOUGH_BARS or r["train_files"] < ENOUGH_FILES:
            out.append(f"`{style}` is small ({r['train_files']} files, {r['train_bars']} "
                       "bars): expect its feel, in variations close to these files.")
    if out:
        out.append(f"A style takes about {ENOUGH_FILES} files and {ENOUGH_BARS}+ bars, from "
                   "several songs or sessions.")
    if report["validation_is_training"]:
        out.append("No file went to validation (one in ten does, chosen by its name), so the "
                   "validation loss is measured on a training file: it shows how well the "
                   "model memorised, not how well it plays new grooves. Add files.")
    return out


def result_warnings(summary: dict) -> list[str]:
    """What the run's losses say about the model, said after training."""
    out, best = [], summary["best_val"]
    history = summary.get("history") or []
    best_step = _best_step(summary)
    if summary["data"]["validation_is_training"]:
        out.append(f"The validation loss {best:.3f} is on a file it trained on"
                   + (": it memorised the file." if best < 1 else "."))
    elif best_step is not None and best_step < history[-1]["step"]:
        out.append(f"The validation loss was lowest at step {best_step} and rose after it, "
                   "as the model began memorising its files; the model of that step was kept"
                   + (", and training stopped early" if summary["reason"] == "early stopping"
                      else "") + ". More files would help more than more minutes.")
    train_loss = summary.get("train_loss", math.nan)
    if not summary["data"]["validation_is_training"] and train_loss < 0.6 * best:
        out.append(f"Its training loss ({train_loss:.3f}) is far under its validation loss "
                   f"({best:.3f}): it plays its training files better than new ones.")
    return out


def _best_step(summary: dict) -> int | None:
    """The step of the kept (lowest) validation loss, from the run's history."""
    return next((h["step"] for h in summary.get("history") or []
                 if h["val_loss"] == summary["best_val"]), None)


def write_card(folder: Path, name: str, base: str | None, cfg: TrainConfig,
               summary: dict) -> Path:
    """The model folder's README.md: base model, data, settings, steps, validation loss."""
    best = summary["best_val"]
    best_step = _best_step(summary) or summary["step"]
    what = ("only the style embeddings were trained, so the old styles play as in the base"
            if cfg.train_only == "style" else "every weight was trained")
    origin = (f"fine-tuned from `{base}` (its styles kept; each new style's embedding started "
              f"at the mean of the old ones; {what})" if base else
              f"trained from scratch (preset `{cfg.preset}`)")
    rows = ["| style | files (train / validation) | bars (train / validation) | "
            "examples (train / validation) |", "|---|---|---|---|"]
    rows += [f"| {s} | {r['train_files']} / {r['val_files']} | {r['train_bars']} / "
             f"{r['val_bars']} | {r['train_examples']} / {r['val_examples']} |"
             for s, r in summary["data"]["styles"].items()]
    warnings = data_warnings(summary["data"]) + result_warnings(summary)
    if base and cfg.train_only == "all":
        warnings.append(f"Every weight was fine-tuned, so the styles it had from `{base}` may "
                        f"play differently here (after a 10-file hip-hop fine-tune, soul grooves "
                        f"were called soul about half as often); for them, `{base}` itself is "
                        f"unchanged.")
    limit = lambda v, unit: f"{v:g} {unit}" if v else "no limit"  # noqa: E731
    text = "\n".join([
        f"# {name}", "",
        f"A drumgen model, {origin}, in the Train tab on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        "## Data", "", *rows, "",
        *(["## Warnings", "", *[f"- {w}" for w in warnings], ""] if warnings else []),
        "## Training", "",
        f"- settings: learning rate {cfg.lr:g}, batch {cfg.batch_size}, time budget "
        f"{limit(cfg.time_budget, 'min')}, epochs {limit(cfg.epochs, '')}".rstrip()
        + f", seed {cfg.seed}" + (f", stop after {cfg.patience} epochs without a better "
                                  "validation loss" if cfg.patience else ""),
        f"- steps: {summary['step']} "
        f"({summary['step'] / max(1, summary['steps_per_epoch']):.1f} epochs), "
        f"{summary['seconds'] / 60:.1f} min at {summary['tokens_per_s']:.0f} tokens/s; "
        f"ended: {summary['reason']}",
        f"- validation loss: {best:.4f} nats/token at step {best_step} (the weights kept); "
        f"training loss at the end {summary.get('train_loss', math.nan):.4f}", "",
        f"Generate with it: the Generate tab's model `{name}`, or `client.predict(model="
        f"\"{name}\", style=\"{next(iter(summary['data']['styles']), 'funk')}\", "
        "api_name=\"/generate\")`.", ""])
    path = folder / "README.md"
    atomic_write_bytes(path, text.encode())
    return path
