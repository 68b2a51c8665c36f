"""The one runner every service uses: connect, provision, consume, serve, drain, stop.

A service only declares a ``ServiceSpec``: its streams and handlers, its
request-reply endpoints, and how to open its stores. Stop is graceful in
three steps: stop taking work (no new fetches, no new requests), let the
work in hand finish until the drain deadline, then cancel. NATS is drained
before the stores close. If a background task dies, the service stops and
the process exits non-zero so Kubernetes restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from prometheus_client.registry import Collector

from agentstore import __version__, contract
from agentstore.bus.connect import connect_nats
from agentstore.contract import DEADLETTER, StreamSpec
from agentstore_server.bus.handle import BusHandle
from agentstore_server.bus.ingest import Ingest, IngestWorker, MaxDeliveries
from agentstore_server.bus.provision import ensure_consumer, ensure_stream
from agentstore_server.bus.rpc import IngestProgress, Route, RpcServer
from agentstore_server.config import Settings
from agentstore_server.lifecycle.health import Check, Faults, HealthServer
from agentstore_server.lifecycle.metrics import ServiceMetrics

log = logging.getLogger("agentstore.runner")


@dataclass
class Wiring:
    """What a service's ``build`` returns once its stores are open."""

    ingests: Sequence[Ingest] = ()
    # Streams to provision without a consumer yet: publishes are durably
    # accepted and wait in the stream until a handler for them exists.
    streams: Sequence[StreamSpec] = ()
    endpoints: Sequence[Route] = ()
    checks: dict[str, Check] = field(default_factory=dict)
    # Extra background loops (retention sweeps ...): each runs until cancelled.
    background: Sequence[Callable[[], Any]] = ()
    # Bound to the service's NATS connection once it is up.
    bus: BusHandle | None = None
    # Metrics the stores keep themselves, added to the service's /metrics.
    collectors: Sequence[Collector] = ()


# build(settings, exit_stack) opens the stores (registering their close on the
# stack) and returns the wiring.
Build = Callable[[Settings, AsyncExitStack], Any]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    build: Build


