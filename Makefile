# The two commands: `make run` (set up and start the tracker) and `make test` (set up and run every check).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PEOPLE ?= 2000
SEED   ?= 2025

.PHONY: setup run demo test unit lint typecheck pytest postgres chromium axe clean

$(STAMP): pyproject.toml
	@scripts/ensure-system-libs.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

## Set up, migrate the SQLite database, load demo data the first time, and start the tracker:
## a local Prefect server (127.0.0.1:4200), the flows, and the dashboard. Ctrl-C stops it all.
run: setup
	$(BIN)/onboarding db upgrade
	$(BIN)/onboarding demo --if-empty --no-logins --people $(PEOPLE) --seed $(SEED)
	$(BIN)/onboarding status
	$(BIN)/onboarding run

## Load (more) demo data: make demo PEOPLE=10000 SEED=7
demo: setup
	$(BIN)/onboarding demo --people $(PEOPLE) --seed $(SEED)

## Everything CI runs: lint, format check, type check, and the tests on SQLite and PostgreSQL.
test: setup postgres chromium axe lint typecheck pytest

## The unit tier alone, in seconds: the tests that need no database or browser (tests/unit/).
## The confcutdir keeps tests/conftest.py, its database fixtures and its PostgreSQL check out.
## `make test` runs them too, with everything else.
unit: setup
	$(BIN)/pytest --confcutdir=tests/unit tests/unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy tracker flows

pytest: setup
	$(BIN)/pytest -n 2 --dist loadfile --durations=10

postgres:
	@scripts/ensure-postgres.sh

chromium:
	@scripts/ensure-chromium.sh

## axe-core from the npm registry (version pinned in package-lock.json) for the accessibility check
axe:
	@scripts/ensure-axe.sh

clean:
	rm -rf $(VENV) data node_modules .pytest_cache .mypy_cache .ruff_cache

## The benchmark suite (bench/suite.py) at 10,000 and 100,000 newcomers on SQLite and PostgreSQL,
## then the write path's measures of this commit and of the one before it (BASE) in the same run
## (bench/compare.py); writes bench/results/*.json and docs/benchmarks.md.
## Sizes: make bench PEOPLE="10000"; another base: make bench BASE=1a2b3c4
BENCH_PEOPLE = $(if $(filter command line,$(origin PEOPLE)),$(PEOPLE),10000 100000)
BASE ?= HEAD~1
.PHONY: bench
bench: setup postgres
	$(BIN)/python bench/suite.py --people $(BENCH_PEOPLE)
	$(BIN)/python bench/compare.py --base $(BASE) --rows $(BENCH_PEOPLE)
