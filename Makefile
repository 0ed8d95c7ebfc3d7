# Two commands on a fresh clone: `make run` and `make test` (see README.md).
# Found once (:=), quietly: a pyenv shim answers `command -v` for versions it lacks and
# then complains on standard error when run.
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 \
	&& $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-harbor

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Harbor needs Python 3.11 or newer on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

## run: set up, then serve the HTTP API on the embedded store with the article's two cases loaded
run: $(STAMP)
	$(BIN)/harbor serve --demo --admin-token

## test: set up, then run the whole suite (SQLite and PostgreSQL)
# Two worker processes (the machine's two cores), then alone the test that restarts
# PostgreSQL itself, which would break every other test's connections mid-run.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not restarts_postgres"
	$(BIN)/python -m pytest -m restarts_postgres

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## bench: set up, then run the benchmark suite on PostgreSQL (under 5 minutes; bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/suite.py --json bench/results/latest.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache harbor.db harbor.db-wal harbor.db-shm
