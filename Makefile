# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/palmhall migrate
	$(BIN)/palmhall demo load
	$(BIN)/palmhall serve

# The embedded stores are per test, so the suite spreads over every core (pytest-xdist).
test: $(STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/http_health.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