class ServiceHost:
    """One running service. ``start()``, then ``wait()`` or ``stop()``."""

    def __init__(self, spec: ServiceSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.faults = Faults()
        self.health_port: int | None = None
        self.nc: Client | None = None
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[Any]] = []
        self._rpc: RpcServer | None = None
        self._health: HealthServer | None = None
        self._failed: BaseException | None = None
        self._bus: BusHandle | None = None
        self._ingests: list[Ingest] = []
        self._max_deliveries: MaxDeliveries | None = None

    async def start(self) -> None:
        s = self.settings
        try:
            wiring: Wiring = await self.spec.build(s, self._stack)
            self.nc = await connect_nats(
                s.nats, name=f"agentstore-{self.spec.name}", inbox_prefix=f"_INBOX.service.{self.spec.name}"
            )
            js = self.nc.jetstream()
            if wiring.bus is not None:
                wiring.bus.bind(self.nc)
                self._bus = wiring.bus
            # Only a service that consumes can dead-letter; the web console only reads.
            dead = [DEADLETTER] if wiring.ingests else []
            for stream in (*dead, *wiring.streams, *published_streams(self.spec.name)):
                await ensure_stream(js, stream, s.stream_replicas)
            for ingest in wiring.ingests:
                await ensure_stream(js, ingest.stream, s.stream_replicas)
                await ensure_consumer(
                    js,
                    ingest.stream.name,
                    ingest.durable,
                    # Must cover every worker's batch, or workers starve (MEASUREMENTS).
                    max_ack_pending=max(20_000, 4 * s.ingest_batch * s.ingest_workers),
                    # Redelivery after a lost worker or node; writes are idempotent.
                    ack_wait=30.0,
                )
            progress = IngestProgress(js, {i.stream.name: i.durable for i in wiring.ingests})
            workers: list[IngestWorker] = []
            for ingest in wiring.ingests:
                for _ in range(s.ingest_workers):
                    worker = IngestWorker(
                        self.spec.name,
                        ingest,
                        js,
                        self.metrics,
                        s.ingest_batch,
                        self._stopping,
                        self.faults,
                        nc=self.nc,
                    )
                    workers.append(worker)
                    self._workers.append(self._watch(asyncio.create_task(worker.run())))
            if wiring.ingests:
                self._max_deliveries = MaxDeliveries(
                    self.spec.name,
                    self.nc,
                    wiring.ingests,
                    lambda: any(w.failing for w in workers),
                    self.metrics,
                )
                await self._max_deliveries.start()
            for loop in wiring.background:
                self._background.append(self._watch(asyncio.create_task(loop())))
            if wiring.endpoints:  # the web console answers HTTP, not NATS requests
                self._rpc = RpcServer(
                    self.nc, self.spec.name, __version__, self.metrics, progress, s.after_wait_seconds
                )
                await self._rpc.start(wiring.endpoints)
            checks = {"nats": self._nats_ready, **wiring.checks, "deployment": self.faults.check}
            self._ingests = list(wiring.ingests)
            for collector in wiring.collectors:
                self.metrics.registry.register(collector)
            self._health = HealthServer(self.metrics, checks, before_scrape=self._read_backlog)
            self.health_port = await self._health.start(s.health_host, s.health_port)
        except BaseException:
            await self.stop()
            raise
        log.info("%s service started (health on %s:%s)", self.spec.name, s.health_host, self.health_port)

    async def _read_backlog(self) -> None:
        """Set the consumer and dead-letter gauges from JetStream (at each scrape)."""
        if self.nc is None or not self._ingests:
            return
        js = self.nc.jetstream()
        for ingest in self._ingests:
            info = await js.consumer_info(ingest.stream.name, ingest.durable, timeout=1.5)
            labels = {"stream": ingest.stream.name, "consumer": ingest.durable}
            pending, unacked = info.num_pending or 0, info.num_ack_pending or 0
            self.metrics.pending.labels(**labels).set(pending)
            self.metrics.ack_pending.labels(**labels).set(unacked)
            self.metrics.backlog.labels(**labels).set(pending + unacked)
        subject = contract.deadletter_subject(self.spec.name)
        dead = await js.stream_info(DEADLETTER.name, subjects_filter=subject)
        self.metrics.deadletters.labels(service=self.spec.name).set(
            (dead.state.subjects or {}).get(subject, 0)
        )

    async def _nats_ready(self) -> None:
        if self.nc is None or not self.nc.is_connected:
            raise ConnectionError("not connected to NATS")

    def _watch(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        def done(t: asyncio.Task[Any]) -> None:
            if t.cancelled() or self._stopping.is_set():
                return
            self._failed = t.exception() or RuntimeError("background task ended unexpectedly")
            log.error("a background task of %s died: %r; stopping", self.spec.name, self._failed)
            self._stopping.set()

        task.add_done_callback(done)
        return task

    async def wait(self) -> None:
        """Until a stop is requested or a background task dies; raises in the latter case."""
        await self._stopping.wait()
        await self.stop()
        if self._failed is not None:
            raise RuntimeError(f"{self.spec.name} stopped because a task died") from self._failed

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        deadline = time.monotonic() + self.settings.drain_seconds
        if self._rpc is not None:
            await self._rpc.stop(deadline)
            self._rpc = None
        if self._max_deliveries is not None:
            await self._max_deliveries.stop()
            self._max_deliveries = None
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=max(deadline - time.monotonic(), 0))
            await cancel_all(late)
            self._workers = []
        await cancel_all(self._background)
        self._background = []
        if self._health is not None:
            await self._health.stop()
            self._health = None
        if self._bus is not None:
            # What handlers queued for JetStream (audit copies) is acknowledged before NATS drains.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bus.flush(), timeout=max(deadline - time.monotonic(), 1.0))
            self._bus = None
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            self.nc = None
        await self._stack.aclose()


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until each has ended, cancelling again what is still running
    a second later: nats-py swallows a CancelledError that lands while it flushes (a subscribe
    or publish in `_flush_pending`), so one cancel can be lost and the task goes on to wait for
    ever (a KV watch set up just as the service stopped hung its stop)."""
    tasks = list(tasks)
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=1.0)
        for task in pending:
            log.warning("task %s ignored its cancellation; cancelling it again", task.get_name())
            task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: what it raised was handled (or logged) by its watcher


def published_streams(service: str) -> list[StreamSpec]:
    """The streams a service publishes into (the contract's `publishes`): provisioned at its
    start, so what it publishes is kept even before the service that stores it runs."""
    decl = contract.SERVICE_BY_NAME.get(service)
    kinds = [subject.rsplit(".", 1)[-1] for subject in (decl.publishes if decl else ())]
    return [contract.STREAMS[contract.INGEST_BY_KIND[kind].stream] for kind in kinds]


@contextlib.asynccontextmanager
async def running(spec: ServiceSpec, settings: Settings) -> AsyncIterator[ServiceHost]:
    """A started service that stops on exit: for tests and embedding."""
    host = ServiceHost(spec, settings)
    await host.start()
    try:
        yield host
    finally:
        await host.stop()


async def serve(specs: Sequence[ServiceSpec], settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run services until SIGTERM/SIGINT (or `stop`); the exit code for main()."""
    hosts = [ServiceHost(spec, settings) for spec in specs]
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for host in hosts:
            host.request_stop()

    if stop is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_all)
    else:
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: stop_all())
    started: list[ServiceHost] = []
    waits: list[asyncio.Task[None]] = []
    try:
        for host in hosts:
            await host.start()
            started.append(host)
            waits.append(asyncio.create_task(host.wait()))
        # Everything loaded at start (modules, drivers, the contract) lives as long as the
        # process: keep it out of the collector's full passes, whose pauses otherwise land
        # on whichever request allocates when one is due (a p99 tail in bench.query_logs).
        gc.freeze()
        # The first service to stop (signal or a dead task) stops them all.
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for host in started:
            host.request_stop()
        results = await asyncio.gather(*waits, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        log.error("service failed: %r", failure)
    return 1 if failures else 0
