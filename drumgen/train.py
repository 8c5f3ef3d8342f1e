"""Training and fine-tuning, on CPU, one GPU or many (through `accelerate launch`).

The trainer reports; the caller decides: `train()` calls `callback(event)` with dicts such as
`{"event": "step", "step": 120, "loss": 1.9, "lr": 8e-4, ...}` and stops early when
`should_stop()` returns True. The CLI draws a tqdm bar from those events; the Train tab plots
them.

Checkpoints hold no pickles: weights and optimizer moments are safetensors, the rest JSON.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler

from . import data as data_mod
from . import model as model_mod
from .constants import GMD_STYLES
from .model import Bundle, GenerationDefaults
from .pattern import atomic_write_bytes
from .tokenizer import Tokenizer, bin_velocity, velocity_bin


@dataclass
class TrainConfig:
    """Everything a run depends on; saved beside its checkpoints as train_config.json."""

    preset: str = "small"
    epochs: float | None = None  # stop after this many epochs...
    time_budget: float | None = None  # ...or after this many minutes (whichever comes first)
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200  # capped at 5% of the run
    max_grad_norm: float = 1.0
    eval_every: int = 0  # optimizer steps between validations; 0 = once an epoch
    checkpoint_every: int = 500  # optimizer steps between periodic checkpoints
    keep_checkpoints: int = 3
    patience: int = 0  # stop after this many validations without improvement; 0 = never
    seed: int = 0
    window_bars: int = data_mod.WINDOW_BARS
    window_stride: int = data_mod.WINDOW_STRIDE
    precision: str = "auto"  # auto: bf16 on a CUDA GPU that has it, else fp32
    max_val_examples: int = 2000
    # Style balance: 0 draws examples as they come (a style's share is its share of the data);
    # 1 draws every style equally often; between, a style's share goes as count**(1 - b).
    # GMD is 40% rock and 1% pop, so a rare style's embedding otherwise learns little.
    style_balance: float = 0.0
    #: extra draw weight for named styles, on top of the balance: {"funk": 2} draws funk's
    #: examples twice as often as the balance alone would (with replacement, so an epoch
    #: keeps its length and the other styles' shares shrink in proportion)
    style_weights: dict[str, float] = field(default_factory=dict)
    #: "generate" (grooves from scratch) or "groove" (play a quantized pattern: see
    #: `data.groove_examples`; fine-tune from a generate model with `init_from`)
    task: str = "generate"
    #: "all" trains every weight; "style" only the style embeddings (fine-tuning a model:
    #: a new style is learnt as a point among the old ones, and the rest stays as it was)
    train_only: str = "all"


Callback = Callable[[dict], None]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _precision(name: str) -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def lr_schedule(step: int, total: int, peak: float, warmup_steps: int) -> float:
    """The learning rate at optimizer step `step` of `total`: a linear warmup to `peak` over
    `warmup_steps` (at most 5% of the run), then a cosine down to a tenth of `peak`."""
    warm = min(warmup_steps, max(1, total // 20))
    if step < warm:
        return peak * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def epoch_sampler(examples: list, seed: int, epoch: int, balance: float = 0.0,
                  weights: dict[int, float] | None = None) -> Sampler:
    """An epoch's order of example indices, the same for the same seed and epoch (so a
    resumed run sees what the first one would have). With `balance`, an epoch is as many
    draws, with replacement, weighted so that a style's share goes as count**(1 - balance);
    `weights` (style index -> factor) multiplies the named styles' draw weights on top."""
    rng = torch.Generator().manual_seed(seed + epoch)
    if balance or weights:
        styles = torch.tensor([e.style for e in examples])
        counts = torch.bincount(styles).float()
        factor = torch.ones_like(counts)
        for style, w in (weights or {}).items():
            if style < len(factor):
                factor[style] = w
        return WeightedRandomSampler((counts ** -balance * factor)[styles], len(examples),
                                     replacement=True, generator=rng)
    return RandomSampler(range(len(examples)), generator=rng)


