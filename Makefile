# Two commands: `make demo` and `make test`. Both bootstrap .venv idempotently through `make setup`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# Reinstall only when the dependency declarations change; a second run installs nothing.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,video]"
	touch $(STAMP)

demo: setup
	$(BIN)/damokit reproduce --quick

test: setup
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check damokit tests benchmarks

lint: setup
	$(BIN)/ruff check damokit tests benchmarks

bench: setup
	$(BIN)/damokit bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
