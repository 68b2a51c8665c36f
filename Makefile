# agentstore: `make run` runs the system, `make test` passes the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AGENTSTORE := $(VENV)/bin/agentstore

# uv installs exactly what uv.lock names (the versions the tests passed with). It is
# bootstrapped from PyPI into .cache at the version the lock itself holds for the dev extra
# (tests/test_install.py keeps the two equal).
UV_VERSION := 0.13.9
UV := .cache/uv-$(UV_VERSION)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# The dev group: both distributions (editable, the server with its stack extra) and the dev tools.
SYNC := $(UV) sync --locked --group dev --python $(PYTHON)

.PHONY: install servers browser up down status run serve test lint format bench faults clean sdk-check \
	screenshots lock upgrade outdated wheels

$(UV):
	rm -rf .cache/uv-$(UV_VERSION) && $(PYTHON) -m venv .cache/uv-$(UV_VERSION)
	.cache/uv-$(UV_VERSION)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# Every time (50 ms when nothing changed): the venv holds exactly the lock, whatever was
# installed into it by hand since. --locked refuses, rather than re-resolves, when
# pyproject.toml and uv.lock disagree.
install: | $(UV)
	@$(SYNC) -q

# Refresh the lock after editing pyproject.toml's ranges (keeps every version that still fits),
# or move every package to its newest allowed version; either way the tests run on the result.
lock: | $(UV)
	$(UV) lock
	$(MAKE) test

upgrade: | $(UV)
	$(UV) lock --upgrade
	$(MAKE) test

# What is newer on PyPI than the lock holds (nothing is changed).
outdated: install
	$(UV) pip list --outdated --python $(PY)

# Build FerretDB and MinIO once into ~/.cache/agentstore (reused by every checkout and CI).
servers: install
	$(PY) -c "from agentstore_server.devstack import binaries as b; b.nats_server(); b.postgres_bin(); b.mongod() or b.ferretdb(); b.minio(); b.compose_schema(); b.asyncapi_schema()"

# The console's tests drive Debian's chromium (Playwright launches it; it downloads nothing).
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the console tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }

# make up AUTH=1: NATS with per-identity permissions (.agentstore/fleet.json, .agentstore/auth/).
# make up S3=seaweedfs: SeaweedFS instead of MinIO as the object store.
up: servers
	AGENTSTORE_AUTH=$(AUTH) AGENTSTORE_S3=$(S3) WEB_EVALUATOR=$(WEB_EVALUATOR) $(AGENTSTORE) up

down:
	@if [ -x $(AGENTSTORE) ]; then $(AGENTSTORE) down; fi

status: install
	$(AGENTSTORE) status

run: servers
	$(AGENTSTORE) run --demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: servers browser lint
	$(PY) -m pytest

# The README's console pictures, taken by the tests' browser against the real stack.
screenshots: servers browser
	AGENTSTORE_SCREENSHOTS=docs/images $(PY) -m pytest -q tests/test_web.py -k "fleet_page or agent_page"

bench: servers
	$(PY) -m bench.ingest_logs

# The fault suite (tests/test_faults.py) at full size: the `soak` marker, about half an hour
# (make test runs the same cases short); figures in .cache/faults.json. Then the hostile-input
# suite at its large size (tests/test_hostile.py, 300 examples a test).
faults: servers
	$(PY) -m pytest -m soak -s tests/test_faults.py
	$(PY) -m bench.hostile

clean: down
	rm -rf .agentstore

# Both distributions as wheels: dist/agentstore-*.whl (the SDK) and dist/agentstore_server-*.whl.
DIST ?= dist
wheels: | $(UV)
	$(UV) build -q --all-packages --wheel -o $(DIST)
	rm -rf shared/build services/build

# The SDK as an agent author installs it: a fresh venv with the SDK's locked dependencies and
# no extra; fails if any server package came along, the import breaks, or a server command
# answers with more than a line naming the extra (part of make test too).
sdk-check: install
	$(PY) -m pytest -q -p no:cacheprovider tests/test_install.py
