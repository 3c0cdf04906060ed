# One task runner: CI runs `make test` through .ci/run, exactly as a developer does.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help install up down status lint fmt test test-unit demo schema clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## Create .venv and install the project with pinned dependencies

up: install ## Start Kafka and the S3 server natively (idempotent)
	$(PY) -m infra up

down: ## Stop what `make up` started
	@if [ -x $(PY) ]; then $(PY) -m infra down; fi

status: install ## Show each service of the local stack
	$(PY) -m infra status

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy funnelstream infra ingest stream_processors inference_service clickhouse

fmt: install ## Format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint ## Lint, then the whole test suite (services start when a test needs them)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## Only the tests that need no service
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

demo: install ## Run the main job end to end on the embedded default
	$(VENV)/bin/funnelstream demo

schema: install ## Write JSON Schema for every event type to schemas/
	$(VENV)/bin/funnelstream schema --out schemas

clean: down ## Stop the stack and remove its data
	rm -rf .stack
