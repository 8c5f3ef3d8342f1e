"""Evaluation: validation NLL, and generated grooves against real ones, style by style.

- A style classifier (multinomial logistic regression on 4-bar onset and feel features) is
  trained on real training grooves; its accuracy on real held-out grooves is the ceiling, and
  its accuracy on generated grooves says whether they sound like the style asked for.
- Overlapping area (OA, MGEval style) between per-bar feature distributions, each estimated
  with a Gaussian KDE: generated vs real validation bars, beside real training vs real
  validation bars as the ceiling.
- The grammar validity rate of the generated token sequences.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import data as data_mod
from . import realism
from .constants import DRUMS
from .generate import Generator, Request
from .pattern import Pattern
from .schema import PARAMS
from .train import TrainConfig, evaluate_loss

FEATURES = ("hits", "velocity_mean", "velocity_sd", "offset_mean", "offset_sd", "syncopation",
            "drum_shares")
MIN_VAL_GROOVES = 4  # styles with fewer real validation grooves are left out of the table
MIN_C2ST_WINDOWS = 20  # styles with fewer real 2-bar validation windows get no realism row
C2ST_MARGIN = 0.02  # generated-vs-real C2ST may exceed training-vs-real by this much
DIVERSITY_RANGE = (0.9, 1.15)  # generated over real training onset distance, per style
OA_TARGET = 0.9  # generated-vs-real overlap, as a share of the real-vs-real overlap


def bar_features(pattern: Pattern, bar: int) -> dict[str, float | list[float]]:
    hits = pattern.bar_hits(bar)
    vel = np.array([h.velocity for h in hits], dtype=float)
    off = np.array([h.offset * pattern.step_seconds * 1000 for h in hits], dtype=float)
    counts = np.bincount([h.drum for h in hits], minlength=len(DRUMS)).astype(float)
    return {
        "hits": float(len(hits)),
        "velocity_mean": float(vel.mean()) if len(hits) else 0.0,
        "velocity_sd": float(vel.std()) if len(hits) else 0.0,
        "offset_mean": float(off.mean()) if len(hits) else 0.0,
        "offset_sd": float(off.std()) if len(hits) else 0.0,
        # share of hits off the 8th-note grid: a simple, tempo-free syncopation measure
        "syncopation": float(np.mean([h.step % 2 == 1 for h in hits])) if hits else 0.0,
        "drum_shares": list(counts / max(1, len(hits))),
    }


def groove_vector(pattern: Pattern) -> np.ndarray:
    """Classifier input for a groove: onset frequency per (drum, step), mean velocity per
    drum, and feel statistics; averaged over its bars."""
    grid = np.zeros((len(DRUMS), pattern.steps_per_bar))
    vel = np.zeros(len(DRUMS))
    for h in pattern.hits:
        grid[h.drum, h.step] += 1
        vel[h.drum] += h.velocity / 127
    counts = grid.sum(1)
    vel = np.divide(vel, counts, out=np.zeros_like(vel), where=counts > 0)
    feats = [bar_features(pattern, b) for b in range(pattern.bars)]
    stats = [np.mean([f[k] for f in feats]) for k in FEATURES[:-1]]
    scale = np.array([30, 127, 40, 30, 30, 1])
    return np.concatenate([grid.ravel() / pattern.bars, vel, np.array(stats) / scale])


def train_classifier(x: np.ndarray, y: np.ndarray, classes: int, seed: int = 0,
                     epochs: int = 300) -> torch.nn.Module:
    torch.manual_seed(seed)
    clf = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(clf.parameters(), lr=0.05, weight_decay=1e-4)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    weights = torch.bincount(yt, minlength=classes).float().clamp(min=1).reciprocal()
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(xt), yt, weight=weights).backward()
        opt.step()
    return clf


def predict(clf, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return clf(torch.tensor(x, dtype=torch.float32)).argmax(-1).numpy()



def overlap(a: list[float], b: list[float], points: int = 256) -> float:
    """Overlapping area of two Gaussian KDEs (Scott's bandwidth), in [0, 1]."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    span = max(hi - lo, 1e-6)
    xs = np.linspace(lo - 0.1 * span, hi + 0.1 * span, points)
    def kde(v: np.ndarray) -> np.ndarray:
        bw = max(v.std() * len(v) ** (-1 / 5), span * 0.01)
        dens = np.exp(-0.5 * ((xs[:, None] - v[None, :]) / bw) ** 2).sum(1)
        return dens / np.trapezoid(dens, xs)
    return float(np.trapezoid(np.minimum(kde(a), kde(b)), xs))


def feature_overlaps(gen: list[dict], real: list[dict]) -> dict[str, float]:
    out = {}
    for name in FEATURES:
        if name == "drum_shares":
            values = [overlap([f[name][d] for f in gen], [f[name][d] for f in real])
                      for d in range(len(DRUMS))]
            out[name] = float(np.nanmean(values)) if not all(map(math.isnan, values)) \
                else math.nan
        else:
            out[name] = overlap([f[name] for f in gen], [f[name] for f in real])
    return out


def _grooves(pairs, bars: int) -> dict[str, list[Pattern]]:
    """Real `bars`-bar beat grooves (no fills) by style, stride `bars`."""
    out: dict[str, list[Pattern]] = defaultdict(list)
    for record, pattern in pairs:
        if record.fill:
            continue
        for w in data_mod.windows(pattern, bars, bars):
            if w.bars == bars:
                out[record.style].append(w)
    return out


@dataclass
class RealData:
    """The real grooves a model is measured against, read once: the train and validation
    splits of the model's styles, as `bars`-bar beat grooves and as 2-bar windows, and the
    onsets of every training window (for the copy rate)."""

    val_pairs: list
    train: dict[str, list[Pattern]]  # `bars`-bar grooves by style
    val: dict[str, list[Pattern]]
    train_windows: dict[str, list[Pattern]]  # 2-bar windows by style
    val_windows: dict[str, list[Pattern]]
    seen: set[bytes]
    styles: list[str]  # the styles with enough real grooves in both splits


def real_data(styles: list[str], data_dir: str | os.PathLike, bars: int = 4) -> RealData:
    dataset = data_mod.load(data_dir)
    skipped: list = []
    pairs = data_mod.read_patterns(dataset.records, skipped)
    train_pairs = [(r, p) for r, p in pairs if r.split == "train" and r.style in styles]
    val_pairs = [(r, p) for r, p in pairs if r.split == "validation" and r.style in styles]
    train, val = _grooves(train_pairs, bars), _grooves(val_pairs, bars)
    windows = {}
    for name, split in (("train", train_pairs), ("val", val_pairs)):
        by_style = defaultdict(list)
        for record, pattern in split:
            if not record.fill:
                by_style[record.style] += realism.two_bar_windows([pattern])
        windows[name] = by_style
    seen = {realism.onsets(w).tobytes() for ws in windows["train"].values() for w in ws}
    kept = [s for s in styles if len(val.get(s, [])) >= MIN_VAL_GROOVES
            and len(train.get(s, [])) >= MIN_VAL_GROOVES]
    return RealData(val_pairs, train, val, windows["train"], windows["val"], seen,
                    kept)


def generate_for(gen: Generator, real: RealData, per_style: int, bars: int, seed: int,
                 shares: bool = True, **sampling) -> tuple[dict[str, list[Pattern]], int, int]:
    """`per_style` grooves of `bars` bars for each of `real.styles`, at tempos drawn from the
    style's validation grooves; `sampling` overrides the model's defaults (temperature, top_k,
    top_p, style_strength); `shares`: with the model's drum-share biases. Returns the grooves
    by style, and the valid and total counts."""
    rng = random.Random(seed)
    made: dict[str, list[Pattern]] = {}
    valid = total = 0
    for style in real.styles:
        made[style], ok = _generate(gen, style, [p.tempo for p in real.val[style]], per_style,
                                    bars, rng, shares=shares, **sampling)
        valid, total = valid + ok, total + len(made[style])
    return made, valid, total


def evaluate(model_dir: str | os.PathLike | None, data_dir: str | os.PathLike,
             per_style: int = 64, bars: int = 4, seed: int = 0,
             style_strength: float | None = None, real: RealData | None = None,
             generator: Generator | None = None, cache: dict | None = None,
             shares: bool = True, **sampling) -> dict:
    """The report `format_report` prints. Grooves are generated with the model's saved
    generation defaults, except `style_strength` and any of `sampling` (temperature, top_k,
    top_p) when given. `seed` fixes the generated stream and the classifiers' samples.
    `cache`: a dict shared by calls on the same model, `real` and `seed` (`calibrate`'s
    candidates), which keeps what does not depend on the sampling: the validation NLL, the
    style classifier and the real-vs-real realism figures. `shares=False` generates without
    the model's drum-share biases (`shares.py`), as before they were fitted."""
    gen = generator or Generator.load(model_dir, device="cpu")
    real = real or real_data(gen.styles, data_dir, bars)
    cache = {} if cache is None else cache
    styles = real.styles
    index = {s: i for i, s in enumerate(styles)}
    if "nll" not in cache:
        cfg = TrainConfig()
        val_examples = data_mod.examples(real.val_pairs, gen.tokenizer, gen.styles,
                                         cfg.window_bars, cfg.window_stride)
        x = np.stack([groove_vector(p) for s in styles for p in real.train[s]])
        y = np.array([index[s] for s in styles for _ in real.train[s]])
        cache.update(nll=evaluate_loss(gen.bundle.model, val_examples, gen.tokenizer.pad),
                     val_examples=len(val_examples),
                     clf=train_classifier(x, y, len(styles), seed))
    nll, clf = cache["nll"], cache["clf"]

    d = gen.bundle.defaults
    sampling = {k: v for k, v in sampling.items() if v is not None}
    if style_strength is not None:
        sampling["style_strength"] = style_strength
    used = {"temperature": d.temperature, "top_k": d.top_k, "top_p": d.top_p,
            "style_strength": d.style_strength, **sampling}
    if "style_strength" not in sampling and d.style_strengths:  # each style plays at its own
        used["style_strength"] = {s: d.strength_for(s) for s in real.styles}
    generated, valid, total = generate_for(gen, real, per_style, bars, seed, shares=shares,
                                           **sampling)
    rows = []
    for style in styles:
        made = generated[style]
        val_feats = [bar_features(p, b) for p in real.val[style] for b in range(p.bars)]
        train_feats = [bar_features(p, b) for p in real.train[style] for b in range(p.bars)]
        gen_feats = [bar_features(p, b) for p in made for b in range(p.bars)]
        pred_val = predict(clf, np.stack([groove_vector(p) for p in real.val[style]]))
        pred_gen = predict(clf, np.stack([groove_vector(p) for p in made]))
        rows.append({
            "style": style, "real_val_grooves": len(real.val[style]), "generated": len(made),
            "acc_real": float((pred_val == index[style]).mean()),
            "acc_gen": float((pred_gen == index[style]).mean()),
            # what the classifier took the generated grooves for, when not `style`
            "confused_with": {styles[k]: int(n) for k, n in enumerate(np.bincount(
                pred_gen, minlength=len(styles))) if n and k != index[style]},
            "oa_gen": feature_overlaps(gen_feats, val_feats),
            "oa_real": feature_overlaps(train_feats, val_feats),
        })
        gen_windows = realism.two_bar_windows(made)
        if len(real.val_windows[style]) >= MIN_C2ST_WINDOWS and gen_windows:
            rows[-1]["realism"] = realism.compare(
                gen_windows, real.train_windows[style], real.val_windows[style], real.seen,
                seed, cache.setdefault(("realism", style), {}))
    return {"model": str(gen.bundle.path), "val_nll": nll, "perplexity": math.exp(nll),
            "val_examples": cache["val_examples"], "validity": valid / max(1, total),
            "generated": total, "rows": rows, "bars": bars, "seed": seed,
            "sampling": used,
            "shares": sorted(s for s in styles if shares and gen.bundle.shares.get(s))}


def source_style_accuracy(model_dir: str | os.PathLike, style: str, source: str,
                          data_dir: str | os.PathLike, sources: list[Pattern],
                          held_out: set[Path] = frozenset(), per_style: int = 64,
                          bars: int = 4, seed: int = 0, also: tuple[str, ...] = ()) -> dict:
    """How often the style classifier calls a new style's grooves its source style.

    `style` is a style the model learned from user data (`dilla`) made of GMD files of style
    `source` (`hiphop`); `sources` are those files' patterns. The classifier is trained on
    GMD's real training grooves of every style, without the files in `held_out` (the GMD
    files the user data was made of), so its accuracy on the `sources` grooves is a fair
    mark: `acc_real`. `acc_gen` is its accuracy on grooves the model generates in `style`,
    with its saved generation defaults. `also` names GMD styles the model knew before, whose
    generated grooves are classified the same way (`also_acc`: did fine-tuning move them?)."""
    gen = Generator.load(model_dir, device="cpu")
    dataset = data_mod.load(data_dir)
    held_out = {Path(p).resolve() for p in held_out}
    pairs = data_mod.read_patterns([r for r in dataset.records if r.split == "train"
                                    and r.path.resolve() not in held_out], [])
    real = _grooves(pairs, bars)
    styles = [s for s in sorted(real) if len(real[s]) >= MIN_VAL_GROOVES]
    if source not in styles:
        raise ValueError(f"{source}: fewer than {MIN_VAL_GROOVES} real training grooves are "
                         "left to learn it from once the held-out files are taken out")
    index = {s: i for i, s in enumerate(styles)}
    x = np.stack([groove_vector(p) for s in styles for p in real[s]])
    y = np.array([index[s] for s in styles for _ in real[s]])
    clf = train_classifier(x, y, len(styles), seed)
    mine = [w for p in sources for w in data_mod.windows(p, bars, bars) if w.bars == bars]
    made, valid = _generate(gen, style, [p.tempo for p in mine], per_style, bars,
                            random.Random(seed))
    pred_real = predict(clf, np.stack([groove_vector(p) for p in mine]))
    pred_gen = predict(clf, np.stack([groove_vector(p) for p in made]))
    counts = np.bincount(pred_gen, minlength=len(styles))
    also_acc = {}
    for old in also:
        grooves, _ = _generate(gen, old, [p.tempo for p in real[old]], per_style, bars,
                               random.Random(seed))
        also_acc[old] = float((predict(clf, np.stack([groove_vector(p) for p in grooves]))
                               == index[old]).mean())
    return {"style": style, "source": source, "real_grooves": len(mine),
            "generated": len(made), "valid": valid / len(made),
            "acc_real": float((pred_real == index[source]).mean()),
            "acc_gen": float((pred_gen == index[source]).mean()),
            "taken_for": {styles[k]: int(n) for k, n in enumerate(counts) if n},
            "also_acc": also_acc}


def _generate(gen: Generator, style: str, tempos: list[float], n: int, bars: int,
              rng: random.Random, shares: bool = True, **sampling) -> tuple[list[Pattern], int]:
    """`n` grooves of `style` at tempos drawn from `tempos` (as played, before any feel), and
    how many were grammar-valid; `sampling` overrides the model's defaults, and `shares` says
    whether the model's drum-share biases play."""
    made, valid = [], 0
    while len(made) < n:
        request = Request(style=style, bars=bars,
                          tempo=float(np.clip(rng.choice(tempos), PARAMS["tempo"].lo,
                                              PARAMS["tempo"].hi)),
                          seed=rng.randrange(2**31),
                          variations=min(PARAMS["variations"].hi, n - len(made)),
                          **sampling)
        for groove in gen.generate(request, shares=shares):
            valid += not gen.tokenizer.check(groove.tokens, bars=bars)
            made.append(groove.raw)
    return made, valid


def oa_ratio(row: dict) -> float:
    """A style's generated-vs-real overlap over its real-vs-real overlap (feature means)."""
    return float(np.nanmean(list(row["oa_gen"].values()))
                 / np.nanmean(list(row["oa_real"].values())))


def feature_ratio(rows: list[dict], name: str) -> float:
    return float(np.nanmean([r["oa_gen"][name] for r in rows])
                 / np.nanmean([r["oa_real"][name] for r in rows]))


def target_misses(report: dict) -> list[str]:
    """The shipped model's targets that `report` misses, in words; empty when all are met:
    per style, classifier accuracy on generated grooves at least that on real held-out ones
    and an overlap ratio of at least `OA_TARGET`; the same ratio for every feature over all
    styles; every generated groove grammar-valid."""
    misses = []
    for r in report["rows"]:
        if r["acc_gen"] < r["acc_real"]:
            misses.append(f"{r['style']}: classifier accuracy {r['acc_gen']:.3f} on generated "
                          f"grooves ({round(r['acc_gen'] * r['generated'])} of "
                          f"{r['generated']}), under {r['acc_real']:.3f} on real ones "
                          f"({round(r['acc_real'] * r['real_val_grooves'])} of "
                          f"{r['real_val_grooves']})")
        if (ratio := oa_ratio(r)) < OA_TARGET:
            misses.append(f"{r['style']}: overlap ratio {ratio:.3f}, under {OA_TARGET}")
    for name in FEATURES:
        if (ratio := feature_ratio(report["rows"], name)) < OA_TARGET:
            misses.append(f"{name}: overlap ratio {ratio:.3f}, under {OA_TARGET}")
    if report["validity"] < 1:
        misses.append(f"grammar-valid {report['validity']:.1%} of generated grooves, not 100%")
    return misses + realism_misses(report)


def realism_summary(report: dict) -> dict | None:
    """The realism figures over the styles that have them: mean C2ST accuracies, and the
    pooled copy rates (None when no style has enough real windows)."""
    rows = [r["realism"] for r in report["rows"] if "realism" in r]
    if not rows:
        return None
    def pooled(key: str, side: str) -> float:
        return (sum(m[key] * m["windows"][side] for m in rows)
                / max(1, sum(m["windows"][side] for m in rows)))
    return {"c2st_gen": float(np.nanmean([m["c2st_gen"] for m in rows])),
            "c2st_train": float(np.nanmean([m["c2st_train"] for m in rows])),
            "copy_gen": pooled("copy_gen", "generated"), "copy_val": pooled("copy_val",
                                                                            "validation")}


def realism_misses(report: dict) -> list[str]:
    """Issue 17's targets, in words: mean generated-vs-validation C2ST at most the
    training-vs-validation one + C2ST_MARGIN; every style's diversity ratio within
    DIVERSITY_RANGE; a pooled copy rate no higher than real validation windows'."""
    summary = realism_summary(report)
    if summary is None:
        return []
    misses = []
    if summary["c2st_gen"] > summary["c2st_train"] + C2ST_MARGIN:
        misses.append(f"C2ST: generated vs validation {summary['c2st_gen']:.3f}, over training "
                      f"vs validation {summary['c2st_train']:.3f} + {C2ST_MARGIN}")
    lo, hi = DIVERSITY_RANGE
    for r in report["rows"]:
        if "realism" in r and not lo <= (ratio := diversity_ratio(r["realism"])) <= hi:
            misses.append(f"{r['style']}: diversity ratio {ratio:.2f}, outside {lo}-{hi}")
    if summary["copy_gen"] > summary["copy_val"]:
        misses.append(f"copies: {summary['copy_gen']:.1%} of generated windows repeat a training "
                      f"window's onsets, over {summary['copy_val']:.1%} of real validation ones")
    return misses


def diversity_ratio(m: dict) -> float:
    return m["distance_gen"] / m["distance_train"]


def format_report(report: dict) -> str:
    """The report as Markdown tables (the README and the model card show this)."""
    lines = [f"Validation NLL {report['val_nll']:.4f} nats/token, perplexity "
             f"{report['perplexity']:.2f} ({report['val_examples']} windows); "
             f"grammar-valid {report['validity']:.1%} of {report['generated']} generated "
             f"{report['bars']}-bar grooves ("
             + sampling_text(report["sampling"]) + "). Drum-share biases: "
             + (", ".join(report.get("shares") or []) or "none") + ".", ""]
    lines.append("| style | real val grooves | classifier acc. real | classifier acc. generated |"
                 " OA generated / real-vs-real (mean of 7 features) | generated taken for |")
    lines.append("|---|---|---|---|---|---|")
    rows = report["rows"]
    for r in rows:
        g, c = np.nanmean(list(r["oa_gen"].values())), np.nanmean(list(r["oa_real"].values()))
        confused = sorted(r["confused_with"].items(), key=lambda kv: -kv[1])
        lines.append(f"| {r['style']} | {r['real_val_grooves']} | {r['acc_real']:.2f} | "
                     f"{r['acc_gen']:.2f} | {g:.3f} / {c:.3f} ({oa_ratio(r):.2f}) | "
                     + (", ".join(f"{s} {n}" for s, n in confused[:3]) or "-") + " |")
    mean = lambda key: np.mean([r[key] for r in rows])  # noqa: E731
    lines.append(f"| **mean** | | {mean('acc_real'):.2f} | {mean('acc_gen'):.2f} | | |")
    lines += ["", "| feature | OA generated vs real | OA real train vs real val | ratio |",
              "|---|---|---|---|"]
    for name in FEATURES:
        g = np.nanmean([r["oa_gen"][name] for r in rows])
        c = np.nanmean([r["oa_real"][name] for r in rows])
        lines.append(f"| {name} | {g:.3f} | {c:.3f} | {feature_ratio(rows, name):.2f} |")
    lines += realism_lines(report)
    misses = target_misses(report)
    lines += ["", "Targets: " + ("all met." if not misses else f"{len(misses)} missed:")]
    lines += [f"- {m}" for m in misses]
    return "\n".join(lines)


def sampling_text(sampling: dict) -> str:
    """'temperature 1, top k 0, ...'; a per-style strength reads 'style strength funk 2, ...'."""
    def text(v):
        return (", ".join(f"{s} {x:g}" for s, x in v.items()) if isinstance(v, dict)
                else f"{v:g}")
    return ", ".join(f"{k.replace('_', ' ')} {text(v)}" for k, v in sampling.items())


def realism_lines(report: dict) -> list[str]:
    """The realism tables: per style, then by feature kind (which features tell them apart)."""
    summary = realism_summary(report)
    if summary is None:
        return []
    rows = [r for r in report["rows"] if "realism" in r]
    lines = ["", "Realism, on 2-bar windows (C2ST: a ridge classifier, balanced samples, "
             f"{realism.FOLDS}-fold cross-validation, mean of {realism.REPEATS} samples):", "",
             "| style | windows gen / val | C2ST generated vs val | C2ST train vs val | "
             "diversity ratio | copies gen / val | tells (C2ST excess by feature) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["realism"]
        excess = sorted(((v["generated"] - v["train"], k) for k, v in m["c2st_by_kind"].items()
                         if not math.isnan(v["generated"] - v["train"])), reverse=True)
        tells = ", ".join(f"{k.replace('_', ' ')} {e:+.2f}" for e, k in excess[:2] if e > 0)
        lines.append(f"| {r['style']} | {m['windows']['generated']} / "
                     f"{m['windows']['validation']} | {m['c2st_gen']:.3f} | "
                     f"{m['c2st_train']:.3f} | {diversity_ratio(m):.2f} | "
                     f"{m['copy_gen']:.1%} / {m['copy_val']:.1%} | {tells or '-'} |")
    lines.append(f"| **mean** | | {summary['c2st_gen']:.3f} | {summary['c2st_train']:.3f} | | "
                 f"{summary['copy_gen']:.1%} / {summary['copy_val']:.1%} (pooled) | |")
    lines += ["", "| feature kind | C2ST generated vs val | C2ST train vs val |", "|---|---|---|"]
    for kind in realism.KINDS:
        g = np.nanmean([r["realism"]["c2st_by_kind"][kind]["generated"] for r in rows])
        t = np.nanmean([r["realism"]["c2st_by_kind"][kind]["train"] for r in rows])
        lines.append(f"| {kind.replace('_', ' ')} | {g:.3f} | {t:.3f} |")
    return lines


def report_json(report: dict) -> str:
    """`report` as strict JSON (NaN, for a feature too sparse to estimate, becomes null)."""
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean({**report, "target_misses": target_misses(report)}), indent=1,
                      allow_nan=False)


#: `calibrate_strengths`'s rule: a style's strength must leave its grooves recognised by the
#: style classifier this much above the real ceiling, and its diversity ratio and overlap
#: ratio this far inside their targets, so that a fresh stream's sampling noise (about 0.03 in
#: accuracy at 128 grooves) does not undo the choice.
CALIBRATION_ACC_MARGIN = 0.03
CALIBRATION_DIVERSITY_MARGIN = 0.02
CALIBRATION_OA_MARGIN = 0.02
#: C2STs this close to the least telling candidate's are the same within a fresh stream's
#: noise (a style's C2ST moved by up to about 0.01 between report streams): among them the
#: candidate furthest inside the other targets wins.
CALIBRATION_C2ST_BAND = 0.01
CALIBRATION_STRENGTHS = (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75)  # `calibrate`'s default
CALIBRATION_SEED = 5  # the selection stream (report streams are other seeds, drawn after)
CALIBRATION_PER_STYLE = 256  # grooves per style and candidate (128 until round 7)


def calibrate_strengths(model_dir: str | os.PathLike | None, data_dir: str | os.PathLike,
                        strengths: list[float], per_style: int = CALIBRATION_PER_STYLE,
                        bars: int = 4, seed: int = CALIBRATION_SEED, progress=print) -> dict:
    """Each style's default style strength, chosen on the validation split.

    Every candidate in `strengths` generates the same stream (`seed`: the same tempos and
    request seeds), so the candidates differ only in strength; `choose_strengths` applies
    the rule. Returns `{"chosen": {style: strength}, "why": {style: str},
    "reports": {strength: report}}`."""
    gen = Generator.load(model_dir, device="cpu")
    real = real_data(gen.styles, data_dir, bars)
    reports, cache = {}, {}
    for i, s in enumerate(strengths):
        progress(f"candidate {i + 1} of {len(strengths)}: style strength {s:g}")
        reports[s] = evaluate(None, data_dir, per_style, bars, seed, style_strength=s,
                              real=real, generator=gen, cache=cache)
    return {**choose_strengths(reports, gen.bundle.defaults), "reports": reports}


def choose_strengths(reports: dict[float, dict], defaults) -> dict:
    """The rule applied to every style of the candidates' `reports` (strength -> report);
    `defaults` (GenerationDefaults) gives a style's fallback. Each style first takes
    `choose_strength`'s pick. The copy target is pooled over the styles, as `evaluate --check`
    measures it, so while the picks copy training windows more often than real validation
    windows do, the style that copies most moves to its best pick among the candidates that
    copy less. Returns `{"chosen": {style: strength}, "why": {style: str}}`."""
    strengths = list(reports)
    styles = [r["style"] for r in reports[strengths[0]]["rows"]]
    rows = {style: {s: reports[s]["rows"][k] for s in strengths}
            for k, style in enumerate(styles)}
    picks = {style: choose_strength(rows[style], defaults.strength_for(style))
             for style in styles}
    summary = realism_summary(reports[strengths[0]])
    cap = summary["copy_val"] if summary else 1.0  # real data's: no candidate changes it

    def copies(style: str) -> tuple[float, int]:
        m = rows[style].get(picks[style][0], {}).get("realism")
        return (m["copy_gen"], m["windows"]["generated"]) if m else (0.0, 0)

    while True:
        made = [copies(s) for s in styles]
        total = sum(n for _, n in made)
        if not total or sum(c * n for c, n in made) / total <= cap:
            break
        worst = max(styles, key=lambda s: copies(s)[0] * copies(s)[1])
        fewer = {s: r for s, r in rows[worst].items()
                 if "realism" in r and r["realism"]["copy_gen"] < copies(worst)[0]}
        if not fewer:
            break
        strength, why = choose_strength(fewer, defaults.strength_for(worst))
        if strength not in fewer:  # none of them sound: the copy rate cannot come down
            break
        picks[worst] = (strength, why + ", among those copying less (pooled copies)")
    return {"chosen": {s: p[0] for s, p in picks.items()},
            "why": {s: p[1] for s, p in picks.items()}}


def choose_strength(rows: dict[float, dict], default: float) -> tuple[float, str]:
    """`calibrate_strengths`'s rule for one style, from its report row at each candidate
    strength; returns the strength and why, in words.

    A candidate is *sound* when its diversity ratio lies `CALIBRATION_DIVERSITY_MARGIN` inside
    `DIVERSITY_RANGE` and its overlap ratio is at least `OA_TARGET` +
    `CALIBRATION_OA_MARGIN`; it *passes* when, besides, the classifier recognises its grooves
    `CALIBRATION_ACC_MARGIN` above the real ceiling. Among the passing candidates whose C2ST
    (generated vs validation) is within `CALIBRATION_C2ST_BAND` of the lowest, the one
    furthest inside the targets wins: the largest of their smallest margins (diversity ratio
    to either end of its range, overlap ratio over its target, accuracy over the ceiling).
    Where the style has too few windows for a C2ST, all passing candidates are in that band.
    With none passing, the same at the targets themselves (no margins); then the best
    recognised sound candidate, with margins and then without; with none sound, `default`."""
    def sound(r: dict, margin: float) -> bool:
        lo, hi = DIVERSITY_RANGE
        m = r.get("realism")
        return (oa_ratio(r) >= OA_TARGET + margin * CALIBRATION_OA_MARGIN
                and (m is None or lo + margin * CALIBRATION_DIVERSITY_MARGIN
                     <= diversity_ratio(m) <= hi - margin * CALIBRATION_DIVERSITY_MARGIN))

    def telling(s: float) -> float:
        return rows[s]["realism"]["c2st_gen"] if "realism" in rows[s] else 0.0

    def room(s: float) -> float:
        r, (lo, hi) = rows[s], DIVERSITY_RANGE
        margins = [oa_ratio(r) - OA_TARGET, r["acc_gen"] - r["acc_real"]]
        if "realism" in r:
            d = diversity_ratio(r["realism"])
            margins += [d - lo, hi - d]
        return min(margins)

    for margin, how in ((1, ""), (0, " at the targets (none with the margins)")):
        passing = [s for s, r in rows.items() if sound(r, margin)
                   and r["acc_gen"] >= r["acc_real"] + margin * CALIBRATION_ACC_MARGIN]
        if passing:
            least = min(passing, key=lambda s: (telling(s), s))
            near = [s for s in passing if telling(s) <= telling(least) + CALIBRATION_C2ST_BAND]
            pick = max(near, key=lambda s: (room(s), -telling(s), -s))
            if pick == least:
                return pick, f"least telling of {len(passing)} passing{how}"
            return pick, (f"furthest inside the targets of {len(near)} within "
                          f"{CALIBRATION_C2ST_BAND:g} C2ST of the least telling "
                          f"({least:g}), of {len(passing)} passing{how}")
    for margin, how in ((1, ""), (0, " at the targets")):
        good = [s for s, r in rows.items() if sound(r, margin)]
        if good:
            return (max(good, key=lambda s: rows[s]["acc_gen"]),
                    f"none passed: the best recognised sound one{how}")
    return default, "none sound: the model's default kept"


def calibration_table(result: dict) -> str:
    """Per style and candidate strength: classifier accuracy (real ceiling), overlap ratio,
    diversity ratio, copy rate and C2ST, the chosen one in bold."""
    reports = result["reports"]
    strengths = list(reports)
    first = reports[strengths[0]]
    lines = ["| style (accuracy ceiling) | " + " | ".join(f"strength {s:g}" for s in strengths)
             + " | chosen |", "|---|" + "---|" * (len(strengths) + 1)]
    for k, row in enumerate(first["rows"]):
        style, cells = row["style"], []
        for s in strengths:
            r = reports[s]["rows"][k]
            cell = f"acc {r['acc_gen']:.2f}, OA {oa_ratio(r):.2f}"
            if "realism" in r:
                m = r["realism"]
                cell += (f", div {diversity_ratio(m):.2f}, copies {m['copy_gen']:.1%}, C2ST "
                         f"{m['c2st_gen']:.3f}")
            cells.append(f"**{cell}**" if s == result["chosen"][style] else cell)
        lines.append(f"| {style} ({row['acc_real']:.2f}) | " + " | ".join(cells)
                     + f" | {result['chosen'][style]:g} ({result['why'][style]}) |")
    return "\n".join(lines)
