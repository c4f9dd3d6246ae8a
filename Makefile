# Two entry points, each doing all of its own set-up in a local virtual environment:
#   make demo   train a shifting Topographic VAE for at most 5 minutes and write its report
#   make test   run the test suite
# TORCH selects the PyTorch build; the default is the CPU wheel available offline on these machines.
VENV  ?= .venv
TORCH ?= torch==2.13.0
PY    := $(VENV)/bin/python

.PHONY: demo test test-slow bench lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,demo]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/topovae demo --out runs/demo

test: $(VENV)/.installed
	$(PY) -m pytest

# the long fault drills (50 kills, a killed two-node run); CI runs them after the default suite
test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

bench: $(VENV)/.installed
	$(VENV)/bin/topovae bench

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks scripts
