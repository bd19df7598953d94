# `make demo` and `make test` create or reuse .venv and install what they need.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
# Plain registry builds of torch/torchvision; a local find-links wheel (CPU-only torch) would
# leave torchvision unable to import.
PIP := PIP_FIND_LINKS= $(VENV)/bin/python -m pip

.PHONY: demo test lint format install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev,pretrained,export,cluster]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/segshift demo --out runs/demo

# The linter first: a lint finding fails the suite as a failing test would.
test: lint
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
