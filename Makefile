# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DB ?= data/eventlog.db
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test torture bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[server]'
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	mkdir -p $(dir $(DB))
	$(BIN)/eventlog serve --db $(DB) --host $(HOST) --port $(PORT)

# Where npm is, the Durable Streams tests' Node packages and the benchmark's reference server
# are installed first (a quick check when they are); without it those tests are deselected with
# a hint, and the benchmark report's Durable Streams section says it was not measured.
test: $(VENV)/.installed-dev
	if command -v npm >/dev/null 2>&1; then tests/durable_streams/install.sh >/dev/null; benchmarks/durable_streams/install.sh >/dev/null; fi
	$(BIN)/python -m pytest -q

# The fault suite's long form (`make test` runs its bounded form, scale 1).
TORTURE_SCALE ?= 8
torture: $(VENV)/.installed-dev
	EVENTLOG_TORTURE_SCALE=$(TORTURE_SCALE) $(BIN)/python -m pytest -q tests/torture

# Every benchmark, written to benchmarks/results/REPORT.md with its plots (needs redis-server;
# where npm is, the Durable Streams benchmark's reference server is installed first).
bench: $(VENV)/.installed-dev
	if command -v npm >/dev/null 2>&1; then benchmarks/durable_streams/install.sh >/dev/null; fi
	$(BIN)/python benchmarks/report.py --out benchmarks/results

bench-quick: $(VENV)/.installed-dev
	if command -v npm >/dev/null 2>&1; then benchmarks/durable_streams/install.sh >/dev/null; fi
	$(BIN)/python benchmarks/report.py --quick --out build/bench-quick

clean:
	rm -rf $(VENV) data .pytest_cache
