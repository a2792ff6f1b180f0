# d2v: `make run` sets up and runs the pipeline on the embedded data; `make test` sets up and
# runs the tests. Everything else here is what those two need, and a few conveniences.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1
# DeepSpeed's CPU comm op (built for runs of several ranks) per venv: a build is keyed on the venv's
# path, so one cache shared by two venvs rebuilds it (~35 s) each time the other one ran
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions

# Debian data packages of the embedded default (shared/DATA.md) and the test services.
DEB_PACKAGES := flite dataset-fashion-mnist pocketsphinx-testdata sword-text-kjv sword-text-web \
	diatheke wordnet-base postgresql chromium
# The CPU torch wheel first: a plain `pip install torch` would pull a multi-GB CUDA build.
TORCH_VERSION := 2.13.0
TORCH_WHEELS ?= /opt/wheels
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

INSTALL ?= $(PY) -m pip install -q
# what ruff checks and formats
LINTED := d2v stages tests experiments
.PHONY: setup system venv deps params run test test-fast lint format clean
setup: system venv

system:
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	    echo "installing Debian packages: $$missing"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	      || echo "WARNING: could not install $$missing; stages that need them will say so"; \
	  fi; \
	else echo "no apt-get: install the data packages yourself ($(DEB_PACKAGES))"; fi

venv: $(VENV)/.installed

# uv installs the same packages in half pip's time (fresh clone, empty caches, 2 cores: the venv in
# 49 s against 106 s), bytecode compiled as pip does (without it every process imports ~2x slower
# where PYTHONDONTWRITEBYTECODE is set); pip wherever uv cannot be had or fails (INSTALLER=pip).
INSTALLER ?= uv
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	if [ "$(INSTALLER)" = uv ] && $(PY) -m pip install -q uv >/dev/null 2>&1 \
	  && $(MAKE) --no-print-directory deps INSTALL="$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY)"; then :; \
	else $(MAKE) --no-print-directory deps INSTALL="$(PY) -m pip install -q"; fi
	touch $@

# the CPU torch wheel, then the package and its dev extras, with $(INSTALL)
deps:
	if [ -d $(TORCH_WHEELS) ] && ls $(TORCH_WHEELS)/torch-$(TORCH_VERSION)* >/dev/null 2>&1; then \
	  $(INSTALL) --find-links $(TORCH_WHEELS) torch==$(TORCH_VERSION); \
	else $(INSTALL) torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX); fi
	$(INSTALL) -e '.[dev]'

params: venv
	$(PY) -m d2v.cli params

# the three modality chains (and sweep@vision) side by side (d2v/runs/repro.py), then the GLUE
# table and the report; `dvc repro report glue` alone does the same one stage at a time; plain
# `dvc repro` adds sweep@speech/text, ablate@ and bench@
run: setup
	$(PY) -m d2v.cli repro --with sweep@vision
	$(VENV)/bin/dvc repro report glue
	$(PY) -m d2v.cli headline  # pretrained vs scratch per task, verdicts, the report's path
	@echo "left for later: dvc repro sweep@speech sweep@text (studies), ablate@vision ablate@speech ablate@text (the paper's ablations), bench (speed)"

test: setup
	$(VENV)/bin/ruff check $(LINTED)
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: venv
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

clean:
	rm -rf data models metrics/pretrain metrics/eval checkpoints mlruns.db mlartifacts reports/figures
