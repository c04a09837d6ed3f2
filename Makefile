# The two commands a new user needs: `make up` (run embrec, embedded) and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up demo test pytest lint gen gen-check clean

install: $(STAMP)

# Re-installs when pyproject.toml changes. The CPU torch wheel comes from the machine's
# wheel directory (see pyproject); faiss-cpu via the `cpu` extra (use `gpu` on GPU hosts).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,dev]'
	touch $(STAMP)

up: install
	$(BIN)/embrec up

demo: install
	$(BIN)/embrec demo

# The README's test command: static checks, contract drift, then the whole suite.
test: install lint gen-check pytest

pytest: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint

gen: install
	$(BIN)/embrec gen

# Generated code and the Envoy config are committed; fail when they drift from the sources.
gen-check: install
	$(BIN)/embrec gen --check

clean:
	rm -rf $(VENV) var build *.egg-info .mypy_cache .ruff_cache .pytest_cache
