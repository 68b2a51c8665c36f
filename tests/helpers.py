"""Helpers for tests: waiting on conditions with deadlines, publishing, requesting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js.api import PubAck

from agentstore.stack.servers import free_port


async def eventually(
    condition: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll an async condition until it is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await condition()
        if last:
            return last
        await asyncio.sleep(0.05)  # polling interval of a condition with a deadline
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def new_agent(prefix: str = "a") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def log_body(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"log-{i:06d}", "level": "info", "message": f"message {i}", **extra}


async def publish_all(
    nc: Client, items: Sequence[tuple[str, bytes, dict[str, str] | None]]
) -> list[PubAck]:
    """Publish with a pipeline of async publishes; returns every PubAck."""
    js = nc.jetstream(publish_async_max_pending=2000)
    futures = [
        await js.publish_async(subject, data, headers=headers) for subject, data, headers in items
    ]
    return list(await asyncio.gather(*futures))


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

    def __init__(self, name: str, settings: Any, log_path: Any) -> None:
        self.name = name
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        env = {
            **os.environ,
            "NATS_URL": self.settings.nats_url,
            "MONGODB_URL": self.settings.mongodb_url,
            "MONGODB_DB": self.settings.mongodb_db,
            "POSTGRES_URL": self.settings.postgres_url,
            "S3_ENDPOINT": self.settings.s3_endpoint,
            "HEALTH_PORT": str(port),
            "DRAIN_SECONDS": "10",
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentstore", "serve", self.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.health = f"http://127.0.0.1:{port}/readyz"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = Path(self.log_path).read_text(errors="replace")[-2000:]
                raise AssertionError(f"{self.name} exited: {tail}")
            try:
                with urllib.request.urlopen(self.health, timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        async def check() -> bool:
            return await asyncio.to_thread(ready)

        await eventually(check, timeout=timeout, what=f"{self.name} ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
