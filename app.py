"""drumgen in the browser: Generate, Train and About tabs over the drumgen package.

Run `make demo` (or `python app.py`). Listens on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT
(127.0.0.1:7860 by default); `--share` or DRUMGEN_SHARE=1 asks for a share link. The page is
served before the model is loaded (DRUMGEN_PRELOAD=before loads it first).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import random
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls at run time
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

import ui_grid  # noqa: E402
from drumgen import draft as draft_mod  # noqa: E402
from drumgen import finetune as finetune_mod  # noqa: E402
from drumgen import presets as presets_mod  # noqa: E402
from drumgen import service  # noqa: E402
from drumgen.constants import DENSITY_NAMES, DRUMS, MIDI_LAYOUTS  # noqa: E402
from drumgen.folders import GenerationDefaults, ModelError  # noqa: E402
from drumgen.pattern import MidiError  # noqa: E402
from drumgen.requests import DrumifyRequest, GrooveRequest, RegenerateRequest, Request  # noqa: E402
from drumgen.schema import PARAMS, RequestError, markdown_table, setting  # noqa: E402

# The work (models, kits, rendering, files, training) goes through `service`; the rest of
# drumgen imported here is requests, errors, constants and text (tests/test_layout.py).
FIRST_STYLE = "funk"  # the style the page opens on
NO_AUDIO_KIT = "none (MIDI only)"
AUTO_KIT = "auto (fits the style)"  # the preset's or the style's kit, else the best installed
USER_ERRORS = (RequestError, MidiError, ModelError, ValueError, FileNotFoundError,
               draft_mod.DraftError)
MAX_TAKES = 50  # undo history per browser session


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


def on_style(style: str):
    """A preset sets the tempo and the swing slider to what it plays (the effective feel);
    the user can move either afterwards, swing back to straight included. The kit is left as
    the user set it: on "auto" the preset's kit plays, and the summary names it."""
    preset = presets_mod.find(style or "")
    if not preset:
        return describe(style), gr.update(), gr.update(), gr.update()
    return (describe(style), gr.update(value=preset.tempo), gr.update(),
            gr.update(value=preset.feel.swing))


def generate(style, tempo, bars, temperature=None, top_k=None, top_p=None, seed=None,
             variations=1, fill=False, density="auto", swing=None, humanize=0.0, kit=None,
             midi_layout="gm", prime=None, model=None, style_strength=None, session=None):
    """Generate drum grooves from scratch with the style-conditioned transformer.

    Returns the audio (OGG Vorbis, or FLAC from an app serving only its own machine), the
    grid (the groove as JSON: bars, tempo and hits with bar, step, drum, velocity and
    offset), the .mid, the .wav, every variation's files, a summary
    and the variation list. It answers twice: first when the shown take's audio is ready
    (the .wav and the other takes' audio not yet), then with every file. Ranges: see the
    About tab.

    Args:
        style: a GMD style (funk, rock, jazz, latin, hiphop, ...) or a producer preset.
        fill: a fill in the last bar.
        kit: the sound kit the audio is rendered with ("auto (fits the style)": the
            preset's or the style's kit, else the best installed; the summary names it).
        prime: a MIDI groove to continue (optional).
    """
    try:
        request = Request(style=style, bars=_int(bars, "bars"), tempo=tempo,
                          temperature=temperature, top_k=_int(top_k, "top_k"), top_p=top_p,
                          style_strength=style_strength, seed=_int(seed, "seed"),
                          variations=_int(variations, "variations"),
                          # the page sends an emptied number box as 0: "not set"
                          fill=fill, density=_number_or_name(density), swing=swing or None,
                          humanize=humanize, prime=prime or None)
        result = service.generate(request, model or None, _kit(kit), midi_layout or "gm",
                                  audio=kit != NO_AUDIO_KIT)
    except USER_ERRORS as exc:
        raise user_error(str(exc)) from None
    yield from _answers(result, kit, session)


def _arg_doc(key: str, note: str = "") -> str:
    """One `Args:` line from the parameter's declaration (`drumgen.schema`)."""
    return f"\n        {key}: {PARAMS[key].range}, {PARAMS[key].help}{note}."


SAMPLING_DEFAULT = " (default: the model's)"
#: generate's numeric parameters, and the sampling and output ones every edit endpoint
#: shares, for their docstrings (the API page and the MCP tool descriptions read them)
GENERATE_ARGS_DOC = "".join(
    [_arg_doc(k) for k in ("tempo", "bars", "seed", "variations", "density", "swing",
                           "humanize")]
    + [_arg_doc(k, SAMPLING_DEFAULT) for k in ("temperature", "top_k", "top_p",
                                                "style_strength")]) + f"""
        midi_layout: {", ".join(MIDI_LAYOUTS)}.
        model: a model name (default: the shipped model).
"""
generate.__doc__ = generate.__doc__.rstrip() + GENERATE_ARGS_DOC


EDIT_ARGS_DOC = "".join(_arg_doc(k, SAMPLING_DEFAULT) for k in (
    "temperature", "top_k", "top_p", "style_strength")) + f"""
        variations: {PARAMS["variations"].range}, {PARAMS["variations"].help}.
        kit: the sound kit for the audio.
        midi_layout: {", ".join(MIDI_LAYOUTS)}.
        model: a model name (default: the shipped model).
"""


def _edit_args_doc(fn):
    fn.__doc__ = fn.__doc__.rstrip() + EDIT_ARGS_DOC
    return fn


@_edit_args_doc
def regenerate(midi, style="funk", seed=None, keep_drums=None, bars=None, fill=False, tempo=None,
               temperature=None, top_k=None, top_p=None, style_strength=None, variations=1,
               kit=None, midi_layout="gm", model=None):
    """Edit a MIDI groove: keep some drums or bars exactly and let the model write the rest.

    Give keep_drums (the lanes to keep, e.g. "kick,snare") or bars (the bars to rewrite, e.g.
    "3,4"), not both. Returns what /generate returns.

    Args:
        midi: the groove, a MIDI file in 4/4 (GM or Roland TD-11 drum pitches).
        style: the style or preset the model writes in.
        seed: the random seed.
        keep_drums: comma-separated drums to keep: kick, snare, closed_hat, open_hat,
            low_tom, mid_tom, high_tom, crash, ride, or the groups hats, toms, cymbals.
        bars: comma-separated bars to rewrite, 1-based (2-4 for a range).
        fill: write the rewritten bars as fills.
        tempo: bpm of the result (empty: the file's own tempo).
    """
    request = RegenerateRequest(midi=midi, keep_drums=keep_drums or None, bars=bars or None,
                                fill=bool(fill), **_edit_args(style, seed, tempo, temperature,
                                                              top_k, top_p, style_strength,
                                                              variations))
    yield from _edit("regenerate", request, kit, midi_layout, model, None)


