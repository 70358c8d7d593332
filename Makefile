# Two commands on a fresh clone: `make dev` serves, `make test` tests. Each creates .venv when missing,
# and makes it again when it has no working pip (a first run interrupted while making it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench migrate clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "leadwatch needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/leadwatch dev $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# Style and types: ruff (lint + format) over the tree, mypy over lib/.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmarks (bench/): the full run is 1,000,000 leads and 10,000,000 activities; ARGS="--quick" for a tiny one.
# Then a mature deployment right after its morning sweep (bench/mature.py: 200,000 leads, a year of history).
bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)
	$(BIN)/python -m bench.mature $(filter --quick,$(ARGS))

migrate: $(STAMP)
	$(BIN)/leadwatch migrate

clean:
	rm -rf $(VENV) .leadwatch .bench .pytest_cache
