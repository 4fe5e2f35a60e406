# basewatch: `make run` sets up and serves the demo, `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

export BASEWATCH_DATA_DIR ?= ./data
export BASEWATCH_HOST ?= 127.0.0.1
export BASEWATCH_PORT ?= 8000

.PHONY: setup run test test-fast bench clean browser services

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

# PostgreSQL on 127.0.0.1:5432 for the scaled-out tests (started when installed but stopped).
services:
	@if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start || true; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

run: setup
	$(VENV)/bin/basewatch serve --demo

test: setup browser services
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m fast

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/accuracy.py
	$(PY) bench/speed.py
	$(PY) bench/tiles.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
