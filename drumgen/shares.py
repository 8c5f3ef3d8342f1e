"""Drum-share calibration: per-style logit biases that make generated beats put onsets on each
16th step of the bar, and each drum on each step, as often as the training split's drummers.

The realism test (`realism.py`) is a linear classifier, so what tells generated windows from a
drummer's is mostly a shift in means: how many hits of each drum a bar carries, and how often
each drum plays each step (the onset grid). A model at its style strength
(`DrumGPT.style_vector`) plays the style's character louder than drummers do; this puts the
means back without touching the weights. Per style, `shares.json` holds one bias per step,
added to that step's POS token, and one per drum and step, added to that drum's HIT tokens
while the bar is at that step. They are fitted by generating at the model's own defaults and
moving each bias by the log of the ratio between the training split's rate and the generated
one, for FIT_ROUNDS rounds (`fit`). Only the training split is read.

The biases apply to beat bars only: a bar opened with FILL samples from the model as it is,
since the rates are beats' (`sampling.sample`). A model folder without the file plays without
biases; a model trained or fine-tuned from one starts without it (its rates are its own).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from .constants import DRUMS, HITS_PER_DRUM, MAX_STEPS_PER_BAR
from .pattern import Pattern, atomic_write_bytes

SHARES_FILE = "shares.json"
FIT_ROUNDS = 4  # generate-measure-correct rounds
FIT_PER_STYLE = 128  # 4-bar grooves generated per style and round (512 bars)
FIT_SEED = 11  # the fitting stream; evaluate's selection and report streams are others
FIT_STEP = 0.8  # the share of the log ratio each round moves a bias by (1 overshoots rare drums)
FIT_CLIP = 2.0  # no bias moves a rate by more than about e^2 = 7.4x
FIT_FLOOR = 0.02  # rates below this count as this, so silence is not infinitely far
FIT_PRIOR = 8.0  # onsets: a drum's rate at a step is shrunk toward its rate over all steps
FIT_MIN_BARS = 64  # styles with fewer training beat bars keep the model as it is
FIT_BARS = 4
STEPS = MAX_STEPS_PER_BAR


def rates(patterns: list[Pattern]) -> dict[str, np.ndarray]:
    """Per bar, over `patterns`: the share of bars with an onset at each 16th step ("steps"),
    and for each drum and step, its hits per onset there ("hits", drums x steps), shrunk
    toward the drum's rate over all steps by FIT_PRIOR onsets, so that a step with few onsets
    is not read from a handful of hits."""
    counts, onsets, bars = np.zeros((len(DRUMS), STEPS)), np.zeros(STEPS), 0
    for p in patterns:
        for bar in range(p.bars):
            hits = p.bar_hits(bar)
            for h in hits:
                counts[h.drum, h.step] += 1
            for step in {h.step for h in hits}:
                onsets[step] += 1
        bars += p.bars
    overall = counts.sum(1, keepdims=True) / max(1.0, onsets.sum())
    return {"steps": onsets / max(1, bars),
            "hits": (counts + FIT_PRIOR * overall) / (onsets + FIT_PRIOR)}


def bias_table(tokenizer, entry: dict) -> torch.Tensor:
    """One style's biases (`{"steps": [16], "hits": [9][16]}`) over the vocabulary, one row
    per step the bar is at: row p adds `steps` to the POS tokens and, to each HIT token of
    drum d, `hits[d][p]` (the bias for a hit at step p)."""
    steps, hits = entry["steps"], entry["hits"]
    out = torch.zeros((STEPS, len(tokenizer)))
    for i, kind in enumerate(tokenizer.kind):
        if kind == "HIT":  # the hit order is (drum, velocity bin, shift bin)
            out[:, i] = torch.tensor(hits[tokenizer.value[i] // HITS_PER_DRUM],
                                     dtype=torch.float32)
        elif kind == "POS" and tokenizer.value[i] < STEPS:
            out[:, i] = float(steps[tokenizer.value[i]])
    return out


def read(folder: str | os.PathLike) -> dict[str, dict[str, list[float]]]:
    """A model folder's biases by style; empty when it has no SHARES_FILE. A corrupt file is
    refused by name (raises ValueError)."""
    path = Path(folder) / SHARES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        styles = data["styles"]
        for style, entry in styles.items():
            hits = np.asarray(entry["hits"], dtype=float)
            steps = np.asarray(entry["steps"], dtype=float)
            if hits.shape != (len(DRUMS), STEPS) or steps.shape != (STEPS,):
                raise ValueError(f"{style} needs {STEPS} step biases and {len(DRUMS)} x {STEPS} "
                                 "hit biases")
            if not (np.isfinite(hits).all() and np.isfinite(steps).all()):
                raise ValueError(f"{style} has a bias that is not a finite number")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    return {s.lower(): e for s, e in styles.items()}


def write(folder: str | os.PathLike, styles: dict, meta: dict) -> Path:
    path = Path(folder) / SHARES_FILE
    atomic_write_bytes(path, json.dumps({"styles": styles, **meta}, indent=1).encode())
    return path


def _log_ratio(target: np.ndarray, made: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(target, FIT_FLOOR) / np.maximum(made, FIT_FLOOR))


def _error(target: dict, made: dict) -> float:
    """How far generated rates are from the target: the mean absolute log ratio of each
    drum's hits a bar (the drum counts) and of each step's onsets a bar."""
    def drums(r: dict) -> np.ndarray:
        return (r["hits"] * r["steps"]).sum(1)
    return float(np.mean(np.abs(np.concatenate([_log_ratio(drums(target), drums(made)),
                                                 _log_ratio(target["steps"], made["steps"])]))))


def fit(model_dir: str | os.PathLike | None, data_dir: str | os.PathLike,
        rounds: int = FIT_ROUNDS, per_style: int = FIT_PER_STYLE, seed: int = FIT_SEED,
        emit=print) -> dict:
    """Fit the biases of every style with at least FIT_MIN_BARS training beat bars, at the
    model's own generation defaults, and save them into the model folder, with the settings
    they were fitted at (biases fitted at one style strength are only roughly right at
    another: fit again after `calibrate` changes one). Returns the styles' biases and the error
    (`_error`) before the first round and after each."""
    from . import data as data_mod
    from . import model as model_mod
    from .evaluate import _generate, _grooves
    from .generate import DEFAULT_MODEL, Generator, Request
    folder = Path(model_dir or DEFAULT_MODEL).resolve()
    # a Generator of its own: the cached one may be serving requests while the biases move
    gen = Generator(model_mod.load(folder), torch.device("cpu"))
    dataset = data_mod.load(data_dir)
    pairs = data_mod.read_patterns([r for r in dataset.records if r.split == "train"], [])
    real = _grooves(pairs, FIT_BARS)
    styles = [s for s in gen.styles if len(real.get(s, [])) * FIT_BARS >= FIT_MIN_BARS]
    if not styles:
        raise ValueError(f"no style has {FIT_MIN_BARS} training beat bars in {data_dir}")
    targets = {s: rates(real[s]) for s in styles}
    biases = {s: {"steps": np.zeros(STEPS), "hits": np.zeros((len(DRUMS), STEPS))}
              for s in styles}
    history: dict[str, list[float]] = {s: [] for s in styles}
    for r in range(rounds + 1):
        gen.bundle.set_shares({s: {k: v.tolist() for k, v in b.items()}
                               for s, b in biases.items()})
        rng = random.Random(seed * 1000 + r)
        for style in styles:
            made, _ = _generate(gen, style, [p.tempo for p in real[style]], per_style,
                                FIT_BARS, rng)
            got = rates(made)
            history[style].append(_error(targets[style], got))
            if r == rounds:  # the last pass only measures
                continue
            for k in ("steps", "hits"):
                biases[style][k] = np.clip(biases[style][k] + FIT_STEP * _log_ratio(
                    targets[style][k], got[k]), -FIT_CLIP, FIT_CLIP)
        emit(f"round {r}: mean error {np.mean([h[-1] for h in history.values()]):.3f} "
             f"({', '.join(f'{s} {h[-1]:.3f}' for s, h in history.items())})")
    result = {s: {k: np.round(v, 4).tolist() for k, v in b.items()} for s, b in biases.items()}
    played = {s: gen.sampling(Request(style=s), s)._asdict() for s in styles}
    write(folder, result, {"fitted": {"rounds": rounds, "per_style": per_style, "seed": seed,
                                      "bars": FIT_BARS, "sampling": played, "error": history}})
    Generator.forget(folder)  # loaded models pick the new biases up on their next load
    return {"styles": result, "error": history, "path": str(folder / SHARES_FILE)}
