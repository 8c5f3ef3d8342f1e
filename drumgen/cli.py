"""`python -m drumgen ...`: generate, regenerate, groove, drumify, train, evaluate,
calibrate, fit-velocities, fit-shares, roundtrip, data fetch|stats."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import data as data_mod

DEFAULT_TEMPO = 100.0


def _data_arg(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--data", type=Path, default=None, required=required,
                        help=f"data folder (GMD with info.csv, or style folders of MIDI); "
                             f"default ${data_mod.ENV_VAR}, ../shared/data/groove, then "
                             f"{data_mod.CACHE_GMD}")


def _resolve_data(path: Path | None) -> Path:
    path = path or data_mod.default_data_dir()
    if path is None:
        raise SystemExit("no data folder: pass --data DIR, set DRUMGEN_DATA, or run "
                         "`python -m drumgen data fetch`")
    return path


def cmd_generate(args) -> None:
    from .generate import Generator, Request
    gen = Generator.load(args.model)
    prime = args.prime.read_bytes() if args.prime else None
    tempo = args.tempo if args.tempo is not None else _prime_tempo(prime)
    req = Request(style=args.style, bars=args.bars, tempo=tempo, seed=args.seed,
                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                  style_strength=args.style_strength, variations=args.variations,
                  fill=args.fill, density=_density(args.density),
                  swing=args.swing, humanize=args.humanize, prime=prime)
    _write(gen.generate(req), args)


def _prime_tempo(prime: bytes | None) -> float:
    """A primed groove continues at its prime's first tempo; otherwise 100 bpm."""
    from .pattern import Pattern
    return Pattern.from_midi(prime).tempo if prime else DEFAULT_TEMPO


def _write(grooves, args) -> None:
    out = Path(args.out)
    for i, groove in enumerate(grooves):
        path = out if len(grooves) == 1 else out.with_name(f"{out.stem}_{i + 1}{out.suffix}")
        groove.pattern.save(path, kit=args.kit, name=f"drumgen {groove.style}")
        print(f"wrote {path} ({groove.pattern.bars} bars at {groove.pattern.tempo:g} bpm, "
              f"{len(groove.pattern.hits)} hits, seed {groove.seed})")
        if args.wav:
            from .render import Renderer
            wav = path.with_suffix(".wav")
            renderer = Renderer.default()
            kit = renderer.choose(groove.preset or groove.style, args.sound)
            renderer.write_wav(groove.pattern, wav, kit=kit.name, reverb=not args.dry)
            print(f"wrote {wav} (kit {kit.name})")


def _edit_fields(args) -> dict:
    return dict(style=args.style, seed=args.seed, tempo=args.tempo,
                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                style_strength=args.style_strength, variations=args.variations)


def cmd_regenerate(args) -> None:
    from .edit import RegenerateRequest
    from .generate import Generator
    req = RegenerateRequest(midi=args.input.read_bytes(), keep_drums=args.keep_drums,
                            bars=args.bars, fill=args.fill, **_edit_fields(args))
    _write(Generator.load(args.model).regenerate(req), args)


def cmd_groove(args) -> None:
    from .edit import GrooveRequest
    from .generate import Generator
    req = GrooveRequest(midi=args.input.read_bytes(), strength=args.strength,
                        keep_velocity=args.keep_velocity, **_edit_fields(args))
    _write(Generator.load(args.model).groove(req), args)


def cmd_drumify(args) -> None:
    from .edit import DrumifyRequest
    from .generate import Generator
    if (args.input is None) == (args.rhythm is None):
        raise SystemExit("drumify: give a MIDI file or --rhythm, not both")
    req = DrumifyRequest(midi=args.input.read_bytes() if args.input else None,
                         rhythm=args.rhythm, track=args.track, bars=args.bars,
                         density=_density(args.density), **_edit_fields(args))
    _write(Generator.load(args.model).drumify(req), args)


