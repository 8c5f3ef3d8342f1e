# Two entry points: `make demo` and `make test`. Both set up everything they need and are idempotent.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test setup setup-dev apt bench lint clean

demo: setup
	$(BIN)/python app.py

test: setup-dev
	$(BIN)/python -m pytest -q tests

lint: setup-dev
	$(BIN)/ruff check drumgen app.py tests bench

bench: setup-dev
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/app_load.py

setup: $(STAMPS)/apt $(STAMPS)/venv
setup-dev: setup $(STAMPS)/venv-dev $(STAMPS)/apt-dev

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
$(STAMPS)/apt: packages.txt
	@bash scripts/apt-install.sh $$(cat packages.txt)
	@mkdir -p $(STAMPS) && touch $@

# The browser test uses Debian's Chromium (never `playwright install`, which downloads a browser).
$(STAMPS)/apt-dev:
	@bash scripts/apt-install.sh chromium
	@mkdir -p $(STAMPS) && touch $@

clean:
	rm -rf $(VENV) $(STAMPS) .pytest_cache