def style_weight_indices(weights: dict[str, float], styles: list[str]) -> dict[int, float]:
    """`TrainConfig.style_weights` by style index, checked: every name a style of the data
    or the model, every factor a positive finite number."""
    out = {}
    for name, w in weights.items():
        if name not in styles:
            raise ValueError(f"style_weights: no style {name!r} in the data or the model "
                             f"(styles: {', '.join(styles)})")
        if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
            raise ValueError(f"style_weights: {name}'s factor must be a positive number, "
                             f"got {w!r}")
        out[styles.index(name)] = float(w)
    return out


def epoch_loader(examples: list, cfg: TrainConfig, epoch: int, pad: int,
                 max_len: int, weights: dict[int, float] | None = None) -> DataLoader:
    """An epoch's batches, for `Accelerator.prepare`: it shards them over the processes, and
    with `even_batches` (its default) every process gets the same number of batches."""
    return DataLoader(range(len(examples)), batch_size=cfg.batch_size,
                      sampler=epoch_sampler(examples, cfg.seed, epoch, cfg.style_balance,
                                            weights),
                      collate_fn=lambda indices: collate(examples, indices, pad, max_len))


def _agree_any(accelerator, flag: bool) -> bool:
    """True on every process when `flag` is true on any: ranks must stop at the same step,
    or the others would wait for them forever in the next all-reduce."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.gather(torch.tensor([int(flag)], device=accelerator.device))
                .max().item())


def collate(examples: list, indices: list[int], pad: int, max_len: int):
    rows = [examples[i].tokens[:max_len] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r)
        attn[j, : len(r)] = 1
    labels = ids.masked_fill(attn == 0, -100)
    for j, i in enumerate(indices):
        labels[j, : examples[i].loss_from] = -100
    styles = torch.tensor([examples[i].style for i in indices])
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "style_ids": styles}


@torch.no_grad()
def evaluate_loss(model, examples: list, pad: int, batch_size: int = 32,
                  device: torch.device | str = "cpu") -> float:
    """Mean negative log-likelihood per predicted token (nats)."""
    was_training = model.training
    model.eval()
    max_len = model.config.n_positions
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate(examples, list(range(start, min(start + batch_size, len(examples)))),
                        pad, max_len)
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def prepare_data(data_dir: str | os.PathLike, tok: Tokenizer, styles: list[str] | None,
                 cfg: TrainConfig, callback: Callback | None = None,
                 fit_velocities: bool = False):
    """Examples for training and validation, and the style list (extended with new styles).

    `fit_velocities` also fits `tok`'s velocity table to the training hits (a new model)."""
    dataset = data_mod.load(data_dir)
    skipped = list(dataset.skipped)
    def progress(i: int) -> None:
        if callback and (i % 50 == 0 or i == len(dataset.records)):
            callback({"event": "reading", "done": i, "total": len(dataset.records)})
    pairs = data_mod.read_patterns(dataset.records, skipped, progress)
    if not pairs:
        raise ValueError(f"no usable MIDI in {data_dir}; skipped: {skipped[:3]}")
    styles = list(styles or [])
    styles += sorted({r.style for r, _ in pairs} - set(styles))
    train_pairs = [(r, p) for r, p in pairs if r.split == "train"]
    val_pairs = [(r, p) for r, p in pairs if r.split == "validation"] or train_pairs[-1:]
    if fit_velocities:
        tok.fit_velocities(p for _, p in train_pairs)
    if cfg.task == "groove":
        make = lambda ps: data_mod.groove_examples(ps, tok, styles)  # noqa: E731
    else:
        make = lambda ps: data_mod.examples(ps, tok, styles, cfg.window_bars,  # noqa: E731
                                            cfg.window_stride)
    val = make(val_pairs)
    random.Random(cfg.seed).shuffle(val)
    train_ex, val_ex = make(train_pairs), val[: cfg.max_val_examples]
    report = data_report(train_pairs, val_pairs, train_ex, val_ex, styles)
    report["validation_is_training"] = not any(r.split == "validation" for r, _ in pairs)
    return train_ex, val_ex, styles, skipped, report


