"""The code's layout by role (README): `app.py` does its work through `drumgen.service` and
words the answers itself; the core knows nothing of the page."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drumgen import service
from drumgen.edit import DrumifyRequest, GrooveRequest, RegenerateRequest
from drumgen.generate import Request

ROOT = Path(__file__).resolve().parent.parent

#: What app.py may import from drumgen besides `service`: requests, errors, constants, and
#: modules of pure text and data (presets, the share-link code, training's wording). Loading,
#: rendering, file I/O and training go through `service`.
APP_MAY_IMPORT = {
    "drumgen": {"service", "draft", "finetune", "presets"},
    "drumgen.constants": {"DENSITY_NAMES", "DRUMS", "MIDI_LAYOUTS"},
    "drumgen.folders": {"GenerationDefaults", "ModelError"},
    "drumgen.pattern": {"MidiError"},
    "drumgen.requests": {"DrumifyRequest", "GrooveRequest", "RegenerateRequest", "Request"},
    "drumgen.schema": {"PARAMS", "RequestError", "markdown_table", "setting"},
}


def drumgen_imports(source: str) -> set[tuple[str, str]]:
    """(module, name) for every import from drumgen in `source`, at any depth;
    `import drumgen.x` counts as ("drumgen", "x")."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "drumgen":
            found |= {(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module, _, name = alias.name.rpartition(".")
                if alias.name.split(".")[0] == "drumgen":
                    found.add((module, name) if module else ("drumgen", "*"))
    return found


def disallowed(source: str) -> set[tuple[str, str]]:
    return {(m, n) for m, n in drumgen_imports(source) if n not in APP_MAY_IMPORT.get(m, ())}


def test_the_app_imports_from_drumgen_only_the_service_and_its_presentation_allow_list():
    source = (ROOT / "app.py").read_text()
    assert disallowed(source) == set()
    # the check bites: the imports this layout moved behind `service` are caught
    for line in ("from drumgen.generate import Generator", "import drumgen.render",
                 "from drumgen.data import default_data_dir"):
        assert disallowed(source + f"\ndef f():\n    {line}\n"), line


@pytest.mark.slow
def test_the_page_is_built_without_torch_or_transformers():
    """app.py serves its page before the model stack is imported (issue 15: app start):
    importing the app and building every tab must not import torch, transformers or
    onnxruntime, and they are imported once the service loads a model."""
    stack = "'torch' in sys.modules, 'transformers' in sys.modules, 'onnxruntime' in sys.modules"
    code = (f"import sys, app; app.build(); print('loaded:', {stack}); "
            f"from drumgen import service; service.preload(); print('loaded:', {stack})")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("loaded:")]
    assert loaded == [["False"] * 3, ["True"] * 3], done.stdout  # onnx: the engine's session


@pytest.mark.parametrize("path", sorted((ROOT / "drumgen").rglob("*.py")),
                         ids=lambda p: p.name)
def test_the_core_never_imports_the_ui(path):
    tree = ast.parse(path.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.Import) for alias in node.names}
    names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and not node.level}
    assert not names & {"gradio", "app", "ui_grid"}


def test_a_result_carries_facts_and_the_app_words_them():
    """The service returns what was made (verb, request, groove, kit, times); the summary
    line is the app's."""
    import app
    made = service.generate(Request(style="funk", bars=1, seed=7), audio=False)
    assert (made.verb, made.groove.seed, made.kit, made.midi_layout) == ("generate", 7, None,
                                                                         "gm")
    assert made.gen_s > 0 and made.request.bars == 1
    text = app.summary(made)
    assert "seed **7**" in text and "1 bars at 100 bpm" in text and "kit none" in text
    assert "generated in" in text and text.endswith("Audio off (kit: none).")
    draft = made.takes[0].pattern
    for verb, request, words in (
            ("regenerate", RegenerateRequest(midi=draft, bars=[1], fill=True, seed=3),
             "regenerated bar(s) 1 as fills"),
            ("groove", GrooveRequest(midi=draft, seed=3), "played every hit"),
            ("drumify", DrumifyRequest(rhythm="x...x...x...x...", seed=3), "drums on 4 onsets")):
        edited = service.edit(verb, request, audio=False)
        assert edited.verb == verb and edited.groove.seed == 3
        text = app.summary(edited)
        assert text.startswith(f"**{verb}**: {words}") and "edited in" in text, text
    shown = app.summary(service.render_draft(draft, audio=False))
    assert shown.startswith(f"**draft**: {len(draft.hits)} hits, 1 bars at 100 bpm, kit none")
