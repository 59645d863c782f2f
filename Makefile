# procreg: `make run` (the main job, embedded SQLite index) and `make test` (the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck bench bench-full demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## The main job on this repo's own procedures/, no server needed.
run: $(STAMP)
	$(BIN)/procreg check procedures/
	$(BIN)/procreg list

## The whole test suite (PostgreSQL tests skip without a server unless PROCREG_REQUIRE_POSTGRES=1).
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check registry tests benchmarks
	$(BIN)/ruff format --check registry

typecheck: $(STAMP)
	$(BIN)/mypy registry

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/work
