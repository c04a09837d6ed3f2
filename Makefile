# The two commands a new user needs: `make up` (run embrec, embedded) and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up demo test pytest lint breaking gen gen-check clean

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
	$(MAKE) --no-print-directory breaking

# Contracts must not break against the last landed commit (BASE=<git ref> to compare with
# another). Skipped only where there is no history to compare with (a first commit).
BASE ?= HEAD~1
breaking: install
	@if git rev-parse -q --verify "$(BASE)^{commit}" >/dev/null; then \
		$(BIN)/buf breaking --against '.git#ref=$(BASE)'; \
	else echo "buf breaking: no $(BASE) to compare with, skipped"; fi

gen: install
	$(BIN)/embrec gen

# Generated code and the Envoy config are committed; fail when they drift from the sources.
gen-check: install
	$(BIN)/embrec gen --check

clean:
	rm -rf $(VENV) var build *.egg-info .mypy_cache .ruff_cache .pytest_cache
