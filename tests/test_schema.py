"""One declaration of every parameter's range (`drumgen.schema`), and every place that shows or
checks a range held to it: request validation, the page's sliders, the CLI's --help, the About
tab and the README's table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from drumgen import cli, schema
from drumgen.edit import DrumifyRequest, GrooveRequest, drumify, groove
from drumgen.generate import Request, RequestError
from drumgen.schema import PARAMS

ROOT = Path(__file__).resolve().parent.parent
REQUEST_KEYS = ("bars", "tempo", "variations", "temperature", "top_k", "top_p",
                "style_strength", "seed", "swing", "humanize", "density")


def _outside(p):
    step = 1 if p.integer else 0.01
    return p.lo - step, p.hi + step


@pytest.mark.parametrize("key", REQUEST_KEYS)
def test_requests_take_each_range_end_and_refuse_just_outside_by_name(key):
    p = PARAMS[key]
    for value in (p.lo, p.hi):
        Request(**{key: value}).validate()
    for value in _outside(p):
        with pytest.raises(RequestError, match=rf"^{p.name} must be from "
                                               rf"{re.escape(p.range.replace('-', ' to '))}"):
            Request(**{key: value}).validate()


@pytest.mark.parametrize("key, request_for, run", [
    ("strength", lambda v: GrooveRequest(strength=v), groove),
    ("track", lambda v: DrumifyRequest(rhythm="x...", track=v), drumify),
])
def test_edit_parameters_are_checked_against_the_schema(key, request_for, run):
    # refused before any model work, so no generator is needed
    for value in _outside(PARAMS[key]):
        with pytest.raises(RequestError, match=f"^{PARAMS[key].name} must be"):
            run(None, request_for(value))


def test_the_readme_table_is_the_schema_table():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- parameters: .*? -->\n(.*?)\n<!-- /parameters -->", readme, re.S)
    assert table, "README.md lost its parameter table markers"
    assert table[1] == schema.markdown_table()


def test_cli_help_states_each_range(capsys):
    wanted = {"generate": ("tempo", "seed", "temperature", "top_k", "top_p", "style_strength",
                           "variations", "bars", "density", "swing", "humanize"),
              "groove": ("strength",), "drumify": ("track", "edit_bars")}
    for verb, keys in wanted.items():
        with pytest.raises(SystemExit):
            cli.main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for key in keys:
            assert f"{PARAMS[key].range}: {' '.join(PARAMS[key].help.split())}" in text, key


@pytest.mark.slow  # builds the app
def test_the_page_sliders_and_about_tab_follow_the_schema():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    import app
    demo = app.build()
    sliders = {b.label: b for b in demo.blocks.values() if isinstance(b, gr.Slider)}
    for label, key in (("Tempo (bpm)", "tempo"), ("Bars", "bars"), ("Variations", "variations"),
                       ("Humanize", "humanize"), ("Temperature", "temperature"),
                       ("Top-k (0 = off)", "top_k"), ("Top-p", "top_p"),
                       ("Style strength", "style_strength"), ("Groove strength", "strength")):
        s = sliders[label]
        assert (s.minimum, s.maximum) == (PARAMS[key].lo, PARAMS[key].hi), label
    seed = next(b for b in demo.blocks.values() if isinstance(b, gr.Number) and b.label == "Seed")
    assert (seed.minimum, seed.maximum) == (PARAMS["seed"].lo, PARAMS["seed"].hi)
    about = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)
             and "Every parameter's range" in (b.value or "")]
    assert len(about) == 1 and schema.markdown_table() in about[0]
