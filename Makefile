# One task runner: CI runs `make test` through .ci/run, exactly as a developer does.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=
# What the local stack, the demo and the tests write stays in the checkout; installed, the default is
# ~/.local/share/funnelstream.
export FS_PATHS__DATA_DIR ?= $(CURDIR)/.stack
# `make up KAFKA_BROKERS=3` is the cluster form: three KRaft nodes, topics at replication 3 and
# min.insync.replicas 2 (`python -m infra env` prints what a service needs to use it).
ifdef KAFKA_BROKERS
export FS_STACK__KAFKA_BROKERS := $(KAFKA_BROKERS)
endif

.PHONY: help install tools up down status lint fmt test test-unit demo schema screenshots clean
.PHONY: bench-inference
.PHONY: bench-experiments
.PHONY: bench-qa
.PHONY: bench-warehouse
.PHONY: bench-workspace
.PHONY: bench-ingest
.PHONY: bench-stream
.PHONY: bench-pipeline
.PHONY: bench chaos load soak

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## Create .venv and install the project with pinned dependencies

tools: ## Debian packages the suite and benchmarks use: Chromium (browser tests), wrk (bench-ingest)
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing; install them with your package manager (browser tests skip without chromium)"; \
	  fi; \
	fi

up: install ## Start Kafka (KAFKA_BROKERS nodes, default 1) and the S3 server natively (idempotent)
	$(PY) -m infra up

down: ## Stop what `make up` started
	@if [ -x $(PY) ]; then $(PY) -m infra down; fi

status: install ## Show each broker and service of the local stack, and the partitions out of sync
	$(PY) -m infra status

lint: install ## ruff, mypy and the layer contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy funnelstream infra ingest stream_processors inference_service clickhouse ops
	$(VENV)/bin/lint-imports

fmt: install ## Format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint tools ## Lint, then the whole test suite (services start when a test needs them)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install ## Only the tests that need no service
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

demo: install ## Run the main job end to end on the embedded default
	$(VENV)/bin/funnelstream demo

bench-inference: up ## Inference service: overhead per job, classical jobs/s at 1024 px, SAM vit_b embedding (last line JSON)
	$(PY) -m ops.bench.inference

bench-experiments: ## Experiments: assignments/s (hash, sticky), full analysis of 100k and 1M units from chdb beside a GROUP BY ceiling (last line JSON)
	$(PY) -m ops.bench.experiments

bench-qa: install ## QA: every check over 2M synthetic events on chdb, a day's and a week's window (last line JSON)
	$(PY) -m ops.bench.qa

bench-warehouse: up ## Warehouse: loader rows/s on one core, funnel over 10M events, end-to-end freshness (last line JSON)
	$(PY) -m ops.bench.warehouse

bench-workspace: install ## Workspace: each funnel panel's route (over time, time-to-convert histogram, correlation, paths) beside the plain funnel over 10M events, through the API (EVENTS; last line JSON)
	$(PY) -m ops.bench.workspace --events $(or $(EVENTS),10000000)

bench-ingest: up tools ## Collector: events/s in 500-event batches, single requests/s, p99 at 5k req/s, RSS, Kafka ceiling (needs wrk; last line JSON)
	$(PY) -m ops.bench.ingest

bench-stream: up ## Stream processors: events/s of one worker on one core (dedup, enrich, sessionize), passthrough ceiling, RSS at 100k sessions (last line JSON)
	$(PY) -m ops.bench.stream

bench-pipeline: up ## Whole pipeline: highest rate `load --local` sustains 60 s with freshness p99 <= 2 s and nothing lost, beside the load generator's own ceiling (last line JSON)
	$(PY) -m ops.bench.pipeline

bench: up tools ## Every benchmark in turn on an idle machine: bench/results.json, bench/results.md and the README table
	$(PY) -m ops.bench.suite

load: up ## The whole pipeline under load: accepted/s and freshness 202 → ClickHouse (RATE, DURATION; last line JSON)
	$(VENV)/bin/funnelstream load --local --rate $(or $(RATE),1000) --duration $(or $(DURATION),30)

chaos: install ## Faults under load on a private stack; zero lost and zero duplicated by event_id, or it fails
	$(VENV)/bin/funnelstream chaos

soak: install ## The whole pipeline for 30 min at a steady rate: RSS every 10 s and lag over time (bench/soak.json, bench/soak.svg; not in CI)
	$(PY) -m ops.bench.soak

screenshots: install tools ## Refresh docs/screenshots from the browser tests
	FS_UPDATE_SCREENSHOTS=1 $(PY) -m pytest tests/web -q

schema: install ## Write JSON Schema for every event type to schemas/
	$(VENV)/bin/funnelstream schema --out schemas

clean: down ## Stop the stack and remove its data
	rm -rf .stack
