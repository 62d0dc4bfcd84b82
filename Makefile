# sandburg — `make up` starts a server on this host, `make test` runs lint, types and every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= /var/lib/sandburg
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-lock.txt 2>/dev/null | sha256sum | cut -c1-12)
# npm dependencies of the Daytona TypeScript SDK tests (tests/e2e/daytona_ts), reinstalled when the lock changes
TS_DIR := tests/e2e/daytona_ts
TS_STAMP := $(TS_DIR)/node_modules/.installed-$(shell cat $(TS_DIR)/package.json $(TS_DIR)/package-lock.json 2>/dev/null | sha256sum | cut -c1-12)
# the official Daytona Python SDK (tests/e2e/daytona_py) in a venv of its own: its dependencies must not mix with ours
DAYTONA_VENV ?= .venv-daytona
DAYTONA_REQ := tests/e2e/daytona_py/requirements.txt tests/e2e/daytona_py/constraints.txt
DAYTONA_STAMP := $(DAYTONA_VENV)/.installed-$(shell cat $(DAYTONA_REQ) 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: setup ts-deps daytona-venv mirror up down test lint types unit integration e2e bench openapi clean-test help

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

$(TS_STAMP): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the Daytona TypeScript SDK tests need Node.js >= 20 and npm" >&2; exit 1; }
	@cd $(TS_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@rm -f $(TS_DIR)/node_modules/.installed-* && touch $@

ts-deps: $(TS_STAMP)

$(DAYTONA_STAMP): $(DAYTONA_REQ)
	@test -x $(DAYTONA_VENV)/bin/python || /usr/bin/python3 -m venv $(DAYTONA_VENV)
	@$(DAYTONA_VENV)/bin/python -m pip install -q -r tests/e2e/daytona_py/requirements.txt -c tests/e2e/daytona_py/constraints.txt
	@rm -f $(DAYTONA_VENV)/.installed-* && touch $@

daytona-venv: $(DAYTONA_STAMP)

# the package mirror the tests' fake internet serves as mirror.test (scripts/fill-mirror.py): fetched once from
# the public registries, instant when nothing changed
mirror: setup
	@$(PY) scripts/fill-mirror.py

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

e2e: setup ts-deps daytona-venv mirror
	$(PY) -m pytest tests/e2e -q

test: lint types ts-deps daytona-venv mirror
	$(PY) -m pytest tests -q

bench: setup
	$(PY) bench/run.py

openapi: setup
	$(PY) -m sandburg.server.openapi > docs/openapi.json

clean-test:
	$(PY) -m tests.cleanup