@_edit_args_doc
def groove(midi, style="funk", seed=None, strength=1.0, keep_velocity=False, tempo=None,
           temperature=None, top_k=None, top_p=None, style_strength=None, variations=1,
           kit=None, midi_layout="gm", model=None):
    """Play a stiff pattern like a drummer: every hit of the MIDI is kept, and the model
    plays its velocity and microtiming in the style. Returns what /generate returns.

    Args:
        midi: the pattern, a MIDI file in 4/4 (GM or Roland TD-11 drum pitches).
        style: the style or preset whose drummer plays it.
        seed: the random seed.
        strength: 0 = the input as it is, 1 = the model's playing.
        keep_velocity: keep the input's velocities and change only the timing.
        tempo: bpm of the result (empty: the file's own tempo).
    """
    request = GrooveRequest(midi=midi, strength=strength, keep_velocity=bool(keep_velocity),
                            **_edit_args(style, seed, tempo, temperature, top_k, top_p,
                                         style_strength, variations))
    yield from _edit("groove", request, kit, midi_layout, model, None)


@_edit_args_doc
def drumify(midi=None, style="funk", seed=None, rhythm=None, track=None, tempo=None,
            temperature=None, top_k=None, top_p=None, style_strength=None, variations=1,
            kit=None, midi_layout="gm", model=None):
    """Drums that lock to a rhythm: every note onset of the MIDI (a bass line, a melody, a
    tapped rhythm; every track, or `track`) or of a typed rhythm gets a kick or a snare,
    kicks and snares fall only on onsets, and the other drums play in the style. Returns
    what /generate returns.

    Args:
        midi: any MIDI file in 4/4 (leave empty when giving a rhythm).
        style: the style or preset to play in.
        seed: the random seed.
        rhythm: a typed rhythm instead of midi: 16 characters a bar, x = onset, . = rest.
        track: take the rhythm from this track only (1-based; empty: every track).
        tempo: bpm (empty: the file's own tempo; 120 for a typed rhythm).
    """
    request = DrumifyRequest(midi=midi or None, rhythm=rhythm or None,
                             track=_int(track, "track"),
                             **_edit_args(style, seed, tempo, temperature, top_k, top_p,
                                          style_strength, variations))
    yield from _edit("drumify", request, kit, midi_layout, model, None)


def _api(fn):
    """`fn` as a named endpoint: the same parameters and docstring (which the API page and
    the MCP tool descriptions show), without the page's session history."""
    @functools.wraps(fn)
    def endpoint(*args):
        for answer in fn(*args):
            yield answer[:-1]
    return endpoint


def _edit_args(style, seed, tempo, temperature, top_k, top_p, style_strength, variations):
    return dict(style=style or "funk", seed=_int(seed, "seed"), tempo=tempo or None,
                temperature=temperature, top_k=_int(top_k, "top_k"), top_p=top_p,
                style_strength=style_strength, variations=_int(variations, "variations") or 1)


def _edit(verb, request, kit, midi_layout, model, session):
    try:
        result = service.edit(verb, request, model or None, _kit(kit), midi_layout or "gm",
                              audio=kit != NO_AUDIO_KIT)
    except USER_ERRORS as exc:
        raise user_error(str(exc)) from None
    yield from _answers(result, kit, session)


def _answers(result, kit, session):
    """The first answer as soon as the shown take's audio is there; then, when the .wav and
    the other takes' audio are rendered (`service.finish`), the whole answer. A page shows
    the first; `gradio_client`'s `predict` and MCP clients get the whole one."""
    yield _answer(result, kit, session)
    if service.finish(result):
        yield _answer(result, kit, session)


def _answer(result, kit, session):
    """The outputs every groove-writing event shares: audio, grid, .mid, .wav, every take's
    files, the summary, the variation list, and the session (history and variations)."""
    take = result.takes[0]
    info = summary(result)
    choices = [t.title for t in result.takes]
    # "All variations" only when there is more than one: with one, it would repeat the
    # .mid and the audio above it, and every API client would download them twice
    files = [str(p) for p in result.files] if len(result.takes) > 1 else None
    grid_value = _grid(take)
    return (_audio(take, kit), grid_value, str(take.midi), _path(take.wav), files, info,
            gr.update(choices=choices, value=choices[0], visible=len(choices) > 1),
            _push(session, grid_value, result.verb, result))


# -- the summary under the files ---------------------------------------------------------------

#: What each edit did, in words, from its first groove's settings.
EDIT_SUMMARIES = {
    "regenerate": lambda g: (f"kept {', '.join(g.settings['keep_drums'])}, regenerated the "
                             "rest" if "keep_drums" in g.settings else
                             f"regenerated bar(s) {', '.join(map(str, g.settings['bars']))}"
                             + (" as fills" if g.settings.get("fill") else "")),
    "groove": lambda g: (f"played every hit with the model's "
                         f"{'timing' if g.settings['keep_velocity'] else 'velocity and timing'}"
                         f", strength {g.settings['strength']:g} ({g.settings['player']})"),
    "drumify": lambda g: f"drums on {g.settings['onsets']} onsets",
}


def summary(result) -> str:
    """A `service.Result` as the Markdown line under the files: what made it, its settings,
    the kit that played and the times, then the audio note if there is one."""
    if result.verb == "draft":
        text = _draft_summary(result)
    elif result.verb == "generate":
        text = _generate_summary(result)
    else:
        text = _edit_summary(result)
    return text + (f"  \n{result.audio_note}" if result.audio_note else "")


def _generate_summary(result) -> str:
    g, request = result.groove, result.request
    return (f"{_groove_line(result, request.bars, request.tempo)}  \n"
            f"{_sampling_line(g)}, density {request.density}, fill "
            f"{'on' if request.fill else 'off'}, swing {g.settings['feel'].swing:g}%, "
            f"humanize {g.settings['feel'].humanize:g}, {_output_line(result)}  \n"
            f"generated in {_times(result)}")


def _edit_summary(result) -> str:
    g = result.groove
    return (f"**{result.verb}**: {EDIT_SUMMARIES[result.verb](g)}. "
            f"{_groove_line(result, g.pattern.bars, g.pattern.tempo)}  \n"
            f"{_sampling_line(g)}, {_output_line(result)}  \nedited in {_times(result)}")


