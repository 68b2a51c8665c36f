"""Helpers for tests: waiting on conditions with deadlines, publishing, requesting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.js.api import PubAck

from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server, free_port, service_env, start_service


async def until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` with `seconds` as the deadline; whether it was set (a paced loop ends
    as soon as it is told to, not after its period)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()


async def poll_until(condition: Callable[[], Awaitable[Any]], timeout: float, every: float = 0.05) -> Any:
    """Poll an async condition until it is truthy or the deadline passes; its last value either
    way (the fault suite reports what it measured, held or not)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await condition()
        if last:
            return last
        await asyncio.sleep(every)  # polling interval of a condition with a deadline
    return last


def as_async(predicate: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A plain predicate as the async condition `poll_until` takes."""

    async def condition() -> Any:
        return predicate()

    return condition


async def eventually(
    condition: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll an async condition until it is truthy; fail with `what` after the deadline."""
    last = await poll_until(condition, timeout)
    if not last:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
    return last


async def waiting_on_lock(postgres_url: str, table: str) -> bool:
    """Whether some session waits on a lock while running a statement on `table`. Asked on a
    connection of its own: inside a transaction, pg_stat_activity is a snapshot taken at its
    first read (stats_fetch_consistency), so a blocker's own connection would never see it change."""
    import asyncpg

    conn = await asyncpg.connect(postgres_url)
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
            f"%{table}%",
        )
    finally:
        await conn.close()
    return bool(waiting)


def new_agent(prefix: str = "a") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def log_body(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"log-{i:06d}", "level": "info", "message": f"message {i}", **extra}


async def publish_all(nc: Client, items: Sequence[tuple[str, bytes, dict[str, str] | None]]) -> list[PubAck]:
    """Publish with a pipeline of async publishes; returns every PubAck."""
    js = nc.jetstream(publish_async_max_pending=2000)
    futures = [await js.publish_async(subject, data, headers=headers) for subject, data, headers in items]
    return list(await asyncio.gather(*futures))


async def dead_letters(nc: Client) -> list[Any]:
    """Every message of the DEADLETTER stream, oldest first."""
    js = nc.jetstream()
    try:
        info = await js.stream_info("DEADLETTER")
    except Exception:
        return []
    return [await js.get_msg("DEADLETTER", seq) for seq in range(1, info.state.last_seq + 1)]


def after(ack: PubAck) -> dict[str, Any]:
    """The `after` of a query that must see the publish acknowledged by `ack`."""
    return {"stream": ack.stream, "seq": ack.seq}


def as_json(body: Any) -> bytes:
    return body if isinstance(body, bytes) else msgspec.json.encode(body)


async def request(nc: Client, subject: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
    """A request-reply call; returns (code, decoded body). Code 200 when no error header."""
    msg = await nc.request(subject, as_json(body), timeout=timeout)
    headers = msg.headers or {}
    code = int(headers.get("Nats-Service-Error-Code", 200))
    return code, msgspec.json.decode(msg.data) if msg.data else None


class ServiceProcess:
    """A service run as its own process (`python -m agentstore serve NAME`), as in production."""

    def __init__(self, name: str, settings: Settings, log_path: Path) -> None:
        self.name = name
        self.env = {**os.environ, **service_env(settings)}
        self.log_path = log_path
        self.server: Server | None = None

    def start(self) -> None:
        self.server = start_service(self.name, self.env, self.log_path, free_port())

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.server is not None, "start() first"
        return self.server.process

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()


async def scrape(port: int | None) -> str:
    """A service's /metrics text (its health port), over a raw HTTP/1.1 request."""
    assert port is not None, "the service has no health port yet"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    body = (await reader.read()).decode()
    writer.close()
    return body


async def pg_rows(postgres_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of one query, on a connection of its own (what a test reads straight from PostgreSQL)."""
    conn = await asyncpg.connect(postgres_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
