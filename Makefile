# Two commands on a fresh machine with Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: demo test lint format bench clean airflow-constraints browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# One stamp per extra set, redone when pyproject.toml changes.
$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	touch $@

# Airflow gets a virtualenv of its own, so its pins cannot clash with the service's.
# satdask goes in editable with the airflow extra only. The constraints file (a
# `pip freeze` of a working install, as Airflow itself publishes per release) keeps
# a clean clone's install reproducible; `make airflow-constraints` renews it.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_PY   := $(AIRFLOW_VENV)/bin/python
AIRFLOW_PINS := orchestration/constraints-airflow.txt

$(AIRFLOW_VENV)/.installed-airflow: pyproject.toml $(AIRFLOW_PINS)
	test -x $(AIRFLOW_PY) || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_PY) -m pip install --quiet --upgrade pip
	$(AIRFLOW_PY) -m pip install --quiet -c $(AIRFLOW_PINS) -e '.[airflow]'
	touch $@

airflow-constraints:
	rm -rf $(AIRFLOW_VENV)-pins
	$(PYTHON) -m venv $(AIRFLOW_VENV)-pins
	$(AIRFLOW_VENV)-pins/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)-pins/bin/python -m pip install --quiet -e '.[airflow]'
	{ echo '# pip freeze of the airflow extra on Python 3.11; renew with make airflow-constraints'; \
	  $(AIRFLOW_VENV)-pins/bin/python -m pip freeze --exclude-editable; } > $(AIRFLOW_PINS)
	rm -rf $(AIRFLOW_VENV)-pins

demo: $(VENV)/.installed-core
	$(BIN)/satdask demo --workdir satdask-demo

# The map page's real-browser test (tests/browser) drives Debian's chromium; Playwright
# cannot download its own browsers here. Installed by this step, as root or through sudo.
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation; }
	@test -x $(CHROMIUM) || { echo "make browser: $(CHROMIUM) is still missing"; exit 1; }

# SATDASK_AIRFLOW_PYTHON makes the DAG test run in the Airflow venv, and fail (not skip)
# if it is missing.
test: $(VENV)/.installed-dev $(AIRFLOW_VENV)/.installed-airflow browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	SATDASK_AIRFLOW_PYTHON=$(abspath $(AIRFLOW_PY)) $(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-core
	$(BIN)/python benchmarks/batch.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) satdask-demo .pytest_cache .ruff_cache .hypothesis
