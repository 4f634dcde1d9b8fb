# Connect Ops: two commands on a fresh machine (Python 3.11+ and make).
#   make demo   install, migrate, seed, run emulator + companion + dashboard (Ctrl-C stops all)
#   make test   install, lint and type-check, run every test (again on PostgreSQL when
#               TEST_DATABASE_URL is set)
#   make notebook   the finance notebook in JupyterLab (installs JupyterLab on first use)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed
NOTEBOOK_STAMP := $(VENV)/.notebook-installed
#: The database the notebook reads: DATABASE_URL, else the demo's.
NOTEBOOK_DATABASE_URL ?= $(if $(DATABASE_URL),$(DATABASE_URL),sqlite:///$(CURDIR)/data/connect_ops.db)

demo-reset:
	rm -f data/connect_ops.db data/connect_ops.db-wal data/connect_ops.db-shm data/emulator-state.json data/demo.env
	rm -rf data/mail
	@echo "Demo data removed; the next make demo seeds afresh."

.PHONY: demo demo-reset test test-sqlite test-postgres lint install clean bench notebook

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "Connect Ops needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1))."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(NOTEBOOK_STAMP): requirements-notebook.txt $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-notebook.txt
	@touch $@

install: $(RUNTIME_STAMP)

notebook: $(NOTEBOOK_STAMP)
	DATABASE_URL='$(NOTEBOOK_DATABASE_URL)' $(BIN)/jupyter lab notebooks/finance.ipynb

demo: $(RUNTIME_STAMP)
	$(BIN)/python -m scripts.demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test-sqlite: $(DEV_STAMP)
	$(BIN)/python -m pytest

test-postgres: $(DEV_STAMP)
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
	  CONNECT_OPS_TEST_BACKEND=postgresql $(BIN)/python -m pytest -m "not browser"; \
	else \
	  echo "TEST_DATABASE_URL is not set: PostgreSQL pass skipped (CI always runs it)."; \
	fi

test: lint test-sqlite test-postgres

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