def _draft_summary(result) -> str:
    p = result.takes[0].pattern
    return (f"**draft**: {len(p.hits)} hits, {p.bars} bars at {p.tempo:g} bpm, kit "
            f"{result.kit or 'none'}, rendered in {result.render_s * 1000:.0f} ms")


def _groove_line(result, bars, tempo) -> str:
    g = result.groove
    return (f"**{g.preset or g.style}** (style `{g.style}`), {bars} bars at {tempo:g} bpm, "
            f"seed **{g.seed}**, {len(result.takes)} variation(s)")


def _sampling_line(groove) -> str:
    s = groove.settings
    return (f"temperature {s['temperature']:g}, top-k {s['top_k']}, top-p {s['top_p']:g}, "
            f"style strength {s['style_strength']:g}")


def _output_line(result) -> str:
    return f"kit {result.kit or 'none'}, MIDI {result.midi_layout}"


def _times(result) -> str:
    return f"{result.gen_s * 1000:.0f} ms, rendered in {result.render_s * 1000:.0f} ms"


# -- the draft on the page --------------------------------------------------------------------

def _page_sampling(style, seed, temperature, top_k, top_p, style_strength, variations):
    return _edit_args(style, seed, None, temperature, top_k, top_p, style_strength, variations)


def edit_lanes(grid, style, seed, temperature, top_k, top_p, style_strength, variations, kit,
               midi_layout, model, session):
    """Regenerate every lane of the draft that is not locked."""
    pattern, locked, _ = _read_grid(grid)
    if not locked:
        raise user_error("keep_drums: lock at least one lane (its lock button, left of the "
                         "grid) to keep it; every other lane is regenerated")
    request = RegenerateRequest(midi=pattern, keep_drums=[DRUMS[d] for d in locked],
                                **_page_sampling(style, seed, temperature, top_k, top_p,
                                                 style_strength, variations))
    yield from _edit("regenerate", request, kit, midi_layout, model, session)


def edit_bars(grid, as_fill, style, seed, temperature, top_k, top_p, style_strength,
              variations, kit, midi_layout, model, session):
    """Rewrite the selected bars of the draft (as fills when asked)."""
    pattern, _, selected = _read_grid(grid)
    if not selected:
        raise user_error("bars: select the bars to rewrite first (click a bar number above "
                         "the grid)")
    request = RegenerateRequest(midi=pattern, bars=[b + 1 for b in selected],
                                fill=bool(as_fill), **_page_sampling(
                                    style, seed, temperature, top_k, top_p, style_strength,
                                    variations))
    yield from _edit("regenerate", request, kit, midi_layout, model, session)


def edit_groove(grid, strength, keep_velocity, style, seed, temperature, top_k, top_p,
                style_strength, variations, kit, midi_layout, model, session):
    """Play every hit of the draft with the model's velocity and timing."""
    pattern, _, _ = _read_grid(grid)
    request = GrooveRequest(midi=pattern, strength=strength, keep_velocity=bool(keep_velocity),
                            **_page_sampling(style, seed, temperature, top_k, top_p,
                                             style_strength, variations))
    yield from _edit("groove", request, kit, midi_layout, model, session)


def edit_drumify(midi, rhythm, bars, tempo, style, seed, temperature, top_k, top_p,
                 style_strength, variations, kit, midi_layout, model, session):
    """Drums for an uploaded MIDI's rhythm, or a typed one (repeated to the page's bars)."""
    typed = (rhythm or "").strip() or None
    if midi and typed:
        raise user_error("drumify: give a MIDI file or a typed rhythm, not both (clear one)")
    request = DrumifyRequest(
        midi=midi or None, rhythm=typed, bars=_int(bars, "bars") if typed else None,
        **_page_sampling(style, seed, temperature, top_k, top_p, style_strength, variations))
    if typed:
        request.tempo = tempo
    yield from _edit("drumify", request, kit, midi_layout, model, session)


def edit_draft(grid, style, kit, midi_layout, session):
    """The page's grid after a click: checked, then written to .mid and audio. As an API
    endpoint it takes a whole draft ({"draft": {"bars", "tempo", "hits"}}) and returns its
    audio, .mid, .wav and summary.

    Args:
        grid: {"draft": {"bars": N, "tempo": bpm, "hits": [{"bar", "step", "drum",
            "velocity", "offset"}]}}; bar and step are 0-based.
        style: the style or preset (chooses the kit of a preset).
        kit: the sound kit for the audio.
        midi_layout: gm, td11 or multitrack.
    """
    pattern, _, _ = _read_grid(grid)
    result = _render_draft(pattern, style, kit, midi_layout)
    take = result.takes[0]
    info = summary(result)
    session = _push(session, dict(grid, title=f"Draft: {pattern.bars} bars at "
                                              f"{pattern.tempo:g} bpm"), "hand edit")
    yield _audio(take, kit), str(take.midi), _path(take.wav), info, session
    if service.finish(result):  # the .wav after the audio (see `_answers`)
        yield _audio(take, kit), str(take.midi), _path(take.wav), info, session


def _render_draft(pattern, style, kit, midi_layout):
    """`service.render_draft` for the page: a bad setting is the user's error."""
    try:
        return service.render_draft(pattern, style, _kit(kit), midi_layout or "gm",
                                    audio=kit != NO_AUDIO_KIT)
    except USER_ERRORS as exc:
        raise user_error(str(exc)) from None


def _read_grid(grid):
    try:
        return ui_grid.read(grid)
    except draft_mod.DraftError as exc:
        raise user_error(str(exc)) from None


def _push(session, grid_value, source, result=None):
    """The session's takes with `grid_value` after the current one (dropping any redo).

    One gr.State holds the whole session (takes, current index, the last result's
    variations): Gradio's MCP server drops State outputs by index and fails when an event
    has two of them."""
    session = dict(session or {"takes": [], "index": -1})
    takes = session["takes"][: session["index"] + 1] + [{"grid": grid_value, "source": source}]
    takes = takes[-MAX_TAKES:]
    return {"takes": takes, "index": len(takes) - 1,
            "result": result if result is not None else session.get("result")}