def data_report(train_pairs, val_pairs, train_ex, val_ex, styles: list[str]) -> dict:
    """Per style in the data: files and bars of each split, and examples of each."""
    per_style: dict[str, dict] = {}
    for split, pairs, made in (("train", train_pairs, train_ex), ("val", val_pairs, val_ex)):
        for record, pattern in pairs:
            row = per_style.setdefault(record.style, dict.fromkeys(
                ("train_files", "train_bars", "train_examples", "val_files", "val_bars",
                 "val_examples"), 0))
            row[f"{split}_files"] += 1
            row[f"{split}_bars"] += pattern.bars
        for example in made:
            per_style[styles[example.style]][f"{split}_examples"] += 1
    return {"styles": per_style}


def fit_velocity_table(model_dir: str | os.PathLike, data_dir: str | os.PathLike) -> dict:
    """Fit a saved model's velocity table (`Tokenizer.fit_velocities`) to the training split of
    `data_dir` and save it into the folder; for models trained before the table existed.
    Returns the mean velocity of those hits, decoded with bin centres and with the table."""
    folder = Path(model_dir)
    bundle = model_mod.load(folder)  # checks the whole folder first
    dataset = data_mod.load(data_dir)
    pairs = [(r, p) for r, p in data_mod.read_patterns(dataset.records, [])
             if r.split == "train"]
    if not pairs:
        raise ValueError(f"no usable training MIDI in {data_dir}")
    hits = [h for _, p in pairs for h in p.hits]
    tok = bundle.tokenizer.fit_velocities(p for _, p in pairs)
    tok.save(folder)
    def mean(decoded) -> float:
        return sum(map(decoded, hits)) / len(hits)
    return {"hits": len(hits), "velocity_mean": mean(lambda h: h.velocity),
            "centres_mean": mean(lambda h: bin_velocity(velocity_bin(h.velocity))),
            "table_mean": mean(lambda h: tok.velocities[h.drum][velocity_bin(h.velocity)]),
            "table": tok.velocities}


# ---------------------------------------------------------------------------------------------
# Checkpoints

