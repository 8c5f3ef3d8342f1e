"""drumgen in the browser: Generate, Train and About tabs over the drumgen package.

Run `make demo` (or `python app.py`). Listens on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT
(127.0.0.1:7860 by default); `--share` or DRUMGEN_SHARE=1 asks for a share link.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls at run time
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from drumgen import grid, service  # noqa: E402
from drumgen import presets as presets_mod  # noqa: E402
from drumgen.archive import ArchiveError  # noqa: E402
from drumgen.constants import DENSITY_NAMES, GMD_STYLES  # noqa: E402
from drumgen.data import default_data_dir  # noqa: E402
from drumgen.generate import Generator, Request, RequestError  # noqa: E402
from drumgen.model import GenerationDefaults, ModelError  # noqa: E402
from drumgen.pattern import MidiError  # noqa: E402
from drumgen.render import Renderer  # noqa: E402

STYLE_CHOICES = list(GMD_STYLES) + [p.name for p in presets_mod.PRESETS.values()]
NO_AUDIO_KIT = "none (MIDI only)"
USER_ERRORS = (RequestError, MidiError, ModelError, ValueError, FileNotFoundError)


def user_error(message: str) -> gr.Error:
    """An error the user can fix: shown until closed, and not logged as a crash."""
    return gr.Error(message, duration=None, print_exception=False)


def describe(style: str) -> str:
    preset = presets_mod.find(style or "")
    if preset:
        lo, hi = preset.tempo_range
        f = preset.feel
        laid = ", ".join(f"{d} {ms:+g} ms" for d, ms in f.laid_back_ms.items()) or "none"
        return (f"**{preset.name}**: {preset.description}  \nPreset = style `{preset.style}`, "
                f"{lo}-{hi} bpm, swing {f.swing:g}%, laid-back {laid}, velocity "
                f"`{f.velocity_shape}`, humanize {f.humanize:g}, kit `{preset.kit}`. A preset "
                "steers the GMD-trained model; it has not learned this producer.")
    return f"GMD style **{style}**: learned from the Groove MIDI Dataset's {style} recordings."


def on_style(style: str, kit: str):
    preset = presets_mod.find(style or "")
    if not preset:
        return describe(style), gr.update(), gr.update()
    renderer = Renderer.default()
    kit_name = renderer.kit(preset.kit).name if renderer.available else kit
    return describe(style), gr.update(value=preset.tempo), gr.update(value=kit_name)


def generate(style, tempo, bars, temperature, top_k, top_p, seed, variations=1, fill=False,
             density="auto", swing=50.0, humanize=0.0, kit=None, midi_layout="gm", prime=None,
             model=None, style_strength=None):
    """Generate grooves. Returns audio (OGG), the drum grid, the .mid, the .wav, all files,
    and a summary. Parameters and ranges: see the About tab."""
    try:
        density = _number_or_name(density)
        request = Request(style=style, bars=_int(bars, "bars"), tempo=tempo,
                          temperature=temperature, top_k=_int(top_k, "top_k"), top_p=top_p,
                          style_strength=style_strength, seed=_int(seed, "seed"),
                          variations=_int(variations, "variations"),
                          fill=fill, density=density, swing=swing, humanize=humanize,
                          prime=prime or None)
        result = service.generate(request, model or None,
                                  None if kit in (None, "", NO_AUDIO_KIT) else kit,
                                  midi_layout or "gm", audio=kit != NO_AUDIO_KIT)
    except USER_ERRORS as exc:
        raise user_error(str(exc)) from None
    take = result.takes[0]
    info = result.info + (f"  \n{result.audio_note}" if result.audio_note else "")
    choices = [t.title for t in result.takes]
    # "All variations" only when there is more than one: with one, it would repeat the
    # .mid and the audio above it, and every API client would download them twice
    files = _paths(result) if len(result.takes) > 1 else None
    return (_audio(take, kit), _grid(take), str(take.midi), _path(take.wav), files,
            info, result, gr.update(choices=choices, value=choices[0],
                                    visible=len(choices) > 1))


def show_take(result, title, kit):
    if not result or not title:
        return gr.update(), gr.update(), gr.update(), gr.update()
    take = next(t for t in result.takes if t.title == title)
    return _audio(take, kit), _grid(take), str(take.midi), _path(take.wav)


def _audio(take, kit):
    return None if kit == NO_AUDIO_KIT else _path(take.audio)


def _grid(take):
    p = take.pattern
    return grid.svg(p, f"{take.title}: {p.bars} bars at {p.tempo:g} bpm")


def _path(p):
    return str(p) if p else None


def _paths(result):
    return [str(p) for p in result.files]


def _int(value, name):
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise RequestError(f"{name} must be a whole number; got {value!r}")


def _number_or_name(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def on_model(model, style):
    """Offer the chosen model's own styles (a model trained here may know new ones), and set
    the sampling sliders to its saved defaults."""
    try:
        choices = service.style_choices(model or None)
        d = service.sampling_defaults(model or None)
    except USER_ERRORS:
        return (gr.update(),) * 5
    return (gr.update(choices=choices, value=style if style in choices else choices[0]),
            d.temperature, d.top_k, d.top_p, d.style_strength)


def _defaults(model: str | None) -> GenerationDefaults:
    try:
        return service.sampling_defaults(model)
    except USER_ERRORS:
        return GenerationDefaults()


def name_errors(fn, components) -> None:
    """Gradio checks ranges and choices itself before `fn` runs, with messages such as
    "Value 0 is less than minimum value 1." that do not say which input was wrong. Prefix each
    with the API parameter name, so the page and API clients see "bars: Value 0 is ..."."""
    for name, component in zip(inspect.signature(fn).parameters, components, strict=False):
        check = component.preprocess

        def preprocess(payload, _check=check, _name=name):
            try:
                return _check(payload)
            except gr.Error as exc:
                raise user_error(f"{_name}: {exc.message}") from None

        component.preprocess = preprocess


def new_seed() -> int:
    return random.randrange(100_000)


# ---------------------------------------------------------------------------------------------
# Training

def train(data_source, zip_file, preset, epochs, minutes, name, progress=gr.Progress()):
    """Train a model (one run at a time); yields status, a loss plot and the model list."""
    use_gmd = data_source == "Groove MIDI Dataset (on this server)"
    try:
        job = service.TRAINER.start(default_data_dir() if use_gmd else None,
                                    None if use_gmd else zip_file, preset,
                                    float(epochs) if epochs else None,
                                    float(minutes) if minutes else None, name)
    except ArchiveError as exc:  # a zip refused by the archive checks
        raise user_error(f"zip_file: {exc}") from None
    except USER_ERRORS as exc:
        raise user_error(str(exc)) from None
    except Exception as exc:  # an unreadable upload, and the like
        raise gr.Error(f"{type(exc).__name__}: {exc}", duration=None) from None
    last = -1
    while not job.done or last != len(job.events):
        if len(job.events) != last:
            last = len(job.events)
            yield _train_status(job), _loss_plot(job), gr.update()
        time.sleep(0.5)
    if job.error:
        raise gr.Error(f"Training failed: {job.error}", duration=None)
    yield (_train_status(job), _loss_plot(job),
           gr.update(choices=list(service.models()), value=job.name))


def stop_training():
    return "Stopping after the current step..." if service.TRAINER.stop() else "Nothing to stop."


def _train_status(job) -> str:
    steps = [e for e in job.events if e["event"] == "step"]
    evals = [e for e in job.events if e["event"] == "eval"]
    start = next((e for e in job.events if e["event"] == "start"), None)
    end = next((e for e in job.events if e["event"] == "end"), None)
    lines = [f"Model **{job.name}**"]
    if start:
        lines.append(f"{start['train_examples']} training / {start['val_examples']} validation "
                     f"examples, styles: {', '.join(start['styles'][-6:])}, "
                     f"{start['parameters']:,} parameters on {start['device']}")
    if steps:
        s = steps[-1]
        lines.append(f"step {s['step']}, loss {s['loss']:.3f}, {s['tokens_per_s']:.0f} tokens/s, "
                     f"{s['elapsed']:.0f} s")
    if evals:
        lines.append(f"validation loss {evals[-1]['val_loss']:.4f}")
    if end:
        lines.append(f"Finished ({end['reason']}). The model is now in the Generate tab's "
                     "model list.")
    return "  \n".join(lines)


def _loss_plot(job):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 2.6), layout="constrained")
    ax = fig.add_subplot()
    steps = [e for e in job.events if e["event"] == "step"]
    evals = [e for e in job.events if e["event"] == "eval"]
    if steps:
        ax.plot([e["step"] for e in steps], [e["loss"] for e in steps], lw=0.8, label="train")
    if evals:
        ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-",
                label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    if steps or evals:
        ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------
# Layout

ABOUT = """
## drumgen
A GPT-2 style transformer (Hugging Face `transformers`) over compound drum tokens, with a
learned style embedding added at every position. The shipped model, `drumgen-small`, was
trained on the Groove MIDI Dataset's train split and selected on its validation split: see
`models/drumgen-small/README.md` for its size, training and evaluation.

