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
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

GS := $(VENV)/bin/gansearch

# The main job: teacher metrics, the joint search (continues if already run), the Pareto
# front with plots, and the knee point exported as a compact artifact.
demo: setup
	$(GS) evaluate studies/digits.yaml
	$(GS) run studies/digits.yaml
	$(GS) pareto studies/digits.yaml --plot studies/digits/front
	$(GS) export studies/digits.yaml --pick knee --out studies/digits/artifact
	$(GS) evaluate studies/digits.yaml --artifact studies/digits/artifact

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check gansearch spaces search evaluators tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
