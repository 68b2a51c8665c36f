"""A service's handle on NATS for its handlers: bound by the runner once connected.

JetStream publishes a service makes (the tasks service's copies of run
transitions to `agents.{agent}.events`) go through a `BatchPublisher`: they
are batched per stream like an agent's, so a burst of claims costs a few
fsynced PubAcks, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentstore import contract
from agentstore.errors import AgentstoreError, Unavailable
from agentstore.publisher import BatchPublisher

log = logging.getLogger("agentstore.bus")


class BusHandle:
    def __init__(self) -> None:
        self._nc: Client | None = None
        self._publisher: BatchPublisher | None = None

    def bind(self, nc: Client) -> None:
        self._nc = nc
        self._publisher = BatchPublisher(nc)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise Unavailable("not connected to NATS yet")
        return self._nc

    async def publish(self, subject: str, body: Any, msg_id: str) -> asyncio.Future[int]:
        """Queue a JetStream publish on an ingest subject, deduplicated by msg_id; the future
        resolves once it is acknowledged (a failure is logged, and raised by the future)."""
        if self._publisher is None:
            raise Unavailable("not connected to NATS yet")
        if self._publisher.full:
            # A handler never waits on NATS trouble: its own store (run_events) is the record.
            raise Unavailable(f"{self._publisher.held} publishes already wait for their PubAck")
        kind = subject.rsplit(".", 1)[-1]
        stream = contract.INGEST_BY_KIND[kind].stream
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        acked = await self._publisher.publish(stream, subject, data, msg_id)
        acked.add_done_callback(_log_failure(subject))
        return acked

    async def flush(self) -> None:
        """Wait for every queued publish (at stop, before NATS is drained)."""
        if self._publisher is not None:
            try:
                await self._publisher.flush()
            except AgentstoreError as exc:
                log.warning("some publishes were not acknowledged before the stop: %s", exc)

    async def request(self, subject: str, body: Any, timeout: float) -> Msg:
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return await self.nc.request(subject, data, timeout=timeout)


def _log_failure(subject: str) -> Any:
    def done(future: asyncio.Future[int]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("publish to %s failed: %s", subject, future.exception())

    return done