def step_history(session, delta, kit, midi_layout, style):
    """Undo (delta -1) or redo (+1): the take before or after this one, written again."""
    session = session or {"takes": [], "index": -1}
    index = session["index"] + delta
    if not 0 <= index < len(session["takes"]):
        raise user_error("Nothing to undo." if delta < 0 else "Nothing to redo.")
    grid_value = session["takes"][index]["grid"]
    pattern, _, _ = _read_grid(grid_value)
    result = _render_draft(pattern, style, kit, midi_layout)
    service.finish(result)
    take = result.takes[0]
    where = f"take {index + 1} of {len(session['takes'])} ({session['takes'][index]['source']})"
    return (_audio(take, kit), dict(grid_value, locked=None, selected=None), str(take.midi),
            _path(take.wav), f"**{'undo' if delta < 0 else 'redo'}**: {where}",
            {**session, "index": index})


def show_take(title, kit, session):
    result = (session or {}).get("result")
    if not result or not title:
        return (gr.update(),) * 5
    take = service.take_audio(result, next(t for t in result.takes if t.title == title))
    grid_value = _grid(take)
    session = dict(session or {"takes": [], "index": -1})
    if session["takes"]:  # the take on show is the current draft
        session["takes"] = list(session["takes"])
        session["takes"][session["index"]] = {**session["takes"][session["index"]],
                                              "grid": grid_value}
    return _audio(take, kit), grid_value, str(take.midi), _path(take.wav), session


# -- share links ----------------------------------------------------------------------------

#: Settings a share link carries, by their API names; the page reads the same names back.
SHARED = ("style", "tempo", "bars", "seed", "variations", "fill", "density", "swing",
          "humanize", "temperature", "top_k", "top_p", "style_strength", "midi_layout",
          "model")
MAX_LINK_DRAFT = 6000  # characters of draft code a link carries (URLs stay under ~8 KB)


def share_link(session, *values):
    """The query string of a link to this groove: its settings and seed, and the draft too
    when it was edited (the settings alone no longer make it)."""
    from urllib.parse import urlencode
    params = {k: _plain(v) for k, v in zip(SHARED, values, strict=True)
              if v not in (None, "")}
    note = "Opening this link and pressing Generate makes the same groove."
    current = (session or {}).get("takes") and session["takes"][session["index"]]
    if current and current["source"] != "generate":
        pattern, _, _ = _read_grid(current["grid"])
        code = draft_mod.pack(pattern)
        if len(code) <= MAX_LINK_DRAFT:
            params["draft"] = code
            note = "This link opens your edited draft; Generate there makes a new groove."
        else:
            note = (f"Your edits are too large for a link ({len(code):,} characters); the "
                    "link has the settings and seed only. Share the .mid for the edits.")
    return "?" + urlencode(params), note


