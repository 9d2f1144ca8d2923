# The two commands of the README:  `make demo`  and  `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH ?= torch==2.13.0

.PHONY: env sysdeps kenlm demo demo-quick test lint bench-decoder

# System packages: espeak-ng and sox synthesize the demo/test corpora.
sysdeps:
	@if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then \
	  echo "+ apt-get install espeak-ng sox"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox >/dev/null; fi

# Python environment in $(VENV); a stamp file makes it idempotent.
$(VENV)/.installed: setup.cfg requirements-fairseq.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q --no-deps -r requirements-fairseq.txt
	$(PIP) install -q -e '.[test,lint,hf,plot,tb,lhotse]'
	@touch $@

env: sysdeps $(VENV)/.installed

kenlm: env
	bash tools/build_kenlm.sh

demo: env kenlm
	$(PY) -m examples.demo.run

demo-quick: env kenlm
	$(PY) -m examples.demo.run --quick

test: env kenlm
	$(VENV)/bin/python -m pytest -q -x tests

# ruff (ruff.toml) and mypy (mypy.ini) over the repository; CI runs this before the tests.
lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench-decoder: env kenlm
	bash benchmarks/setup_pyctcdecode_env.sh
	$(PY) benchmarks/bench_decoder_vs_pyctcdecode.py
