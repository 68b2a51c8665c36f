"""Never lose an acknowledged write: crashes, graceful stops and database outages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import running
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.stores.mongo import MongoStore
from tests.conftest import Stack, make_settings, start_mongo
from tests.helpers import ServiceProcess, as_json, eventually, log_body, new_agent, publish_all, scrape

pytestmark = pytest.mark.slow


@pytest.fixture
def logs_process(settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("logs", settings, tmp_path / "logs-service.log")
    yield proc
    proc.stop()


async def count(mongo: MongoStore, agent: str) -> int:
    return await mongo.count("logs", {"agent_id": agent})


def batch(agent: str, start: int, n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    return [
        (f"agents.{agent}.logs", as_json(log_body(i)), {"Nats-Msg-Id": f"{agent}:log-{i:06d}"})
        for i in range(start, start + n)
    ]


async def assert_exactly_once(mongo: MongoStore, agent: str, n: int) -> None:
    docs = await mongo.find("logs", {"agent_id": agent}, limit=n + 10)
    assert sorted(d["id"] for d in docs) == [f"log-{i:06d}" for i in range(n)]


async def test_sigkilled_service_loses_nothing_acked(
    logs_process: ServiceProcess, nc: Client, mongo: MongoStore
) -> None:
    agent = new_agent()
    logs_process.start()
    publisher = asyncio.create_task(publish_all(nc, batch(agent, 0, 20_000)))
    await eventually(lambda: _more_than(count(mongo, agent), 2000), what="ingest under way")
    logs_process.kill()
    acks = await publisher
    assert len(acks) == 20_000  # every publish was durably accepted
    stored_at_crash = await count(mongo, agent)
    assert stored_at_crash < 20_000
    logs_process.start()
    await eventually(lambda: _equals(count(mongo, agent), 20_000), timeout=90, what="all stored")
    await assert_exactly_once(mongo, agent, 20_000)


async def test_sigterm_drains_cleanly_and_a_restart_finishes_the_stream(
    logs_process: ServiceProcess, nc: Client, mongo: MongoStore
) -> None:
    agent = new_agent()
    logs_process.start()
    publisher = asyncio.create_task(publish_all(nc, batch(agent, 0, 10_000)))
    await eventually(lambda: _more_than(count(mongo, agent), 1000), what="ingest under way")
    assert logs_process.terminate() == 0
    await publisher
    js = nc.jetstream()
    info = await js.consumer_info("LOGS", "logs")
    # Whatever the stopped service acked is stored: the ack floor never passes the data.
    assert await count(mongo, agent) >= info.ack_floor.stream_seq
    logs_process.start()
    await eventually(lambda: _equals(count(mongo, agent), 10_000), timeout=60, what="all stored")
    await assert_exactly_once(mongo, agent, 10_000)


@pytest.fixture
def own_mongo(tmp_path: Path, postgres_server: Server) -> Iterator[Server]:
    server = start_mongo(postgres_server, tmp_path / "mongo")
    yield server
    server.stop()


async def test_mongodb_down_20s_loses_nothing_and_deadletters_nothing(
    nats_server: Server, own_mongo: Server, stack_servers: Stack, nc: Client, tmp_path: Path
) -> None:
    # The stack's PostgreSQL too: the logs service keeps the memory store there.
    settings = make_settings(nats_server, own_mongo, stack_servers)
    mongo = MongoStore(own_mongo.url, settings.mongodb_db)
    agent = new_agent()
    async with running(LOGS, settings) as host:
        await publish_all(nc, batch(agent, 0, 1000))
        await eventually(lambda: _equals(count(mongo, agent), 1000), what="first 1000 stored")
        own_mongo.stop()
        outage = asyncio.create_task(publish_all(nc, batch(agent, 1000, 4000)))
        await asyncio.sleep(20)  # the outage itself: MongoDB stays down for 20 s
        assert len(await outage) == 4000
        own_mongo.restart()
        try:
            await eventually(lambda: _equals(count(mongo, agent), 5000), timeout=60, what="backlog")
            await assert_exactly_once(mongo, agent, 5000)
            retried = host.metrics.ingested.labels(kind="logs", outcome="retried")._value.get()
            assert retried > 0  # the outage was seen and retried, not skipped
            js = nc.jetstream()
            info = await js.stream_info("DEADLETTER")
            assert info.state.messages == 0
        finally:
            await mongo.close()


async def _equals(value: object, expected: int) -> bool:
    return bool(await value == expected)  # type: ignore[misc]


async def _more_than(value: object, n: int) -> bool:
    return bool(await value > n)  # type: ignore[operator]


def backlog_of(metrics: str, stream: str = "LOGS", consumer: str = "logs") -> float:
    for line in metrics.splitlines():
        if line.startswith(f'agentstore_consumer_backlog{{consumer="{consumer}",stream="{stream}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no backlog gauge for {stream}/{consumer} in /metrics")


async def test_metrics_show_the_backlog_rising_while_the_service_cannot_store(
    nats_server: Server, own_mongo: Server, stack_servers: Stack, nc: Client
) -> None:
    """What KEDA and the dashboard read: the consumer's backlog on /metrics grows while
    the logs service is held up (its MongoDB down) and returns to 0 once it catches up."""
    settings = make_settings(nats_server, own_mongo, stack_servers)
    agent = new_agent()
    async with running(LOGS, settings) as host:
        assert host.health_port is not None
        assert backlog_of(await scrape(host.health_port)) == 0
        assert "process_resident_memory_bytes" in await scrape(host.health_port)
        own_mongo.stop()
        await publish_all(nc, batch(agent, 0, 3000))
        seen: list[float] = []

        async def rising() -> bool:
            seen.append(backlog_of(await scrape(host.health_port)))  # type: ignore[arg-type]
            return seen[-1] >= 3000

        await eventually(rising, timeout=20, what="the backlog to reach the 3000 waiting messages")
        await publish_all(nc, batch(agent, 3000, 1000))
        await eventually(
            lambda: _more_than(_backlog(host.health_port), 3999), timeout=20, what="a backlog of 4000"
        )
        own_mongo.restart()
        await eventually(
            lambda: _equals(_backlog(host.health_port), 0), timeout=60, what="the backlog drained"
        )
        mongo = MongoStore(own_mongo.url, settings.mongodb_db)
        try:
            await assert_exactly_once(mongo, agent, 4000)
        finally:
            await mongo.close()


async def _backlog(port: int | None) -> float:
    assert port is not None
    return backlog_of(await scrape(port))
