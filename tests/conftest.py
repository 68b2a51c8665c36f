"""Real servers for the tests: started once per session (PostgreSQL, MongoDB wire
server, MinIO) or once per test (nats-server: ~0.1 s, full isolation), each on
a free port in a temp dir, and stopped at the end."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.metrics.service import SPEC as METRICS
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.tasks.service import SPEC as TASKS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Shortly before pytest-timeout ends a test, print what every asyncio task awaits: its
    traceback shows only the event loop's select, which says nothing of what hangs."""
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else float(item.config.getini("timeout") or 0)
    timer = threading.Timer(max(limit - 15, limit * 0.9), _dump_tasks, (item.nodeid,)) if limit else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _dump_tasks(nodeid: str) -> None:
    out = sys.__stderr__
    assert out is not None
    print(f"\n==== {nodeid} is about to time out; its asyncio tasks:", file=out)
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        for task in list(asyncio.all_tasks(loop)):
            print(f"-- {task.get_name()}", file=out)
            # A suspended task's own stack is one frame: follow what each coroutine awaits.
            coro: Any = task.get_coro()
            while coro is not None:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                frame = frame or getattr(coro, "ag_frame", None)
                if frame is not None:
                    print(f"   {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}", file=out)
                coro = _awaited(coro)
    out.flush()


def _awaited(coro: Any) -> Any:
    """What a suspended coroutine, generator or async generator awaits. An async generator's
    `asend`/`athrow` (an `async with` of an asynccontextmanager) hides its generator: gc finds it."""
    if type(coro).__name__ in ("async_generator_asend", "async_generator_athrow"):
        return next((r for r in gc.get_referents(coro) if hasattr(r, "ag_frame")), None)
    found = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return found or getattr(coro, "ag_await", None)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def postgres_server(session_dir: Path) -> Iterator[Server]:
    server = servers.start_postgres(session_dir / "postgres", servers.free_port(), durable=False)
    yield server
    server.stop()


def start_mongo(postgres: Server, data: Path, port: int | None = None) -> Server:
    """FerretDB on its own database of the session's PostgreSQL (as the stack runs it)."""
    if port is None:
        return servers.start_mongo_on(postgres, data, f"ferret{uuid.uuid4().hex[:8]}")
    backend = servers.create_database(postgres.address, f"ferret{uuid.uuid4().hex[:8]}")
    return servers.start_mongo(data, port, servers.free_port(), postgres_url=backend)


@pytest.fixture(scope="session")
def mongo_server(session_dir: Path, postgres_server: Server) -> Iterator[Server]:
    server = start_mongo(postgres_server, session_dir / "mongo")
    yield server
    server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Server]:
    server = servers.start_nats(tmp_path / "nats", servers.free_port(), servers.free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A nats-server for a whole module: for modules whose tests share one running stack
    (the console's fleet, the hostile-input search), where a server a test costs more than
    the test."""
    server = servers.start_nats(tmp_path_factory.mktemp("nats"), servers.free_port(), servers.free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def minio_server(session_dir: Path) -> Iterator[Server]:
    server = servers.start_minio(session_dir / "minio", servers.free_port(), servers.free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs_server(session_dir: Path) -> Iterator[Server]:
    """SeaweedFS: a maintained S3 server, for the artifacts tests' second run."""
    server = servers.start_seaweedfs(session_dir / "seaweedfs", servers.free_port())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack_servers(postgres_server: Server, mongo_server: Server, minio_server: Server) -> Stack:
    return Stack(postgres_server, mongo_server, minio_server)


@dataclass(frozen=True)
class Stack:
    """The session's shared servers (NATS is per test)."""

    postgres: Server
    mongo: Server
    minio: Server


@pytest.fixture
def settings(nats_server: Server, stack_servers: Stack) -> Settings:
    return make_settings(nats_server, stack_servers.mongo, stack_servers)


READ_PATHS = ("sql", "wire")


def settings_for_read_path(
    request: pytest.FixtureRequest, nats_server: Server, stack_servers: Stack
) -> Settings:
    """A module's `settings`, once per read path of the logs service: through FerretDB's
    PostgreSQL (the stack's way, `stores/ferretsql.py`) and over the wire (as against a
    real MongoDB). `settings = pytest.fixture(params=READ_PATHS)(settings_for_read_path)`."""
    settings = make_settings(nats_server, stack_servers.mongo, stack_servers)
    return settings if request.param == "sql" else settings.model_copy(update={"mongodb_sql_url": None})


def make_settings(
    nats_server: Server, mongo_server: Server, stack: Stack | None = None, **extra: object
) -> Settings:
    """Settings for one test: its own MongoDB database, PostgreSQL database and bucket prefix."""
    values: dict[str, object] = {
        "nats_url": nats_server.url,
        "mongodb_url": mongo_server.url,
        "mongodb_db": f"t{uuid.uuid4().hex[:12]}",
        # FerretDB on PostgreSQL: the logs service reads through SQL, as the stack runs it.
        "mongodb_sql_url": mongo_server.sql_url,
        "drain_seconds": 10,
        "web_port": 0,  # the console (when a test runs it) on a free port
    }
    if stack is not None:
        name = f"t{uuid.uuid4().hex[:12]}"
        values["postgres_url"] = servers.create_database(stack.postgres.address, name)
        values["s3_endpoint"] = stack.minio.address
    return Settings(_env_file=None, **{**values, **extra})  # type: ignore[call-arg, arg-type]


@pytest.fixture
async def nc(nats_server: Server) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()


@pytest.fixture
async def mongo(settings: Settings) -> AsyncIterator[MongoStore]:
    store = MongoStore(settings.mongodb_url, settings.mongodb_db)
    yield store
    await store.drop_database()
    await store.close()


@pytest.fixture
async def logs_service(settings: Settings) -> AsyncIterator[ServiceHost]:
    async with running(LOGS, settings) as host:
        yield host


@pytest.fixture
async def tasks_service(settings: Settings) -> AsyncIterator[ServiceHost]:
    async with running(TASKS, settings) as host:
        yield host


@pytest.fixture
async def metrics_service(settings: Settings) -> AsyncIterator[ServiceHost]:
    async with running(METRICS, settings) as host:
        yield host


@pytest.fixture
async def artifacts_service(settings: Settings) -> AsyncIterator[ServiceHost]:
    async with running(ARTIFACTS, settings) as host:
        yield host