def _density(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _style_weight(text: str) -> tuple[str, float]:
    name, sep, factor = text.partition("=")
    try:
        value = float(factor)
    except ValueError:
        value = None
    if not sep or not name or value is None:
        raise argparse.ArgumentTypeError(f"expected STYLE=FACTOR such as funk=2, got {text!r}")
    return name, value


def cmd_train(args) -> None:
    from tqdm import tqdm

    from .train import TrainConfig, train
    if args.epochs is None and args.time_budget is None:
        raise SystemExit("train: give --epochs N or --time-budget MINUTES")
    cfg = TrainConfig(preset=args.preset, epochs=args.epochs, time_budget=args.time_budget,
                      batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                      eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                      patience=args.patience, seed=args.seed, precision=args.precision,
                      style_balance=args.style_balance,
                      style_weights=dict(args.style_weight or []), task=args.task,
                      train_only=args.train_only)
    bar = tqdm(unit="step", dynamic_ncols=True)

    def report(event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            bar.write(f"{event['train_examples']} training and {event['val_examples']} "
                      f"validation examples, {len(event['styles'])} styles, "
                      f"{event['parameters']:,} parameters on {event['device']}")
        elif kind == "step":
            bar.total = event["total"] if event["total"] < 1e8 else None
            bar.n = event["step"]
            bar.set_postfix(loss=f"{event['loss']:.3f}", lr=f"{event['lr']:.1e}",
                            tok_s=f"{event['tokens_per_s']:.0f}")
        elif kind == "eval":
            bar.write(f"step {event['step']}: validation loss {event['val_loss']:.4f}"
                      + (" (best, saved)" if event["best"] else ""))
        elif kind in ("info", "checkpoint"):
            bar.write(event.get("message") or f"checkpoint at step {event['step']}")
        elif kind == "end":
            bar.close()
            rank = (f"[process {event['process'] + 1} of {event['processes']}: "
                    f"{event['batches']} batches] " if event["processes"] > 1 else "")
            print(f"{rank}finished ({event['reason']}) at step {event['step']}: best validation "
                  f"loss {event['best_val']:.4f}, {event['seconds'] / 60:.1f} min, "
                  f"{event['tokens_per_s']:.0f} tokens/s; {len(event['skipped'])} files skipped")
    train(cfg, _resolve_data(args.data), args.out, init_from=args.init_from,
          resume=args.resume, callback=report)


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate, format_report, report_json, target_misses
    from .pattern import atomic_write_bytes
    report = evaluate(args.model, _resolve_data(args.data), per_style=args.per_style,
                      bars=args.bars, seed=args.seed, style_strength=args.style_strength,
                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                      shares=not args.no_shares)
    print(format_report(report))
    if args.json:
        atomic_write_bytes(args.json, report_json(report).encode())
        print(f"wrote {args.json}")
    return 1 if args.check and target_misses(report) else 0


def cmd_calibrate(args) -> None:
    import dataclasses

    from . import schema
    from .evaluate import calibrate_strengths, calibration_table
    from .generate import DEFAULT_MODEL, Generator
    from .model import read_defaults, write_defaults
    for s in args.strengths:
        schema.check("style_strength", s)
    folder = Path(args.model or DEFAULT_MODEL)
    result = calibrate_strengths(folder, _resolve_data(args.data), args.strengths,
                                 per_style=args.per_style, bars=args.bars, seed=args.seed)
    print(calibration_table(result))
    if args.json:
        from .evaluate import report_json
        from .pattern import atomic_write_bytes
        reports = {f"{s:g}": json.loads(report_json(r)) for s, r in result["reports"].items()}
        atomic_write_bytes(args.json, json.dumps({"chosen": result["chosen"],
                                                  "why": result["why"],
                                                  "reports": reports}, indent=1).encode())
        print(f"wrote {args.json}")
    if args.save:
        # only the styles measured change: a fine-tuned model calibrated on its new style keeps
        # the strengths its base chose for the old ones
        old = read_defaults(folder)
        defaults = dataclasses.replace(old, style_strengths={**old.style_strengths,
                                                             **result["chosen"]})
        write_defaults(folder, defaults)
        Generator.forget(folder)
        print(f"wrote the per-style strengths into {folder / 'generation.json'}")


def cmd_fit_velocities(args) -> None:
    from .constants import DRUMS
    from .train import fit_velocity_table
    fit = fit_velocity_table(args.model, _resolve_data(args.data))
    print(f"wrote {Path(args.model) / 'velocities.json'} from {fit['hits']:,} training hits")
    for drum, row in zip(DRUMS, fit["table"], strict=True):
        print(f"  {drum:<14} " + " ".join(f"{v:3d}" for v in row))
    print(f"mean velocity of those hits {fit['velocity_mean']:.1f}; decoded with bin centres "
          f"{fit['centres_mean']:.1f}, with the table {fit['table_mean']:.1f}")


def cmd_fit_shares(args) -> None:
    from .shares import fit
    for flag, value in (("--rounds", args.rounds), ("--per-style", args.per_style)):
        if value < 1:
            raise SystemExit(f"fit-shares: {flag} must be at least 1; got {value}")
    result = fit(args.model, _resolve_data(args.data), args.rounds, args.per_style, args.seed)
    before = sum(e[0] for e in result["error"].values()) / len(result["error"])
    after = sum(e[-1] for e in result["error"].values()) / len(result["error"])
    print(f"wrote {result['path']} for {len(result['styles'])} styles: mean error "
          f"{before:.3f} before, {after:.3f} after (the mean |log ratio| of generated to "
          "training rates: each drum's hits a bar, each step's onsets a bar)")


def cmd_roundtrip(args) -> None:
    from .fidelity import roundtrip
    from .pattern import Pattern
    from .tokenizer import Tokenizer
    pattern = Pattern.from_midi(args.input)
    decoded, figures = roundtrip(pattern, Tokenizer())
    decoded.save(args.output)
    print(f"wrote {args.output}: {figures['tokens']} tokens for {pattern.bars} bars "
          f"({figures['tokens'] / pattern.bars:.1f} per bar)")
    print(f"hits kept {figures['kept']:.2%} ({figures['hits_out']}/{figures['hits_in']}), "
          f"timing error p99 {figures['timing_p99_ms']:.2f} ms, "
          f"velocity MAE {figures['velocity_mae']:.2f}")


def cmd_data(args) -> None:
    if args.action == "fetch":
        from tqdm import tqdm
        bar = tqdm(unit="B", unit_scale=True)
        def progress(done: int, total: int) -> None:
            bar.total = total or None
            bar.n = done
            bar.refresh()
        kwargs = {"url": args.url} if args.url else {}
        if args.sha256:
            kwargs["sha256"] = args.sha256
        # by default $DRUMGEN_DATA, else the cache that --data searches last
        env = os.environ.get(data_mod.ENV_VAR)
        dest = args.dest or (Path(env) if env else data_mod.CACHE_GMD)
        folder = data_mod.fetch_gmd(dest, progress=progress, **kwargs)
        bar.close()
        print(f"Groove MIDI Dataset ready at {folder} (CC BY 4.0, Gillick et al. 2019)")
    else:
        print(data_mod.stats(_resolve_data(args.dir)))


def _help(key: str, extra: str = "") -> str:
    """A parameter's --help: its declared range and meaning (`schema.PARAMS`), then `extra`."""
    from .schema import PARAMS
    p = PARAMS[key]
    return f"{p.range}: {p.help}" + (f" ({extra})" if extra else "")


def _sampling_args(p: argparse.ArgumentParser, tempo_help: str) -> None:
    """The options every verb that writes grooves shares."""
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--style", default="funk", help="a style or a producer preset")
    p.add_argument("--tempo", type=float, default=None, help=_help("tempo", tempo_help))
    p.add_argument("--seed", type=int, default=None, help=_help("seed", "default: random"))
    for name, kind in (("temperature", float), ("top_k", int), ("top_p", float),
                       ("style_strength", float)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=_help(name, "default: the model's"))
    p.add_argument("--variations", type=int, default=1, help=_help("variations", "default 1"))
    p.add_argument("--kit", default="gm", help="MIDI layout: gm, td11 or multitrack")
    p.add_argument("--sound", default=None,
                   help="kit to render --wav with (default: the one that fits the style)")
    p.add_argument("--dry", action="store_true", help="render --wav without the room reverb")
    p.add_argument("--wav", action="store_true", help="also render audio beside each MIDI")
    p.add_argument("--out", default="groove.mid")


def build_parser() -> argparse.ArgumentParser:
    from .constants import DRUM_GROUPS, DRUMS
    from .model import PRESETS
    parser = argparse.ArgumentParser(prog="drumgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate grooves to MIDI (and WAV)")
    _sampling_args(g, tempo_help="default: the prime's first tempo, else 100")
    g.add_argument("--bars", type=int, default=4, help=_help("bars", "default 4"))
    g.add_argument("--fill", action="store_true", help="a fill in the last bar")
    g.add_argument("--density", default="auto", help=_help("density", "default auto"))
    g.add_argument("--swing", type=float, default=None,
                   help=_help("swing", "default: the preset's swing, else 50"))
    g.add_argument("--humanize", type=float, default=0, help=_help("humanize", "default 0"))
    g.add_argument("--prime", type=Path, default=None, help="a MIDI file to continue")
    g.set_defaults(func=cmd_generate)

    drums = ", ".join([*DRUMS, *DRUM_GROUPS])
    r = sub.add_parser("regenerate", help="keep some drums or bars of a MIDI groove and let "
                       "the model write the rest")
    r.add_argument("input", type=Path, help="the groove (GM or TD-11 drums, 4/4)")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--keep-drums", default=None,
                      help=f"comma-separated drums to keep exactly: {drums}")
    what.add_argument("--bars", default=None, help="bars to rewrite, 1-based: 3,4 or 2-4")
    r.add_argument("--fill", action="store_true", help="write the --bars as fills")
    _sampling_args(r, tempo_help="default: the file's first tempo")
    r.set_defaults(func=cmd_regenerate)

    gr = sub.add_parser("groove", help="play a stiff pattern like a drummer: the model's "
                        "velocity and timing on every hit of the input")
    gr.add_argument("input", type=Path, help="the pattern (GM or TD-11 drums, 4/4)")
    gr.add_argument("--strength", type=float, default=1.0, help=_help("strength", "default 1"))
    gr.add_argument("--keep-velocity", action="store_true",
                    help="keep the input's velocities; change the timing only")
    _sampling_args(gr, tempo_help="default: the file's first tempo")
    gr.set_defaults(func=cmd_groove)

    d = sub.add_parser("drumify", help="drums that lock to the rhythm of any MIDI (a bass "
                       "line, a melody, a tapped rhythm) or of a typed rhythm")
    d.add_argument("input", type=Path, nargs="?", default=None, help="any MIDI file")
    d.add_argument("--rhythm", default=None,
                   help="a typed rhythm instead: 16 characters a bar, x = onset, . = rest")
    d.add_argument("--track", type=int, default=None,
                   help=_help("track", "default: every track"))
    d.add_argument("--bars", type=int, default=None,
                   help=_help("edit_bars", "repeat the rhythm to this many bars"))
    d.add_argument("--density", default="auto", help=_help("density", "default auto"))
    _sampling_args(d, tempo_help="default: the file's first tempo; 120 for --rhythm")
    d.set_defaults(func=cmd_drumify)

    t = sub.add_parser("train", help="train or fine-tune a model")
    _data_arg(t)
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--preset", default="small", choices=list(PRESETS))
    t.add_argument("--epochs", type=float, default=None)
    t.add_argument("--time-budget", type=float, default=None, help="minutes")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--init-from", type=Path, default=None, help="fine-tune this model folder")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--eval-every", type=int, default=0, help="steps; 0 = every epoch")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--patience", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--style-balance", type=float, default=0.0,
                   help="0 = styles as often as in the data, 1 = all styles equally often")
    t.add_argument("--style-weight", type=_style_weight, action="append", metavar="STYLE=X",
                   help="draw STYLE's examples X times as often as the balance alone would "
                        "(repeatable), e.g. funk=2")
    t.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    t.add_argument("--train-only", default="all", choices=["all", "style"],
                   help="all: every weight; style: only the style embeddings (with "
                        "--init-from: new styles learnt, the rest left as it was)")
    t.add_argument("--task", default="generate", choices=["generate", "groove"],
                   help="generate: grooves from scratch; groove: play a quantized pattern "
                        "(fine-tune a generate model into the head Groove uses)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="validation loss, style accuracy, feature overlap and "
                       "realism (C2ST, diversity, copies) against real grooves")
    e.add_argument("--model", default=None)
    _data_arg(e)
    e.add_argument("--per-style", type=int, default=64, help="grooves generated per style")
    e.add_argument("--bars", type=int, default=4)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--style-strength", type=float, default=None,
                   help="generate with this style strength (default: the model's)")
    e.add_argument("--temperature", type=float, default=None, help="default: the model's")
    e.add_argument("--top-k", type=int, default=None, help="default: the model's")
    e.add_argument("--top-p", type=float, default=None, help="default: the model's")
    e.add_argument("--no-shares", action="store_true",
                   help="generate without the model's drum-share biases (shares.json)")
    e.add_argument("--json", type=Path, default=None,
                   help="also write the whole report, with the target misses, to this file")
    e.add_argument("--check", action="store_true",
                   help="exit with code 1 when a target is missed")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("calibrate", help="choose each style's default style strength on the "
                       "validation split (see evaluate.calibrate_strengths for the rule)")
    c.add_argument("--model", default=None)
    _data_arg(c)
    from .evaluate import CALIBRATION_PER_STYLE, CALIBRATION_SEED, CALIBRATION_STRENGTHS
    c.add_argument("--strengths", type=lambda v: [float(x) for x in v.split(",")],
                   default=list(CALIBRATION_STRENGTHS),
                   help="comma-separated candidates (default "
                        f"{','.join(f'{s:g}' for s in CALIBRATION_STRENGTHS)})")
    c.add_argument("--per-style", type=int, default=CALIBRATION_PER_STYLE,
                   help="grooves per style and candidate")
    c.add_argument("--bars", type=int, default=4)
    c.add_argument("--seed", type=int, default=CALIBRATION_SEED, help="the selection stream")
    c.add_argument("--json", type=Path, default=None,
                   help="also write every candidate's report and the choice to this file")
    c.add_argument("--save", action="store_true",
                   help="write the chosen strengths into the model's generation.json (styles "
                        "not measured keep theirs)")
    c.set_defaults(func=cmd_calibrate)

    v = sub.add_parser("fit-velocities", help="fit a model's velocity table (what each "
                       "velocity bin plays as) to a data folder's training split")
    v.add_argument("--model", required=True, type=Path)
    _data_arg(v)
    v.set_defaults(func=cmd_fit_velocities)

    from .shares import FIT_BARS, FIT_PER_STYLE, FIT_ROUNDS, FIT_SEED
    h = sub.add_parser("fit-shares", help="fit a model's drum-share biases (how often beats "
                       "play each drum and each step) to a data folder's training split")
    h.add_argument("--model", default=None)
    _data_arg(h)
    h.add_argument("--rounds", type=int, default=FIT_ROUNDS)
    h.add_argument("--per-style", type=int, default=FIT_PER_STYLE,
                   help=f"{FIT_BARS}-bar grooves generated per style and round")
    h.add_argument("--seed", type=int, default=FIT_SEED)
    h.set_defaults(func=cmd_fit_shares)

    r = sub.add_parser("roundtrip", help="encode and decode one MIDI file")
    r.add_argument("input", type=Path)
    r.add_argument("output", type=Path)
    r.set_defaults(func=cmd_roundtrip)

    d = sub.add_parser("data", help="fetch the Groove MIDI Dataset, or print stats")
    dsub = d.add_subparsers(dest="action", required=True)
    f = dsub.add_parser("fetch")
    f.add_argument("--dest", type=Path, default=None,
                   help=f"default ${data_mod.ENV_VAR}, else {data_mod.CACHE_GMD}")
    f.add_argument("--url", default=None)
    f.add_argument("--sha256", default=None)
    s = dsub.add_parser("stats")
    s.add_argument("dir", type=Path, nargs="?", default=None)
    d.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .archive import ArchiveError
    from .generate import RequestError
    from .model import ModelError
    from .pattern import MidiError
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except (RequestError, MidiError, ModelError, ArchiveError, FileNotFoundError,
            ValueError) as exc:
        print(f"drumgen: error: {exc}", file=sys.stderr)
        return 2
    return code or 0
