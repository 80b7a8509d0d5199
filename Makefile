# Two commands for a fresh machine with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench ui venv clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/migration-pipeline demo

# pytest-xdist, one worker more than there are cores (the end-to-end tests spend part of their time
# waiting on emulators, PostgreSQL and Dagster processes). `--dist load --maxschedchunk 1` hands the
# (longest-first) collection out one test at a time to whichever worker is free, so the long tests
# spread over every worker from the start (work stealing, or bigger chunks, give one worker the
# contiguous head of long tests to run one after another while the others run the short ones).
# The 15 slowest tests are listed at the end of each run. TEST_WORKERS=1 runs in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print((os.cpu_count() or 1) + 1)')
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1 --durations=15

# The inner loop: unit and contract tests, no whole migrations, Dagster processes or browser.
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1 --durations=10 -m "not e2e"

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/run_all.py

ui: $(STAMP)
	$(VENV)/bin/migration-pipeline ui

clean:
	rm -rf $(VENV) data .dagster_home .pytest_cache
