# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs; nothing relies on a hand install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint redis-server clean

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

# System packages the tests use, installed with apt-get when missing (command:package):
# redis-server for the Redis backend; sshd, rsync and nc for tests/ray/test_ray_up.py,
# which brings cluster-local.yaml up with the real `ray up` through an sshd of its own.
# (On a machine run by systemd, installing openssh-server also enables the system's
# own sshd; the test does not use it.) chromium for tests/monitor, whose Playwright
# drives Debian's browser (Playwright's own browser download is not used).
SYSTEM_PACKAGES := redis-server:redis-server sshd:openssh-server rsync:rsync nc:netcat-openbsd \
	chromium:chromium

redis-server:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	[ -z "$$missing" ] || (apt-get update && apt-get install -y $$missing)

# Lint and type-check (pyproject.toml [tool.ruff], [tool.mypy]); `test` and `test-fast`
# run it first.
lint: $(VENV)/.test
	$(PY) -m ruff check pynenc_ray local_runners tests
	$(PY) -m mypy

test: $(VENV)/.test redis-server lint
	$(PY) -m pytest

test-fast: $(VENV)/.test redis-server lint
	$(PY) -m pytest -m "not slow"

# Peer benchmark (benchmarks/peers/README.md): Huey and Dramatiq venvs, then the driver.
bench-peers: $(VENV)/.test redis-server
	PYTHON=$(PYTHON) benchmarks/peers/setup.sh
	$(PY) benchmarks/peers/driver.py $(BENCH_PEERS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
