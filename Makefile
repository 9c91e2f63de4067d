# `make run` and `make test` each set everything up first; both are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when a requirements file changes.
STAMP := $(VENV)/.installed

.PHONY: setup setup-ray web chromium run test lint typecheck bench clean

setup: $(STAMP)

# pip prints each package as it goes: a first install (torch, diffusers, ComfyUI's front end) takes
# minutes and should never look stuck.
$(STAMP): requirements.txt requirements-dev.txt
	@echo "==> Creating the virtual environment in $(VENV)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> Installing Python packages (requirements-dev.txt; several minutes the first time)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt
	touch $(STAMP)

# Ray, for scale-out (docs/scale-out.md): optional for running, installed for the tests.
RAY_STAMP := $(VENV)/.installed-ray
setup-ray: $(RAY_STAMP)

$(RAY_STAMP): requirements-ray.txt $(STAMP)
	@echo "==> Installing Ray (requirements-ray.txt; optional, for --ray and its tests)"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -r requirements-ray.txt
	touch $(RAY_STAMP)

# The browser canvas: `npm ci` from the lock file when it changes, a rebuild when a source changes.
WEB_STAMP := web/node_modules/.installed
WEB_SOURCES := $(wildcard web/src/*) web/index.html web/build.mjs web/tsconfig.json
web: web/dist/index.html

$(WEB_STAMP): web/package.json web/package-lock.json
	@echo "==> Installing the canvas's npm packages (web/package-lock.json)"
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	@echo "==> Building the canvas (web/dist)"
	cd web && node build.mjs

# The browser tests drive Debian's chromium (Playwright's own download is not used).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium: $(CHROMIUM)

$(CHROMIUM):
	@echo "==> Installing Debian's chromium for the browser tests"
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Loom's canvas by default; ComfyUI's official front end with `make run ARGS="--front-end comfy"`.
run: setup web
	@echo "==> Starting Loom (ComfyUI's front end instead: make run ARGS=\"--front-end comfy\")"
	$(BIN)/python main.py $(ARGS)

lint: setup
	@echo "==> Linting (ruff)"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup web
	@echo "==> Type-checking (mypy, tsc)"
	$(BIN)/mypy
	cd web && npx --no-install tsc --noEmit

test: setup setup-ray web chromium lint typecheck
	@echo "==> Running the tests"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/server_bench.py
	$(BIN)/python bench/attack_bench.py
	$(BIN)/python bench/sd_bench.py
	$(BIN)/python bench/threads_bench.py
	$(BIN)/python bench/default_model_eval.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules web/dist

# The shipped default model (docs/default-model.md): about 90 minutes on 2 shared CPU cores.
.PHONY: train-default
train-default: setup
	$(BIN)/python -m training.recipe --out models/checkpoints/loom_default.safetensors $(ARGS)
