# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs; nothing relies on a hand install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast redis-server clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

demo: $(VENV)/.core
	$(PY) examples/quickstart.py

redis-server:
	@command -v redis-server >/dev/null 2>&1 || (apt-get update && apt-get install -y redis-server)

test: $(VENV)/.test redis-server
	$(PY) -m pytest

test-fast: $(VENV)/.test redis-server
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
