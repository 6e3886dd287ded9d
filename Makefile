# The two commands a fresh machine needs: `make demo` and `make test`.
# Everything the project needs is installed here, from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
SHARED ?= ../shared
# Raised as coverage grows; never lowered.
COV_FLOOR := 91

.PHONY: all dev demo test lint typecheck unit tools bench fuzz reformat clean

all: test

$(BIN)/python:
	@echo "make: creating the virtual environment $(VENV) ($(PYTHON) -m venv), upgrading pip" >&2
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing nitroguard (editable) and its dev tools from pyproject.toml into $(VENV) (pip install -e '.[dev,kms]'; about 10 s)" >&2
	$(BIN)/python -m pip install --quiet -e '.[dev,kms]'
	touch $(STAMP)

dev: $(STAMP)

demo: $(STAMP)
	$(BIN)/nitroguard demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

# Test tools from Debian: a real Prometheus server for the metrics tests (issue 16).
tools:
	@command -v prometheus >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq prometheus)
	@prometheus --version 2>&1 | head -n 1

unit: $(STAMP) tools
	$(BIN)/python -m pytest --cov=nitroguard --cov-report=term --cov-fail-under=$(COV_FLOOR) $(PYTEST_ARGS)

test: lint typecheck unit

reformat: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

# Benchmarks need extra tools (evervault bindings from PyPI; faketime and socat from Debian).
$(VENV)/.installed-bench: pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,kms,bench]'
	@command -v faketime >/dev/null && command -v socat >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq faketime socat)
	touch $@

bench: $(VENV)/.installed-bench
	for b in bench/*.py; do case $$b in bench/fuzz_*) continue;; esac; $(BIN)/python $$b || exit 1; done

fuzz: $(STAMP)
	for f in bench/fuzz_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .coverage
