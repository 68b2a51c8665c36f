"""A service's handle on NATS for its handlers: bound by the runner once connected.

JetStream publishes a service makes go through a `BatchPublisher`: they are
batched per stream like an agent's, so a burst costs a few fsynced PubAcks,
not one each. Copies (`copy=True`: the tasks service's copies of run
transitions to `agents.{agent}.events`, whose record is `run_events`) wait
longer for company: each batch is an fsync on nats-server, on the CPU and the
disk PostgreSQL commits on. Measured (bench.claims, claims through NATS /
direct SQL): copies in 5 ms batches 0.50-0.57, in 100 ms batches 0.59-0.71,
no copies at all 0.65-0.82. Publishes a caller waits on (OTLP's) keep 5 ms.
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


# How long a copy waits for others to share its batch (and its fsync).
COPY_LINGER = 0.1


class BusHandle:
    def __init__(self) -> None:
        self._nc: Client | None = None
        self._publisher: BatchPublisher | None = None
        self._copies: BatchPublisher | None = None
        # Set once bound: what runs before (a callout answering during start) can wait for it.
        self.bound = asyncio.Event()

    def bind(self, nc: Client) -> None:
        self._nc = nc
        self.bound.set()
        self._publisher = BatchPublisher(nc)
        self._copies = BatchPublisher(nc, linger=COPY_LINGER)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise Unavailable("not connected to NATS yet")
        return self._nc

    async def publish(
        self, subject: str, body: Any, msg_id: str, *, copy: bool = False
    ) -> asyncio.Future[int]:
        """Queue a JetStream publish on an ingest subject, deduplicated by msg_id; the future
        resolves once it is acknowledged (a failure is logged, and raised by the future).
        `copy`: a copy of what a store already holds, batched over COPY_LINGER."""
        publisher = self._copies if copy else self._publisher
        if publisher is None:
            raise Unavailable("not connected to NATS yet")
        if publisher.full:
            # A handler never waits on NATS trouble: its own store (run_events) is the record.
            raise Unavailable(f"{publisher.held} publishes already wait for their PubAck")
        kind = subject.rsplit(".", 1)[-1]
        stream = contract.INGEST_BY_KIND[kind].stream
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        acked = await publisher.publish(stream, subject, data, msg_id)
        acked.add_done_callback(_log_failure(subject))
        return acked

    async def flush(self) -> None:
        """Wait for every queued publish (at stop, before NATS is drained)."""
        for publisher in (self._publisher, self._copies):
            if publisher is None:
                continue
            try:
                await publisher.flush()
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
