"""Faults of the deployment (a dropped table) are retried and shown, never dead-lettered."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
from nats.aio.client import Client

from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import dead_letters, eventually, new_agent, publish_all

PROGRESS_TABLE = """
CREATE TABLE task_progress (
    agent_id text NOT NULL, id text NOT NULL, task_id text NOT NULL, ts timestamptz NOT NULL,
    step integer NOT NULL, status text NOT NULL, percent real, detail jsonb,
    PRIMARY KEY (agent_id, id)
)
"""


async def readyz(port: int | None) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def progress(agent: str, i: int) -> tuple[str, bytes, dict[str, str]]:
    body = {"id": f"p{i}", "task_id": "t1", "step": i, "status": "ok"}
    return f"agents.{agent}.progress", msgspec.json.encode(body), {"Nats-Msg-Id": f"{agent}:p{i}"}


async def stored(settings: Settings, agent: str) -> list[str]:
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        rows = await conn.fetch("SELECT id FROM task_progress WHERE agent_id = $1", agent)
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()
    return sorted(r["id"] for r in rows)


async def test_a_dropped_table_is_retried_and_shown_in_readiness_never_dead_lettered(
    tasks_service: ServiceHost, settings: Settings, nc: Client
) -> None:
    agent = new_agent()
    await publish_all(nc, [progress(agent, i) for i in range(5)])
    await eventually(lambda: _has(settings, agent, 5), what="the first 5 progress rows")
    assert (await readyz(tasks_service.health_port))[0] == 200

    conn = await asyncpg.connect(settings.postgres_url)
    try:
        await conn.execute("DROP TABLE task_progress")
        await publish_all(nc, [progress(agent, i) for i in range(5, 55)])

        async def not_ready_with_reason() -> bool:
            code, body = await readyz(tasks_service.health_port)
            return code == 503 and "task_progress" in body and "deployment" in body

        await eventually(not_ready_with_reason, what="readiness false, naming the missing table")
        assert await dead_letters(nc) == []

        await conn.execute(PROGRESS_TABLE)
    finally:
        await conn.close()
    # Everything published meanwhile (and the 5 before the drop, redelivered or not) lands once.
    await eventually(lambda: _has(settings, agent, 50), timeout=40, what="the 50 published meanwhile")
    assert await stored(settings, agent) == sorted(f"p{i}" for i in range(5, 55))
    await eventually(lambda: _ready(tasks_service), what="readiness back to 200")
    assert await dead_letters(nc) == []


async def _has(settings: Settings, agent: str, n: int) -> bool:
    return len(await stored(settings, agent)) == n


async def _ready(host: ServiceHost) -> bool:
    return (await readyz(host.health_port))[0] == 200
