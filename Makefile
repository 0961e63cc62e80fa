# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates its venv from the lock file (uv.lock) and installs what it needs;
# nothing relies on a hand install, and a new release on PyPI changes nothing here
# until `make lock` is run and its result committed.
PYTHON ?= python3
# uv installs every venv from the lock; it is itself pinned, in a venv of its own.
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
# test-fast's venv: the same lock without the `ray` extra, so the fast run shows
# that everything it selects works without Ray installed.
VENV_FAST := .venv-fast
# test-lowest's venv: the oldest versions pyproject's ranges allow (requirements/lowest.txt).
VENV_LOWEST := .venv-lowest
LOWEST := requirements/lowest.txt

# uv uses the Python it is given (never one it downloads) and checks that
# uv.lock matches pyproject.toml (--locked: a range edited without `make lock` fails).
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
SYNC := $(UV) sync --locked --quiet

.PHONY: demo test test-fast test-matrix test-lowest lint lint-fast docs lock system-packages redis-server clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q "uv==$(UV_VERSION)"

# --seed: pip in the venv, which tests/ray/test_ray_up.py's node setup runs
# (`pip install -e` into an overlay of this venv); `uv sync` keeps it.
$(VENV)/bin/python: | $(UV)
	$(UV) venv --seed --quiet $(VENV)

# demo: the package alone (--inexact keeps the test extras of an earlier `make test`).
$(VENV)/.core: uv.lock pyproject.toml | $(VENV)/bin/python
	$(SYNC) --inexact
	touch $@

$(VENV)/.test: uv.lock pyproject.toml | $(VENV)/bin/python
	$(SYNC) --all-extras
	touch $@ $(VENV)/.core

$(VENV_FAST)/.test: uv.lock pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV_FAST) $(SYNC) --extra test --extra monitor
	touch $@

$(VENV_LOWEST)/.test: $(LOWEST) pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing $(VENV_LOWEST)
	VIRTUAL_ENV=$(VENV_LOWEST) $(UV) pip sync --quiet $(LOWEST)
	VIRTUAL_ENV=$(VENV_LOWEST) $(UV) pip install --quiet --no-deps -e .
	touch $@

demo: $(VENV)/.core
	$(PY) examples/quickstart.py

# System packages the tests use, installed with apt-get when missing (command:package):
# redis-server for the Redis backend; sshd, rsync and nc for tests/ray/test_ray_up.py,
# which brings cluster-local.yaml up with the real `ray up` through an sshd of its own.
# (On a machine run by systemd, installing openssh-server also enables the system's
# own sshd; the test does not use it.) chromium for tests/monitor, whose Playwright
# drives Debian's browser (Playwright's own browser download is not used). ip,
# nsenter and iptables for the test hosts of tests/netns_cluster.py (network
# namespaces; iptables drops packets for silent partitions), redis-sentinel for
# Redis failover across those hosts.
SYSTEM_PACKAGES := redis-server:redis-server sshd:openssh-server rsync:rsync nc:netcat-openbsd \
	chromium:chromium ip:iproute2 nsenter:util-linux iptables:iptables \
	redis-sentinel:redis-sentinel

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	[ -z "$$missing" ] || (apt-get update && apt-get install -y $$missing)

redis-server: system-packages

# Lint and type-check (pyproject.toml [tool.ruff], [tool.mypy]) with the locked tools;
# `test` and `test-fast` run it first.
lint: $(VENV)/.test
	$(PY) -m ruff check pynenc_ray local_runners tests
	$(PY) -m mypy

lint-fast: $(VENV_FAST)/.test
	$(VENV_FAST)/bin/python -m ruff check pynenc_ray local_runners tests
	$(VENV_FAST)/bin/python -m mypy

# The documentation site (mkdocs.yml) into .site/, warnings as errors (a broken link,
# an API page whose object does not import).
docs: $(VENV)/.test
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# The whole suite, slow tests included, after lint and the docs build.
test: $(VENV)/.test system-packages lint docs
	$(PY) -m pytest

# No server and no Ray: tests marked `redis`, `ray` or `slow` are deselected, so this
# needs neither redis-server nor Ray and takes under two minutes.
test-fast: $(VENV_FAST)/.test lint-fast
	$(VENV_FAST)/bin/python -m pytest -m "not slow and not redis and not ray"

# The whole matrix: `make test` runs every backend x runner pair of the conformance
# suite, and the payload store's own tests on each pair with file:// and S3; this
# runs the whole conformance suite twice more, with most payloads in a store on
# file:// and then on S3 (moto on loopback).
test-matrix: $(VENV)/.test system-packages
	$(PY) -m pytest tests/conformance
	PYNENC_CONFORMANCE_PAYLOAD_STORE=file $(PY) -m pytest tests/conformance
	PYNENC_CONFORMANCE_PAYLOAD_STORE=s3 $(PY) -m pytest tests/conformance

# The unit and conformance suites at the oldest versions pyproject allows (not part
# of `make test`): what the floors in pyproject promise is what passes here.
test-lowest: $(VENV_LOWEST)/.test system-packages
	$(VENV_LOWEST)/bin/python -m pytest tests/unit tests/conformance

# Refresh both resolutions from pyproject.toml, then commit uv.lock and requirements/.
lock: | $(UV)
	$(UV) lock --upgrade
	$(UV) pip compile --quiet pyproject.toml --all-extras --resolution lowest-direct \
	  --python-version 3.11 --output-file $(LOWEST)

# Peer benchmark (benchmarks/peers/README.md): the peers' venvs, then the driver once per
# workload (per task, async I/O, CPU-bound); BENCH_PEERS_WORKLOADS picks some of them.
BENCH_PEERS_WORKLOADS ?= add io cpu
bench-peers: $(VENV)/.test system-packages
	PYTHON=$(PYTHON) benchmarks/peers/setup.sh
	for w in $(BENCH_PEERS_WORKLOADS); do \
	  $(PY) benchmarks/peers/driver.py --workload $$w $(BENCH_PEERS_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_FAST) $(VENV_LOWEST) $(TOOLS) .pytest_cache build *.egg-info