def _plain(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def open_link(request: gr.Request, kit, midi_layout, session):
    """Set the page from its URL query (see `share_link`); a `draft` opens on the grid."""
    query = dict(request.query_params) if request else {}
    updates = []
    for name in SHARED:
        updates.append(_from_query(name, query[name]) if name in query else gr.update())
    if "draft" not in query:
        return (*updates, *(gr.update(),) * 5)
    try:
        pattern = draft_mod.unpack(query["draft"])
        result = service.render_draft(pattern, query.get("style"), _kit(kit),
                                     query.get("midi_layout") or midi_layout or "gm",
                                     audio=kit != NO_AUDIO_KIT)
        service.finish(result)
    except USER_ERRORS as exc:  # a damaged code or a bad layout: the page stays as it was
        gr.Warning(f"The link's draft could not be opened: {exc}")
        return (*updates, *(gr.update(),) * 5)
    grid_value = ui_grid.value(pattern, f"Shared draft: {pattern.bars} bars at "
                               f"{pattern.tempo:g} bpm")
    take = result.takes[0]
    return (*updates, _audio(take, kit), grid_value, str(take.midi), _path(take.wav),
            _push(session, grid_value, "link"))


def _from_query(name, text):
    if name in ("style", "density", "midi_layout", "model"):
        return text
    if name == "fill":
        return text.lower() in ("1", "true", "yes", "on")
    try:
        number = float(text)
    except ValueError:
        gr.Warning(f"The link's {name}={text!r} is not a number; it was left as it was.")
        return gr.update()
    return int(number) if number.is_integer() else number


# -- helpers --------------------------------------------------------------------------------

def _kit(kit):
    return None if kit in (None, "", NO_AUDIO_KIT, AUTO_KIT) else kit


def _audio(take, kit):
    return None if kit == NO_AUDIO_KIT else _path(take.audio)


def _grid(take):
    p = take.pattern
    return ui_grid.value(p, f"{take.title}: {p.bars} bars at {p.tempo:g} bpm")


def _path(p):
    return str(p) if p else None


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
    style = style if style in choices else choices[0]
    return (gr.update(choices=choices, value=style), d.temperature, d.top_k, d.top_p,
            d.strength_for(presets_mod.style_of(style)))


def on_style_picked(style, model):
    """The style strength slider moves to the model's own strength for the style the user
    picked (`drumgen calibrate` gives each style its own). Only on the user's pick: a shared
    link sets the style and its own strength together."""
    try:
        defaults = service.sampling_defaults(model or None)
        return defaults.strength_for(presets_mod.style_of(style or ""))
    except USER_ERRORS:
        return gr.update()


def _style_choices(model: str | None) -> list[str]:
    try:
        return service.style_choices(model)
    except USER_ERRORS:  # an unreadable model: the page still opens, and says so on Generate
        return []


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

def train(data_source, zip_file, name, from_scratch=False, preset="small", epochs=0,
          time_budget=finetune_mod.FINETUNE_MINUTES, lr=None, batch_size=None, overwrite=False,
          train_only=finetune_mod.FINETUNE_TRAIN, init_from=None, progress=gr.Progress()):
    """Teach a model your style: fine-tune the model chosen in the Generate tab on a zip of
    style folders of MIDI (`dilla/beat1.mid`, ...), or train one from scratch. One run at a
    time; yields the status (with what the data is likely to give), the loss curve and the
    model list. The new model is listed under `name` once it is finished.

    Args:
        data_source: "Uploaded zip", or "Groove MIDI Dataset (on this server)".
        zip_file: a zip of style folders of .mid files (a folder's name is its style).
        name: the new model's name: 1-40 letters, digits, - or _.
        from_scratch: train a new model instead of fine-tuning init_from.
        preset: the size of a model trained from scratch: debug or small.
        epochs: passes over the data, {epochs[0]:g}-{epochs[1]:g} (0 = no limit).
        time_budget: minutes, {time_budget[0]:g}-{time_budget[1]:g} (0 = no limit); the
            default is {minutes:g}.
        lr: learning rate {lr[0]:g} to {lr[1]:g} (empty or 0: {finetune_lr:g} fine-tuning
            the style embeddings, {all_lr:g} every weight, {scratch_lr:g} from scratch).
        batch_size: examples a step, {batch_size[0]:g}-{batch_size[1]:g} (empty or 0:
            {batch}).
        overwrite: replace a model of the same name (otherwise a taken name is refused).
        train_only: what fine-tuning trains: "style" (the style embeddings; the old styles
            stay as they were) or "all" (every weight).
        init_from: the model to fine-tune (default: the shipped model).
    """
    try:
        request = service.TrainRequest(
            name=name, zip_file=zip_file, data_source=data_source,
            init_from=init_from or None, from_scratch=bool(from_scratch), preset=preset,
            epochs=epochs, time_budget=time_budget, lr=lr or None,  # the page's 0 = empty
            batch_size=_int(batch_size, "batch_size") or None, overwrite=bool(overwrite),
            train_only=train_only)
        job = service.TRAINER.start(request)
    except USER_ERRORS as exc:
        raise user_error(str(exc)) from None
    except Exception as exc:  # an unreadable upload, and the like
        raise gr.Error(f"{type(exc).__name__}: {exc}", duration=None) from None
    last = -1
    while not job.done or last != len(job.events):
        if len(job.events) != last:
            last = len(job.events)
            _progress(progress, job)
            yield _train_status(job), _loss_points(job), gr.update()
        time.sleep(0.5)
    if job.error:
        raise gr.Error(f"Training failed: {job.error}", duration=None)
    yield (_train_status(job), _loss_points(job),
           gr.update(choices=list(service.models()), value=job.name))


# the ranges and defaults in train's docstring (the API page, MCP) are drumgen.finetune's
train.__doc__ = train.__doc__.format(
    **finetune_mod.TRAIN_RANGES, minutes=finetune_mod.FINETUNE_MINUTES,
    finetune_lr=finetune_mod.FINETUNE_LR, all_lr=finetune_mod.FINETUNE_ALL_LR,
    scratch_lr=finetune_mod.SCRATCH_LR,
    batch=finetune_mod.FINETUNE_BATCH)


def _progress(progress, job) -> None:
    step = next((e for e in reversed(job.events) if e["event"] == "step"), None)
    if step and step["total"] < 1e8:
        progress((step["step"], step["total"]), desc=f"training {job.name}", unit="steps")
    elif step is None:
        reading = next((e for e in reversed(job.events) if e["event"] == "reading"), None)
        if reading:
            progress((reading["done"], reading["total"]), desc="reading MIDI", unit="files")


def stop_training():
    return "Stopping after the current step..." if service.TRAINER.stop() else "Nothing to stop."


def _train_status(job) -> str:
    steps = [e for e in job.events if e["event"] == "step"]
    evals = [e for e in job.events if e["event"] == "eval"]
    start = next((e for e in job.events if e["event"] == "start"), None)
    end = next((e for e in job.events if e["event"] == "end"), None)
    how = f"fine-tuning **{job.base}**" if job.base else "training from scratch"
    lines = [f"Model **{job.name}**: {how}"]
    if start:
        lines.append(f"{start['train_examples']} training / {start['val_examples']} validation "
                     f"examples, {start['parameters']:,} parameters on {start['device']}")
        lines += finetune_mod.data_lines(start["data"])
        lines += [f"**Note:** {w}" for w in finetune_mod.data_warnings(start["data"])]
    if steps:
        s = steps[-1]
        lines.append(f"step {s['step']}, loss {s['loss']:.3f}, {s['tokens_per_s']:.0f} tokens/s, "
                     f"{s['elapsed']:.0f} s")
    if evals:
        lines.append(f"validation loss {evals[-1]['val_loss']:.4f}")
    if end:
        lines += [f"**Note:** {w}" for w in finetune_mod.result_warnings(end)]
        if job.done and not job.error:
            lines.append(f"Finished ({end['reason']}): best validation loss "
                         f"{end['best_val']:.4f}. **{job.name}** is now in the Generate tab's "
                         f"model list; its card is `{job.name}/README.md`."
                         + (f" Its old styles were fine-tuned too and may play differently: "
                            f"for them, **{job.base}** is unchanged."
                            if job.base and job.train_only == "all" else ""))
    return "  \n".join(lines)


TRAIN_INTRO = f"""Teach drumgen your producer's style: upload a zip of style folders of MIDI
(`dilla/beat1.mid`, ...; a folder's name becomes a style) and press **Start training**. The
model chosen in the Generate tab is fine-tuned on it (new styles start at the average of the
styles it knows), for {finetune_mod.FINETUNE_MINUTES:g} minutes by default. The new model
appears in the Generate tab's model list under the name you give, with a card (`README.md`)
in its folder. About {finetune_mod.ENOUGH_FILES} files and {finetune_mod.ENOUGH_BARS} bars
make a style; with fewer, expect close copies of your files, and the status says so. One
training at a time; generating keeps working meanwhile. Training from scratch is under
*Advanced*."""


def _base_note(model_name) -> str:
    if not model_name:
        return "Starts **from scratch** (a new model that knows only this data)."
    return f"Fine-tunes **{model_name}** (the Generate tab's model) on this data."


MAX_PLOT_POINTS = 400  # per curve: a long run is thinned, so the plot stays cheap to redraw


def _loss_points(job):
    """The loss curve as a table for gr.LinePlot: training loss (thinned to at most
    MAX_PLOT_POINTS) and every validation loss."""
    import pandas as pd
    steps = [e for e in job.events if e["event"] == "step"]
    stride = max(1, len(steps) // MAX_PLOT_POINTS)
    rows = [(e["step"], e["loss"], "train") for e in steps[::stride]]
    rows += [(e["step"], e["val_loss"], "validation") for e in job.events
             if e["event"] == "eval"]
    return pd.DataFrame(rows, columns=["step", "loss", "curve"])


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

**Sound credit.** The acoustic kits Black Pearl and Red Zeppelin are AVL Drumkits by Glen
MacArthur (AV Linux, bandshed.net), CC BY-SA 3.0, from Debian's `avldrums.lv2-soundfont`
(x42's avldrums.lv2); music made with them may be licensed freely. The General MIDI kits are
FluidR3_GM by Frank Wen (MIT), from Debian's `fluid-soundfont-gm`. `drumgen-kit` is our own
synthesized kit, CC0. Each installed kit is listed under *Kit (sound)*.

**Producer presets** steer the GMD-trained model: a conditioning style, a tempo range, a feel
applied after generation and a kit. They are our reading of each producer's well-known habits;
the model has not learned those producers. Fine-tune on your own MIDI (Train tab or
`python -m drumgen train --init-from models/drumgen-small --data my_folder`) to teach it one.

{presets}

**Your own style (Train tab).** Upload a zip of style folders of MIDI (`dilla/beat1.mid`,
...): by default the model chosen in the Generate tab is **fine-tuned** on it, each folder
becoming a new style next to the ones it knows, with settings measured to give a usable style
in minutes on a 2-core CPU. Only the style embeddings are trained unless you ask for every
weight, so the styles it knew play as before. The new model is listed under exactly the
name you give (a taken name is refused unless you ask to replace it), and its folder holds a
card (`README.md`: base model, files and bars per style, settings, steps, validation loss).
The status says what small data is likely to give. Training from scratch, every weight, a
learning rate and a batch size are under *Advanced*. The same job is the `/train` endpoint:
`client.predict(zip_file=handle_file("dilla.zip"), name="my-dilla", api_name="/train")`.

**Editing.** The grid is the draft. Click a cell to add or remove a hit (Shift-click: an
accent, Alt-click: a soft hit). Press *keep* on the lanes you like and **Regenerate unlocked
lanes**: the kept lanes stay exactly as they were and the model writes the rest around them.
Click bar numbers and **Regenerate selected bars** (optionally as a fill): the other bars stay
as they were. **Groove it** plays every hit with the model's velocity and timing in the
style (*Groove strength* 0 = your pattern, 1 = the model's playing). **Drumify** turns any
MIDI (a bass line, a melody) or a typed rhythm (`x..x..x.x...x...`, 16 a bar) into drums
whose kicks and snares fall exactly on its onsets. **Undo** and **Redo** step through this
session's takes; **Share link** gives a URL that reproduces the groove (and carries an
edited draft). The same edits are endpoints (`/regenerate`, `/groove`, `/drumify`, `/draft`),
CLI verbs (`python -m drumgen regenerate|groove|drumify`) and MCP tools
(`/gradio_api/mcp/sse`).

**API.** Every operation is a named endpoint. From Python:
```python
from gradio_client import Client
client = Client("http://127.0.0.1:7860/")
audio, grid, midi, wav, files, info, _variations = client.predict(
    style="funk", tempo=100, bars=4, seed=7, api_name="/generate")
```
Parameters left out take the page's defaults, except temperature, top_k, top_p and
style_strength: left out, they are the chosen model's saved generation defaults, and
style_strength the chosen style's own. `grid` is the groove as a draft (bars, tempo
and hits with bar, step, drum, velocity and offset); `files` lists every variation's files
when `variations` > 1. Edits: `client.predict(midi=handle_file("in.mid"),
keep_drums="kick,snare", api_name="/regenerate")`, or `bars="3,4", fill=True`;
`/groove` takes `strength` and `keep_velocity`; `/drumify` takes `midi` (and `track`) or
`rhythm`.
Every parameter's range (out-of-range values are refused with a message that names the
parameter, never clamped):

{parameters}
"""


def _preset_table() -> str:
    rows = ["| preset | style | tempo | swing | description |", "|---|---|---|---|---|"]
    for p in presets_mod.PRESETS.values():
        rows.append(f"| {p.name} | {p.style} | {p.tempo_range[0]}-{p.tempo_range[1]} | "
                    f"{p.feel.swing:g}% | {p.description} |")
    return "\n".join(rows)


def _slider(key: str, value, label: str, **options) -> gr.Slider:
    """A slider over the parameter's declared range (`drumgen.schema`)."""
    p = PARAMS[key]
    return gr.Slider(p.lo, p.hi, value=value, step=p.step, label=label, **options)


def build() -> gr.Blocks:
    kits = [AUTO_KIT, *service.kits(), NO_AUDIO_KIT]
    model_names = list(service.models())
    enabled, why = service.training_enabled()
    with gr.Blocks(title="drumgen", delete_cache=(600, 900)) as demo:
        gr.Markdown("# drumgen\nExpressive drum grooves from a style-conditioned transformer. "
                    "Pick a style or a producer preset, click **Generate**, listen, then edit "
                    "the groove on the grid and drag the `.mid` into your DAW.")
        session = gr.State()
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=2):
                    style = gr.Dropdown(_style_choices(model_names[0] if model_names
                                                       else None),
                                        value=FIRST_STYLE, label="Style or preset",
                                        allow_custom_value=True)  # a trained model's styles
                    style_info = gr.Markdown(describe(FIRST_STYLE))
                    with gr.Row():
                        tempo = _slider("tempo", 100, "Tempo (bpm)")
                        bars = _slider("bars", 4, "Bars")
                    with gr.Row():
                        seed = gr.Number(value=7, precision=0, label="Seed",
                                         minimum=PARAMS["seed"].lo, maximum=PARAMS["seed"].hi)
                        dice = gr.Button("New random seed", size="sm")
                    with gr.Row():
                        fill = gr.Checkbox(False, label="Fill in the last bar")
                        variations = _slider("variations", 1, "Variations")
                    density = gr.Dropdown(["auto", *DENSITY_NAMES], value="auto",
                                          allow_custom_value=True,
                                          label="Density (or hits per bar)")
                    with gr.Row():
                        # a number, not a slider, so that it can be empty (None): the
                        # preset's own swing, else straight; choosing a preset shows its swing
                        swing = gr.Number(None, label=f"Swing % ({PARAMS['swing'].range})",
                                          info="empty: the preset's, else straight")
                        humanize = _slider("humanize", 0, "Humanize")
                    kit = gr.Dropdown(kits, value=kits[0], label="Kit (sound)")
                    with gr.Accordion("More", open=False):
                        # the sampling sliders start at the model's saved defaults
                        start = _defaults(model_names[0] if model_names else None)
                        temperature = _slider("temperature", start.temperature, "Temperature")
                        top_k = _slider("top_k", start.top_k, "Top-k (0 = off)")
                        top_p = _slider("top_p", start.top_p, "Top-p")
                        style_strength = _slider("style_strength", start.strength_for(FIRST_STYLE),
                                                 "Style strength",
                                                 info=PARAMS["style_strength"].help)
                        midi_layout = gr.Radio(list(MIDI_LAYOUTS), value="gm",
                                               label="MIDI layout")
                        model = gr.Dropdown(model_names, value=model_names[0] if model_names
                                            else None, allow_custom_value=True, label="Model")
                        prime = gr.File(label="Prime: a MIDI groove to continue (optional)",
                                        file_types=[".mid", ".midi"], type="filepath")
                    go = gr.Button("Generate", variant="primary")
                with gr.Column(scale=3):
                    audio = gr.Audio(label="Listen (loops; space bar plays and stops)",
                                     type="filepath", loop=True, interactive=False,
                                     buttons=["download"], elem_id="drum-audio")
                    take = gr.Radio([], label="Variation", visible=False)
                    grid = gr.HTML(None, label="Drum grid (click to edit)", elem_id="drum-grid",
                                   html_template=ui_grid.TEMPLATE, css_template=ui_grid.CSS,
                                   js_on_load=ui_grid.JS)
                    with gr.Row():
                        redo_lanes = gr.Button("Regenerate unlocked lanes", size="sm")
                        redo_bars = gr.Button("Regenerate selected bars", size="sm")
                        as_fill = gr.Checkbox(False, label="as a fill", min_width=80)
                    with gr.Row():
                        groove_it = gr.Button("Groove it", size="sm")
                        strength = _slider("strength", 1, "Groove strength")
                        keep_velocity = gr.Checkbox(False, label="keep velocities")
                    with gr.Accordion("Drumify: drums that lock to a bass line or a rhythm",
                                      open=False):
                        with gr.Row():
                            drumify_midi = gr.File(label="Any MIDI (bass line, melody...)",
                                                   file_types=[".mid", ".midi"],
                                                   type="filepath", elem_id="drumify-midi")
                            rhythm = gr.Textbox(label="or type a rhythm (16 a bar)",
                                                placeholder="x..x..x.x...x...")
                        drumify_go = gr.Button("Drumify", size="sm")
                    with gr.Row():
                        undo = gr.Button("Undo", size="sm")
                        redo = gr.Button("Redo", size="sm")
                        share = gr.Button("Share link", size="sm")
                    link = gr.Textbox(label="Link to this groove", visible=True, interactive=False,
                                      buttons=["copy"], elem_id="share-link")
                    link_note = gr.Markdown()
                    with gr.Row():
                        midi = gr.File(label="MIDI (.mid)")
                        wav = gr.File(label="Audio (.wav)")
                    files = gr.File(label="All variations", file_count="multiple",
                                    visible=False)
                    info = gr.Markdown()
            # inputs of the edit endpoints that the page fills from its draft instead
            with gr.Row(visible=False):
                api_midi = gr.File(label="midi", type="filepath")
                keep_drums = gr.Textbox(label="keep_drums")
                bars_text = gr.Textbox(label="bars")
                api_tempo = gr.Number(None, label="tempo")
                track = gr.Number(None, label="track", precision=0)
                # The endpoints' sampling settings default to None, not to the page's
                # sliders: left out, they are the chosen model's defaults and the chosen
                # style's own strength (the sliders hold the opening style's)
                api_sampling = [gr.Number(None, label=name, precision=0 if name == "top_k"
                                          else None)
                                for name in ("temperature", "top_k", "top_p", "style_strength")]
                api_buttons = [gr.Button(visible=False) for _ in range(4)]
            # The named endpoints (API and MCP tools) take no State: Gradio's MCP server
            # mis-handles State in queued events. The page's own buttons run the same
            # functions as private events that also keep the session's undo history.
            api_out = [audio, grid, midi, wav, files, info, take]
            outputs = [*api_out, session]
            sampling = [temperature, top_k, top_p, style_strength, variations]
            page = [style, seed, *sampling, kit, midi_layout, model, session]
            inputs = [style, tempo, bars, temperature, top_k, top_p, seed, variations, fill,
                      density, swing, humanize, kit, midi_layout, prime, model, style_strength]
            name_errors(generate, inputs)
            go.click(generate, [*inputs, session], outputs, api_name="page_generate",
                     api_visibility="private", concurrency_limit=2)
            edit_out = outputs
            swap = dict(zip([temperature, top_k, top_p, style_strength], api_sampling,
                            strict=True))
            api_inputs = [swap.get(c, c) for c in inputs]
            api_samp = [*api_sampling, variations]
            for fn, components, name in (
                    (generate, api_inputs, "generate"),
                    (regenerate, [api_midi, style, seed, keep_drums, bars_text, as_fill,
                                  api_tempo, *api_samp, kit, midi_layout, model], "regenerate"),
                    (groove, [api_midi, style, seed, strength, keep_velocity, api_tempo,
                              *api_samp, kit, midi_layout, model], "groove"),
                    (drumify, [api_midi, style, seed, rhythm, track, api_tempo, *api_samp, kit,
                               midi_layout, model], "drumify")):
                name_errors(fn, components)
                api_buttons.pop().click(_api(fn), components, api_out, api_name=name,
                                        concurrency_limit=2)
            redo_lanes.click(edit_lanes, [grid, *page], edit_out, api_visibility="private",
                             concurrency_limit=2)
            redo_bars.click(edit_bars, [grid, as_fill, *page], edit_out,
                            api_visibility="private", concurrency_limit=2)
            groove_it.click(edit_groove, [grid, strength, keep_velocity, *page], edit_out,
                            api_visibility="private", concurrency_limit=2)
            drumify_go.click(edit_drumify, [drumify_midi, rhythm, bars, tempo, *page],
                             edit_out, api_visibility="private", concurrency_limit=2)
            name_errors(edit_draft, [grid, style, kit, midi_layout])
            grid.submit(edit_draft, [grid, style, kit, midi_layout, session],
                        [audio, midi, wav, info, session], api_name="draft",
                        trigger_mode="always_last", show_progress="hidden",
                        concurrency_limit=2)
            history = [audio, grid, midi, wav, info, session]
            undo.click(lambda s, k, m, st: step_history(s, -1, k, m, st),
                       [session, kit, midi_layout, style], history, api_visibility="private")
            redo.click(lambda s, k, m, st: step_history(s, 1, k, m, st),
                       [session, kit, midi_layout, style], history, api_visibility="private")
            shared = [style, tempo, bars, seed, variations, fill, density, swing, humanize,
                      temperature, top_k, top_p, style_strength, midi_layout, model]
            share.click(share_link, [session, *shared], [link, link_note],
                        api_visibility="private").then(
                None, link, link, js="(q) => q ? location.origin + location.pathname + q : q")
            demo.load(open_link, [kit, midi_layout, session],
                      [*shared, audio, grid, midi, wav, session], api_visibility="private")
            take.change(show_take, [take, kit, session], [audio, grid, midi, wav, session],
                        api_visibility="private")
            # the list only shows when there can be something in it
            variations.change(lambda n: gr.update(visible=(n or 1) > 1), variations, files,
                              api_visibility="private", show_progress="hidden")
            dice.click(new_seed, None, seed, api_name="new_seed")
            style.change(on_style, style, [style_info, tempo, kit, swing],
                         api_visibility="private")
            style.input(on_style_picked, [style, model], style_strength,
                        api_visibility="private")
            model.change(on_model, [model, style], [style, temperature, top_k, top_p,
                                                    style_strength], api_visibility="private")
        with gr.Tab("Train"):
            if not enabled:
                gr.Markdown(f"**{why}**")
            gr.Markdown(TRAIN_INTRO)
            with gr.Row():
                with gr.Column():
                    source = gr.Radio(list(service.DATA_SOURCES), value=service.DATA_SOURCES[0],
                                      label="Data")
                    upload = gr.File(label="Zip of labelled MIDI folders", file_types=[".zip"],
                                     type="filepath", elem_id="train-zip")
                    name = gr.Textbox("my-model", label="Model name",
                                      info="letters, digits, - and _; listed by this name")
                    base_note = gr.Markdown(_base_note(model_names[0] if model_names else None))
                    ranges = finetune_mod.TRAIN_RANGES
                    with gr.Row():
                        epochs = gr.Number(value=0, label="Epochs (0 = no limit)",
                                           minimum=ranges["epochs"][0],
                                           maximum=ranges["epochs"][1])
                        t_budget = gr.Number(value=finetune_mod.FINETUNE_MINUTES,
                                             label="Time budget (minutes, 0 = no limit)",
                                             minimum=ranges["time_budget"][0],
                                             maximum=ranges["time_budget"][1])
                    overwrite = gr.Checkbox(False, label="Replace a model of the same name")
                    with gr.Accordion("Advanced", open=False):
                        from_scratch = gr.Checkbox(
                            False, label="Train from scratch instead of fine-tuning",
                            info="a new model knows only your data: it needs far more data "
                                 "and time (the shipped model took hours on all of GMD)")
                        t_preset = gr.Radio(list(finetune_mod.SCRATCH_PRESETS), value="small",
                                            label="Model size (from scratch only)")
                        train_only = gr.Radio(
                            [("the style embeddings (the old styles stay as they were)",
                              "style"), ("every weight", "all")],
                            value=finetune_mod.FINETUNE_TRAIN, label="Fine-tune")
                        # empty (which the page sends as 0) takes the mode's default, so
                        # these two have no minimum here: TrainRequest checks the range
                        with gr.Row():
                            lr = gr.Number(None, label="Learning rate (0 = default)",
                                           maximum=ranges["lr"][1],
                                           info=f"{finetune_mod.FINETUNE_LR:g} style, "
                                                f"{finetune_mod.FINETUNE_ALL_LR:g} every "
                                                f"weight, {finetune_mod.SCRATCH_LR:g} from "
                                                "scratch")
                            batch_size = gr.Number(None, label="Batch size (0 = default)",
                                                   precision=0,
                                                   maximum=ranges["batch_size"][1],
                                                   info=f"{finetune_mod.FINETUNE_BATCH} "
                                                        "fine-tuning, "
                                                        f"{finetune_mod.SCRATCH_BATCH} from "
                                                        "scratch")
                    with gr.Row():
                        start = gr.Button("Start training", variant="primary",
                                          interactive=enabled)
                        stop = gr.Button("Stop", variant="stop")
                with gr.Column():
                    status = gr.Markdown(elem_id="train-status")
                    curve = gr.LinePlot(x="step", y="loss", color="curve",
                                        label="Loss (nats/token)", height=260)
            # the base model is the Generate tab's `model` dropdown, the endpoint's init_from
            train_inputs = [source, upload, name, from_scratch, t_preset, epochs, t_budget, lr,
                            batch_size, overwrite, train_only]
            name_errors(train, train_inputs)
            start.click(train, [*train_inputs, model], [status, curve, model], api_name="train",
                        concurrency_limit=1, show_progress="minimal")
            stop.click(stop_training, None, status, api_name="stop_training")
            for changed in (model.change, from_scratch.change):
                changed(lambda m, scratch: _base_note(None if scratch else m),
                        [model, from_scratch], base_note, api_visibility="private",
                        show_progress="hidden")
        with gr.Tab("About"):
            gr.Markdown(ABOUT.replace("{presets}", _preset_table())
                        .replace("{parameters}", markdown_table()))
    return demo


