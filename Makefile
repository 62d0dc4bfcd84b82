# sandburg — `make up` starts a server on this host, `make test` runs lint, types and every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= /var/lib/sandburg
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-lock.txt 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: setup up down test lint types unit integration e2e bench openapi clean-test help

help:
	@echo "make up | down | test | bench | openapi | lint | types | clean-test"

$(STAMP):
	@./scripts/setup-host.sh
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -c requirements-lock.txt -e '.[server,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)
	@./scripts/setup-host.sh >/dev/null

up: setup
	@SANDBURG_DATA_DIR=$(DATA_DIR) $(PY) -m sandburg.node.prepare
	@SANDBURG_DATA_DIR=$(DATA_DIR) $(VENV)/bin/sandburg server start

down:
	@test -x $(VENV)/bin/sandburg && SANDBURG_DATA_DIR=$(DATA_DIR) $(VENV)/bin/sandburg server stop || true

lint: setup
	$(VENV)/bin/ruff check sandburg tests bench
	$(VENV)/bin/ruff format --check sandburg tests bench

types: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest tests/unit -q

integration: setup
	$(PY) -m pytest tests/integration -q

e2e: setup
	$(PY) -m pytest tests/e2e -q

test: lint types
	$(PY) -m pytest tests -q

bench: setup
	$(PY) bench/run.py

openapi: setup
	$(PY) -m sandburg.server.openapi > docs/openapi.json

clean-test:
	$(PY) -m tests.cleanup
