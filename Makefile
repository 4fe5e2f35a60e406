# basewatch: `make run` sets up and serves the demo, `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

export BASEWATCH_DATA_DIR ?= ./data
export BASEWATCH_HOST ?= 127.0.0.1
export BASEWATCH_PORT ?= 8000

.PHONY: setup run test bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the viewer's browser test (installed only when missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (headless browser for the viewer test)"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

run: setup
	$(VENV)/bin/basewatch serve --demo

test: setup browser
	$(PY) -m pytest

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/accuracy.py
	$(PY) bench/speed.py
	$(PY) bench/tiles.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
