# Two entry points: `make demo` and `make test`. Both set up everything they need and are idempotent.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps live inside .venv, so deleting .venv also forgets what was installed into it.
STAMPS := $(VENV)/.stamps
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast setup setup-dev apt apt-dev bench lint clean

demo: setup
	$(BIN)/python app.py

test: setup-dev
	$(BIN)/python -m pytest -q --durations=15 tests

# The fast tier: everything not marked slow (no app server, no browser, no subprocess CLI).
test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: setup-dev
	$(BIN)/ruff check drumgen app.py ui_grid.py tests bench

bench: setup-dev
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/edit.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/app_load.py

setup: apt $(STAMPS)/venv
setup-dev: setup $(STAMPS)/venv-dev apt-dev

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

$(STAMPS)/venv: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -r requirements.txt
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv-dev: requirements-dev.txt requirements.txt $(STAMPS)/venv
	$(BIN)/pip install -q -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

# Debian packages (FluidSynth, a GM soundfont) where we have the rights; without them the app
# still runs: it ships its own kit and falls back to MIDI + grid when FluidSynth is missing.
# The script asks dpkg first, so a second run installs nothing.
apt:
	@bash scripts/apt-install.sh $$(cat packages.txt)

# The browser test uses Debian's Chromium (never `playwright install`, which downloads a browser);
# the edit tests read MIDI written by LilyPond and abc2midi, as users' files are.
apt-dev:
	@bash scripts/apt-install.sh chromium lilypond abcmidi midicsv

clean:
	rm -rf $(VENV) .pytest_cache
