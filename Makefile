# procreg: `make run` (the main job, embedded SQLite index) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck bench bench-full demo screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The main job on this repo's own procedures/, no database server needed: validate, sync
## them into the embedded SQLite index (.git/procreg/), show them, then serve the web view
## and MCP (procreg serve, which keeps the index in sync as procreg watch does) until Ctrl-C.
PORT ?= 8700
run: $(STAMP)
	$(BIN)/procreg check procedures/
	$(BIN)/procreg sync
	$(BIN)/procreg search --sort name --limit 1000
	@echo "procreg: the web view will be at http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	$(BIN)/procreg serve --port $(PORT)

## Migrate the bundled legacy sample into a fresh registry, then search and run a procedure.
DEMO ?= /tmp/procreg-demo
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/procreg init $(DEMO)
	$(BIN)/procreg -C $(DEMO) migrate --from examples/legacy/sample.db
	$(BIN)/procreg -C $(DEMO) search branch
	$(BIN)/procreg -C $(DEMO) run create-feature-branch --arg ticket=PROJ-12 --arg slug=login-form

## The whole test suite (PostgreSQL tests skip without a server unless PROCREG_REQUIRE_POSTGRES=1).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## Benchmarks with baselines (naive git CLI, gto); writes benchmarks/results/*.json and summary.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks --quick

bench-full: $(STAMP)
	$(BIN)/python -m benchmarks --full

## The README's screenshots of the web view (docs/screenshots/), taken by its browser test.
screenshots: $(STAMP)
	PROCREG_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q \
		tests/serve/web/test_web_browser.py -k screenshots

## ruff (lint and formatting) and mypy, over the library and its tests.
lint: $(STAMP)
	$(BIN)/ruff check registry tests benchmarks
	$(BIN)/ruff format --check registry tests

typecheck: $(STAMP)
	$(BIN)/mypy registry tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/work