#: When the shipped model loads: $DRUMGEN_PRELOAD. "after" the page is served (the default),
#: or "before", so that a page that answers has its model ready (the order before, which
#: bench/app_load.py measures beside this one).
PRELOAD = ("after", "before")


def preload_first() -> bool:
    """Whether $DRUMGEN_PRELOAD asks for the model before the page; a bad value is refused."""
    return setting("DRUMGEN_PRELOAD", PRELOAD) == "before"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="drumgen web app")
    parser.add_argument("--share", action="store_true", default=os.environ.get(
        "DRUMGEN_SHARE") == "1", help="ask Gradio for a public share link")
    args = parser.parse_args(argv)
    demo = build()
    server_name = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    service.set_player_audio(service.player_audio(server_name, args.share))
    kwargs = {"server_name": server_name,
              "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
              "max_file_size": service.MAX_UPLOAD_BYTES, "theme": gr.themes.Soft(),
              # every named endpoint is also an MCP tool at /gradio_api/mcp/sse
              "mcp_server": os.environ.get("DRUMGEN_MCP", "1") != "0"}
    demo.queue(default_concurrency_limit=2)
    # With no share server reachable, Gradio says so and keeps serving locally by itself.
    # The page is served first and the model loaded after: building the page needs no torch
    # (tests/test_layout.py), and importing torch and transformers and loading the weights
    # takes seconds. A click that comes sooner waits for the load, not for an error.
    before = preload_first()
    if before:
        service.preload()
    demo.launch(share=args.share, prevent_thread_lock=True, **kwargs)
    if not before:
        service.preload()  # the shipped model, once, before the first click
    demo.block_thread()

if __name__ == "__main__":
    main()