def _save_checkpoint(folder: Path, bundle: Bundle, optimizer, state: dict) -> None:
    """A complete checkpoint folder, written beside its final name then renamed into place."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model_mod.save(bundle, tmp)
    tensors, meta = {}, {"param_groups": optimizer.state_dict()["param_groups"], "state": {}}
    for pid, st in optimizer.state_dict()["state"].items():
        meta["state"][str(pid)] = []
        for key, value in st.items():
            tensors[f"{pid}.{key}"] = value.detach().float().cpu().contiguous()
            meta["state"][str(pid)].append(key)
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _load_optimizer(folder: Path, optimizer) -> None:
    tensors = load_file(folder / "optimizer.safetensors")
    meta = json.loads((folder / "optimizer.json").read_text())
    state = {int(pid): {k: tensors[f"{pid}.{k}"] for k in keys}
             for pid, keys in meta["state"].items()}
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step-*[0-9]"))
    return found[-1] if found else None


def _prune(out: Path, keep: int) -> None:
    for old in sorted((out / "checkpoints").glob("step-*[0-9]"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The loop

def train(cfg: TrainConfig, data_dir: str | os.PathLike, out: str | os.PathLike,
          init_from: str | os.PathLike | None = None, resume: bool = False,
          callback: Callback | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict:
    """Train into `out` (the best model at the top level, periodic checkpoints below it).

    `init_from` fine-tunes an existing model folder, adding any new styles in the data.
    `resume` continues from the latest checkpoint in `out`. Returns a summary dict."""
    from accelerate import Accelerator

    if not 0 <= cfg.style_balance <= 1:
        raise ValueError(f"style_balance must be between 0 and 1, got {cfg.style_balance}")
    emit = callback or (lambda event: None)
    out = Path(out)
    _seed_all(cfg.seed)
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    source = ckpt or init_from
    if cfg.task not in ("generate", "groove"):
        raise ValueError(f"task must be generate or groove, got {cfg.task!r}")
    if cfg.train_only not in ("all", "style"):
        raise ValueError(f"train_only must be all or style, got {cfg.train_only!r}")
    if cfg.train_only == "style" and (not source or cfg.task != "generate"):
        raise ValueError("train_only=style fine-tunes a generate model: give init_from")
    base = model_mod.load(source) if source else None
    tok = base.tokenizer if base else Tokenizer()
    if cfg.task == "groove":
        tok = tok.extended(data_mod.GROOVE_TOKENS)
    base_styles = base.styles if base else list(GMD_STYLES)
    # a fine-tuned model keeps the velocity table its hit tokens were learned with
    train_ex, val_ex, styles, skipped, report = prepare_data(
        data_dir, tok, base_styles, cfg, emit, fit_velocities=base is None)
    if not train_ex:
        raise ValueError("no training examples: every file was skipped or empty")
    weights = style_weight_indices(cfg.style_weights, styles)
    if base:
        model = base.model
        if len(tok) > model.config.vocab_size:  # new task tokens: new embedding rows
            model.resize_token_embeddings(len(tok))
        if len(styles) > model.config.n_styles:
            emit({"event": "info", "message": f"new styles: {styles[model.config.n_styles:]}"})
            model.add_styles(len(styles) - model.config.n_styles)
    else:
        model = model_mod.build(cfg.preset, len(tok), len(styles))
    defaults = base.defaults if base else GenerationDefaults()
    # cpu=True without CUDA: under `accelerate launch --multi_gpu` or torchrun, processes on
    # a CPU-only machine then train together (MULTI_CPU, gloo) instead of each alone
    accelerator = Accelerator(mixed_precision=_precision(cfg.precision),
                              gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not torch.cuda.is_available())
    if cfg.train_only == "style":
        for name, param in model.named_parameters():
            param.requires_grad = name.startswith("style_emb.")
    trained = [p for p in model.parameters() if p.requires_grad]
    # no decay on style rows alone: the old styles' rows get no gradient and must not shrink
    decay = [p for p in trained if p.dim() >= 2 and cfg.train_only == "all"]
    no_decay = [p for p in trained if p.dim() < 2 or cfg.train_only != "all"]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val": math.inf, "history": [],
             "evals_without_gain": 0, "seconds": 0.0}
    if ckpt:
        _load_optimizer(ckpt, optimizer)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        emit({"event": "info", "message": f"resumed from {ckpt.name} at step {state['step']}"})
    model, optimizer = accelerator.prepare(model, optimizer)
    steps_per_epoch = math.ceil(math.ceil(len(train_ex) / cfg.batch_size)
                                / accelerator.num_processes / cfg.grad_accum)
    epoch_total = math.ceil(cfg.epochs * steps_per_epoch) if cfg.epochs else 10**12
    plan = {"total": epoch_total if cfg.epochs else state.get("total") or epoch_total}
    first_step = state["step"]

    def lr_at(step: int) -> float:
        return lr_schedule(step, plan["total"], cfg.lr, cfg.warmup_steps)

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "train_config.json", json.dumps(asdict(cfg), indent=1).encode())
    emit({"event": "start", "train_examples": len(train_ex), "val_examples": len(val_ex),
          "styles": styles, "steps_per_epoch": steps_per_epoch, "skipped": len(skipped),
          "parameters": model_mod.count_parameters(model), "device": str(accelerator.device),
          "data": report})
    bundle = lambda: Bundle(accelerator.unwrap_model(model), tok, styles, defaults)  # noqa: E731
    started, tokens_seen, batches_seen = time.time() - state["seconds"], 0, 0
    stop_reason = "done"
    recent: deque[float] = deque(maxlen=20)  # the last steps' losses, for the summary
    run_started = time.time()
    budget_s = cfg.time_budget * 60 if cfg.time_budget else None
    max_len = accelerator.unwrap_model(model).config.n_positions
    model.train()

    def validate() -> None:
        val = evaluate_loss(accelerator.unwrap_model(model), val_ex, tok.pad,
                            device=accelerator.device)
        improved = val < state["best_val"]
        state["history"].append({"step": state["step"], "val_loss": val})
        if improved:
            state["best_val"], state["evals_without_gain"] = val, 0
            if accelerator.is_main_process:
                model_mod.save(bundle(), out)
        else:
            state["evals_without_gain"] += 1
        emit({"event": "eval", "step": state["step"], "epoch": state["epoch"],
              "val_loss": val, "best": improved})

    while True:
        if cfg.epochs is not None and state["epoch"] >= math.ceil(cfg.epochs):
            break
        loader = accelerator.prepare(epoch_loader(train_ex, cfg, state["epoch"], tok.pad,
                                                  max_len, weights))
        if state["batch_in_epoch"]:  # resumed mid-epoch
            loader = accelerator.skip_first_batches(loader, state["batch_in_epoch"])
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(state["step"])
                optimizer.step()
                optimizer.zero_grad()
            state["batch_in_epoch"] += 1
            batches_seen += 1
            recent.append(loss.item())
            tokens_seen += int(batch["attention_mask"].sum())
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            elapsed = time.time() - started
            state["seconds"] = elapsed
            done_here = state["step"] - first_step
            if budget_s and done_here >= 20 and done_here % 20 == 0:
                # fit the cosine schedule to the budget, again every 20 steps as speed drifts
                per_step = (time.time() - run_started) / done_here
                total = min(epoch_total, state["step"] + max(1, int((budget_s - elapsed)
                                                                   / per_step)))
                if accelerator.num_processes > 1:  # one schedule for every rank
                    total = int(accelerator.gather(torch.tensor(
                        [total], device=accelerator.device)).min().item())
                plan["total"] = state["total"] = total
            emit({"event": "step", "step": state["step"], "epoch": state["epoch"],
                  "loss": loss.item(), "lr": lr_at(state["step"] - 1), "total": plan["total"],
                  "tokens_per_s": tokens_seen / max(time.time() - run_started, 1e-9),
                  "elapsed": elapsed})
            if cfg.eval_every and state["step"] % cfg.eval_every == 0:
                validate()
            if state["step"] % cfg.checkpoint_every == 0 and accelerator.is_main_process:
                _save_checkpoint(out / "checkpoints" / f"step-{state['step']:07d}",
                                 bundle(), optimizer, state)
                _prune(out, cfg.keep_checkpoints)
                emit({"event": "checkpoint", "step": state["step"]})
            if _agree_any(accelerator, bool(budget_s and elapsed >= budget_s)):
                stop_reason = "time budget"
            elif _agree_any(accelerator, bool(should_stop and should_stop())):
                stop_reason = "stopped"
            elif cfg.patience and state["evals_without_gain"] >= cfg.patience:
                stop_reason = "early stopping"
            elif state["step"] >= plan["total"]:
                stop_reason = "done"
            else:
                continue
            break
        else:
            state["epoch"], state["batch_in_epoch"] = state["epoch"] + 1, 0
            if not cfg.eval_every:
                validate()
            if stop_reason == "done" and state["step"] < plan["total"]:
                continue
        break
    if not state["history"] or state["history"][-1]["step"] != state["step"]:
        validate()
    if accelerator.is_main_process:
        _save_checkpoint(out / "checkpoints" / f"step-{state['step']:07d}", bundle(),
                         optimizer, state)
        _prune(out, cfg.keep_checkpoints)
    summary = {"event": "end", "reason": stop_reason, "step": state["step"],
               "epoch": state["epoch"], "best_val": state["best_val"],
               "seconds": state["seconds"], "styles": styles, "skipped": skipped,
               "history": state["history"], "data": report, "steps_per_epoch": steps_per_epoch,
               "train_loss": sum(recent) / len(recent) if recent else math.nan,
               "tokens_per_s": tokens_seen / max(time.time() - run_started, 1e-9),
               "process": accelerator.process_index, "processes": accelerator.num_processes,
               "batches": batches_seen}
    emit(summary)
    return summary
