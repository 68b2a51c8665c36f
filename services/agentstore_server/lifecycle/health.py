"""A tiny HTTP endpoint for Kubernetes probes and Prometheus: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentstore_server.lifecycle.metrics import ServiceMetrics

log = logging.getLogger("agentstore.health")

Check = Callable[[], Awaitable[None]]


class Faults:
    """Faults of the deployment the service met and has not yet seen cleared (a dropped
    table, a missing bucket): readiness is false, with the reason, while any is active."""

    def __init__(self) -> None:
        self._active: dict[str, str] = {}

    def report(self, where: str, reason: str) -> None:
        if where not in self._active:
            log.error("deployment fault at %s, retrying until fixed: %s", where, reason)
        self._active[where] = reason

    def clear(self, where: str) -> None:
        if self._active.pop(where, None) is not None:
            log.info("deployment fault at %s cleared", where)

    @property
    def active(self) -> dict[str, str]:
        return dict(self._active)

    async def check(self) -> None:
        if self._active:
            raise RuntimeError("; ".join(f"{where}: {reason}" for where, reason in self._active.items()))


class HealthServer:
    """Liveness is "the event loop answers"; readiness runs every check (NATS, stores)."""

    def __init__(
        self, metrics: ServiceMetrics, checks: dict[str, Check], before_scrape: Check | None = None
    ) -> None:
        self.metrics = metrics
        self.checks = checks
        # Gauges read from elsewhere (JetStream consumer state) are refreshed per scrape.
        self.before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def readiness(self) -> dict[str, str]:
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"failing: {exc}"
        return results

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = request_line.split(b" ")[1].decode() if b" " in request_line else "/"
            status, ctype, body = await self._route(path)
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[str, str, bytes]:
        if path.startswith("/healthz"):
            return "200 OK", "text/plain", b"ok\n"
        if path.startswith("/readyz"):
            results = await self.readiness()
            ok = all(v == "ok" for v in results.values())
            text = "".join(f"{k}: {v}\n" for k, v in results.items()).encode()
            return ("200 OK" if ok else "503 Service Unavailable"), "text/plain", text
        if path.startswith("/metrics"):
            if self.before_scrape is not None:
                try:
                    await asyncio.wait_for(self.before_scrape(), timeout=2.0)
                except Exception as exc:  # the rest of the metrics still answer
                    log.warning("could not refresh the backlog gauges: %r", exc)
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        return "404 Not Found", "text/plain", b"try /healthz, /readyz or /metrics\n"