**Data credit.** Groove MIDI Dataset v1.0.0 by Jon Gillick, Adam Roberts, Jesse Engel, Douglas
Eck and David Bamman (Google Magenta), CC BY 4.0: *Learning to Groove with Inverse Sequence
Transformations*, ICML 2019.

**Producer presets** steer the GMD-trained model: a conditioning style, a tempo range, a feel
applied after generation and a kit. They are our reading of each producer's well-known habits;
the model has not learned those producers. Fine-tune on your own MIDI (Train tab or
`python -m drumgen train --init-from models/drumgen-small --data my_folder`) to teach it one.

{presets}

**API.** Every button is an endpoint. From Python:
```python
from gradio_client import Client
client = Client("http://127.0.0.1:7860/")
audio, grid, midi, wav, files, info, _variations = client.predict(
    style="funk", tempo=100, bars=4, seed=7, api_name="/generate")
```
Parameters left out take the page's defaults; temperature, top_k, top_p and style_strength
start at the model's saved generation defaults. `grid` is an SVG string; `files` lists every
variation's files when `variations` > 1.
Ranges: bars 1-16, tempo 40-300, temperature 0.05-2, top_k 0-2000 (0 = off), top_p 0.05-1,
style_strength 0-3 (1 = the style as trained, 0 = no particular style),
seed 0-2147483647, variations 1-8, density auto/sparse/normal/busy or 1-64 hits per bar,
swing 50-75 (%), humanize 0-1, midi_layout gm/td11/multitrack. Out-of-range values are refused
with a message that names the parameter, never clamped.
"""


def _preset_table() -> str:
    rows = ["| preset | style | tempo | swing | description |", "|---|---|---|---|---|"]
    for p in presets_mod.PRESETS.values():
        rows.append(f"| {p.name} | {p.style} | {p.tempo_range[0]}-{p.tempo_range[1]} | "
                    f"{p.feel.swing:g}% | {p.description} |")
    return "\n".join(rows)


def build() -> gr.Blocks:
    renderer = Renderer.default()
    kits = [k.name for k in renderer.kits] + [NO_AUDIO_KIT]
    model_names = list(service.models())
    enabled, why = service.training_enabled()
    with gr.Blocks(title="drumgen", delete_cache=(600, 900)) as demo:
        gr.Markdown("# drumgen\nExpressive drum grooves from a style-conditioned transformer. "
                    "Pick a style or a producer preset, click **Generate**, listen, and drag "
                    "the `.mid` into your DAW.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=2):
                    style = gr.Dropdown(STYLE_CHOICES, value="funk", label="Style or preset",
                                        allow_custom_value=True)  # a trained model's styles
                    style_info = gr.Markdown(describe("funk"))
                    with gr.Row():
                        tempo = gr.Slider(40, 300, value=100, step=1, label="Tempo (bpm)")
                        bars = gr.Slider(1, 16, value=4, step=1, label="Bars")
                    with gr.Row():
                        seed = gr.Number(value=7, precision=0, label="Seed", minimum=0)
                        dice = gr.Button("New random seed", size="sm")
                    with gr.Row():
                        fill = gr.Checkbox(False, label="Fill in the last bar")
                        variations = gr.Slider(1, 8, value=1, step=1, label="Variations")
                    density = gr.Dropdown(["auto", *DENSITY_NAMES], value="auto",
                                          allow_custom_value=True,
                                          label="Density (or hits per bar)")
                    with gr.Row():
                        swing = gr.Slider(50, 75, value=50, step=1, label="Swing %")
                        humanize = gr.Slider(0, 1, value=0, step=0.05, label="Humanize")
                    kit = gr.Dropdown(kits, value=kits[0], label="Kit (sound)")
                    with gr.Accordion("More", open=False):
                        # the sampling sliders start at the model's saved defaults
                        start = _defaults(model_names[0] if model_names else None)
                        temperature = gr.Slider(0.05, 2, value=start.temperature, step=0.05,
                                                label="Temperature")
                        top_k = gr.Slider(0, 200, value=start.top_k, step=1,
                                          label="Top-k (0 = off)")
                        top_p = gr.Slider(0.05, 1, value=start.top_p, step=0.01, label="Top-p")
                        style_strength = gr.Slider(
                            0, 3, value=start.style_strength, step=0.1, label="Style strength",
                            info="1 = the style as trained, 0 = no particular style, above 1 "
                                 "= its traits exaggerated")
                        midi_layout = gr.Radio(["gm", "td11", "multitrack"], value="gm",
                                               label="MIDI layout")
                        model = gr.Dropdown(model_names, value=model_names[0] if model_names
                                            else None, allow_custom_value=True, label="Model")
                        prime = gr.File(label="Prime: a MIDI groove to continue (optional)",
                                        file_types=[".mid", ".midi"], type="filepath")
                    go = gr.Button("Generate", variant="primary")
                with gr.Column(scale=3):
                    audio = gr.Audio(label="Listen (loops)", type="filepath", loop=True,
                                     interactive=False, buttons=["download"])
                    take = gr.Radio([], label="Variation", visible=False)
                    # SVG text: drawn in milliseconds, sharp at any width, a tooltip per hit
                    # (js_on_load=None: no click listener, the grid sends no events)
                    plot = gr.HTML(label="Drum grid", elem_id="drum-grid", js_on_load=None)
                    with gr.Row():
                        midi = gr.File(label="MIDI (.mid)")
                        wav = gr.File(label="Audio (.wav)")
                    files = gr.File(label="All variations", file_count="multiple",
                                    visible=False)
                    info = gr.Markdown()
            state = gr.State()
            inputs = [style, tempo, bars, temperature, top_k, top_p, seed, variations, fill,
                      density, swing, humanize, kit, midi_layout, prime, model, style_strength]
            name_errors(generate, inputs)
            go.click(generate, inputs, [audio, plot, midi, wav, files, info, state, take],
                     api_name="generate", concurrency_limit=2)
            take.change(show_take, [state, take, kit], [audio, plot, midi, wav],
                        api_visibility="private")
            # the list only shows when there can be something in it
            variations.change(lambda n: gr.update(visible=(n or 1) > 1), variations, files,
                              api_visibility="private", show_progress="hidden")
            dice.click(new_seed, None, seed, api_name="new_seed")
            style.change(on_style, [style, kit], [style_info, tempo, kit],
                         api_visibility="private")
            model.change(on_model, [model, style], [style, temperature, top_k, top_p,
                                                    style_strength], api_visibility="private")
        with gr.Tab("Train"):
            if not enabled:
                gr.Markdown(f"**{why}**")
            gr.Markdown("Train a model on the Groove MIDI Dataset or on your own MIDI: upload a "
                        "zip of style folders (`dilla/beat1.mid`, ...). The new model appears in "
                        "the Generate tab's model list. One training at a time; generating keeps "
                        "working meanwhile.")
            with gr.Row():
                with gr.Column():
                    source = gr.Radio(["Uploaded zip", "Groove MIDI Dataset (on this server)"],
                                      value="Uploaded zip", label="Data")
                    upload = gr.File(label="Zip of labelled MIDI folders", file_types=[".zip"],
                                     type="filepath")
                    t_preset = gr.Radio(["debug", "small"], value="small", label="Model size")
                    with gr.Row():
                        epochs = gr.Number(value=None, label="Epochs", minimum=0)
                        minutes = gr.Number(value=10, label="Time budget (minutes)", minimum=0)
                    name = gr.Textbox("my-model", label="Model name")
                    with gr.Row():
                        start = gr.Button("Start training", variant="primary",
                                          interactive=enabled)
                        stop = gr.Button("Stop", variant="stop")
                with gr.Column():
                    status = gr.Markdown()
                    curve = gr.Plot(label="Loss")
            name_errors(train, [source, upload, t_preset, epochs, minutes, name])
            start.click(train, [source, upload, t_preset, epochs, minutes, name],
                        [status, curve, model], api_name="train", concurrency_limit=1,
                        show_progress="minimal")
            stop.click(stop_training, None, status, api_name="stop_training")
        with gr.Tab("About"):
            gr.Markdown(ABOUT.replace("{presets}", _preset_table()))
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="drumgen web app")
    parser.add_argument("--share", action="store_true", default=os.environ.get(
        "DRUMGEN_SHARE") == "1", help="ask Gradio for a public share link")
    args = parser.parse_args(argv)
    Generator.load()  # load the shipped model once, before the first click
    demo = build()
    kwargs = {"server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
              "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
              "max_file_size": service.MAX_UPLOAD_BYTES, "theme": gr.themes.Soft()}
    demo.queue(default_concurrency_limit=2)
    if args.share:
        try:
            demo.launch(share=True, prevent_thread_lock=True, **kwargs)
        except Exception as exc:  # no share server reachable: keep serving locally
            print(f"drumgen: could not create a share link ({exc}); serving locally only.")
            demo.close()
            demo.launch(share=False, prevent_thread_lock=True, **kwargs)
        demo.block_thread()
    else:
        demo.launch(**kwargs)


if __name__ == "__main__":
    main()
