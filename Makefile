# `make run` and `make test` each set everything up first; both are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when a requirements file changes.
STAMP := $(VENV)/.installed

.PHONY: setup run test lint typecheck bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: setup
	$(BIN)/python main.py $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/engine_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The shipped default model (docs/default-model.md): about 90 minutes on 2 shared CPU cores.
.PHONY: train-default
train-default: setup
	$(BIN)/python -m training.recipe --out models/checkpoints/loom_default.safetensors $(ARGS)
