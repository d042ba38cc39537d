# Two commands for a fresh machine: `make demo` and `make test`.
# The CPU torch wheel is installed first, on its own, so that no requirement can pull
# the multi-GB CUDA build from the registry.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.gansearch-installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=68" wheel
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/gansearch evaluate studies/digits.yaml

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check gansearch spaces search evaluators tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
