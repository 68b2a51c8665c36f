"""Request-reply endpoints as NATS micro services, with the contract's error convention.

Every request is decoded strictly (unknown fields, `$` keys and wrong types
are a 400). Errors carry `Nats-Service-Error-Code` / `Nats-Service-Error`
headers and a `{"error": {"code", "message"}}` body. Handlers run as their own
tasks, so one slow request (a read-your-writes wait) never blocks others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_origin

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.micro.request import Request
from nats.micro.service import Service, ServiceConfig, ServiceStats

from agentstore import contract
from agentstore.errors import (
    BadRequest,
    Forbidden,
    RequestError,
    StoreRejected,
    StoreUnavailable,
    Unavailable,
)
from agentstore.schemas.common import After, decode_request
from agentstore_server.bus.hooks import RequestMetrics

log = logging.getLogger("agentstore.rpc")


@dataclass
class RequestContext:
    """What a handler knows about the caller."""

    subject: str
    # Set for `agents.{agent}.rpc.*` subjects: the only agent this caller may see.
    agent: str | None

    def scope(self, agent_ids: Sequence[str] | None) -> list[str] | None:
        """The agents a query may read: the caller's own, or 403 for any other."""
        if self.agent is None:
            return list(agent_ids) if agent_ids else None
        if agent_ids and any(a != self.agent for a in agent_ids):
            raise Forbidden(f"agent {self.agent} may only read its own data")
        return [self.agent]

    def check_agent(self, agent_id: str) -> None:
        if self.agent is not None and agent_id != self.agent:
            raise Forbidden(f"agent {self.agent} may only read its own data")


Handler = Callable[[RequestContext, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One declared endpoint bound to its handler, on one of its addresses."""

    endpoint: contract.Endpoint  # type: ignore[type-arg]
    address: str
    handler: Handler

    @property
    def name(self) -> str:
        return contract.micro_name(self.address)

    @property
    def subject(self) -> str:
        return contract.wildcard(self.address)

    @property
    def request(self) -> type[msgspec.Struct]:
        return self.endpoint.request

    def reply_bytes(self, result: Any) -> bytes:
        """The handler's result in the declared reply shape (a mismatch is a bug: 500)."""
        if not isinstance(result, _reply_classes(self.endpoint)):
            result = msgspec.convert(result, self.endpoint.reply)
        return msgspec.json.encode(result)


@functools.cache
def _reply_classes(endpoint: contract.Endpoint) -> tuple[type, ...]:  # type: ignore[type-arg]
    """The classes a handler's result may already be (a generic `Page[X]` is a `Page`)."""
    return tuple(get_origin(t) or t for t in endpoint.reply_types)


def bind(service: str, handlers: Mapping[contract.Endpoint[Any, Any], Handler]) -> list[Route]:
    """Every endpoint the contract gives `service`, bound to its handler (keyed by the
    contract's constant, so an endpoint's subject is written once: in its declaration).

    A declared endpoint without a handler, or a handler for an endpoint the
    contract does not give this service, is a ConfigError at start.
    """
    declared = contract.endpoints_of(service)
    contract.require_bound(service, "handler", [e.name for e in declared], [e.name for e in handlers])
    return [Route(e, address, handlers[e]) for e in declared for address in e.addresses]


def error_body(code: int, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


@dataclass
class IngestProgress:
    """Answers "has everything up to stream seq N been stored?" from the consumer's ack floor.

    Services ack only after commit, so a durable consumer's ack floor is a
    fleet-wide, replica-safe "stored up to here" mark.
    """

    js: JetStreamContext
    durables: Mapping[str, str]  # stream name -> durable consumer
    _floors: dict[str, int] = field(default_factory=dict)

    async def wait_for(self, after: After, timeout: float) -> None:
        durable = self.durables.get(after.stream)
        if durable is None:
            raise BadRequest(
                f"after.stream {after.stream!r} is not read by this service; "
                f"use one of {sorted(self.durables)}"
            )
        deadline = time.monotonic() + timeout
        delay = 0.002
        while self._floors.get(after.stream, -1) < after.seq:
            info = await self.js.consumer_info(after.stream, durable)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
            delivered = info.delivered.stream_seq if info.delivered else 0
            if pending == 0 and delivered >= floor:
                floor = max(floor, delivered)
            self._floors[after.stream] = max(self._floors.get(after.stream, 0), floor or 0)
            if self._floors[after.stream] >= after.seq:
                return
            if time.monotonic() + delay > deadline:
                raise Unavailable(
                    f"not yet stored up to {after.stream} seq {after.seq} after {timeout:g} s; "
                    "retry, or check the service's ingest backlog"
                )
            await asyncio.sleep(delay)  # polling the server's ack floor, not synchronising a test
            delay = min(delay * 2, 0.05)


class RpcServer:
    """Registers endpoints on one micro service and runs each request as a task."""

    def __init__(
        self,
        nc: Client,
        service: str,
        version: str,
        metrics: RequestMetrics,
        progress: IngestProgress | None,
        after_wait: float,
        max_concurrency: int = 256,
    ) -> None:
        self.nc = nc
        self.service_name = service
        self.version = version
        self.metrics = metrics
        self.progress = progress
        self.after_wait = after_wait
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._metric_series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._micro: TimedService | None = None

    async def start(self, routes: Sequence[Route]) -> None:
        self._micro = TimedService(
            self.nc,
            ServiceConfig(
                name=f"agentstore-{self.service_name}",
                version=self.version,
                description=f"agentstore {self.service_name} service",
            ),
        )
        await self._micro.start()
        for route in routes:
            await self._micro.add_endpoint(
                name=route.name,
                subject=route.subject,
                handler=self._spawner(route),
                queue_group=f"agentstore.{route.name}",
            )
        # Subscriptions travel asynchronously; only after a flush round trip has
        # the server seen them, so "started" really means "answering".
        await self.nc.flush()

    async def stop(self, deadline: float) -> None:
        """Stop taking requests, then let the ones in flight finish until the deadline."""
        if self._micro is not None:
            await self._micro.stop()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=max(deadline - time.monotonic(), 0))
            for task in late:
                task.cancel()

    def _spawner(self, route: Route) -> Callable[[Request], Awaitable[None]]:
        async def spawn(request: Request) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._serve(route, request))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

        return spawn

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, route: Route, request: Request) -> None:
        started = time.perf_counter()
        code = 200
        error = ""
        try:
            body = decode_request(request.data, route.request)
            context = RequestContext(subject=request.subject, agent=_agent_of(request.subject))
            after = getattr(body, "after", None)
            if after is not None:
                if self.progress is None:
                    raise BadRequest("this service has no ingest stream to wait for")
                await self.progress.wait_for(after, self.after_wait)
            result = await route.handler(context, body)
            data = route.reply_bytes(result)
            if len(data) > self.nc.max_payload:
                raise BadRequest(
                    f"the reply would be {len(data):,} bytes, over the {self.nc.max_payload:,}-byte "
                    "message limit; narrow the query (fewer agents, a shorter range, a smaller "
                    "limit or wider buckets)"
                )
            await request.respond(data)
        except RequestError as exc:
            code, error = exc.code, exc.message
            await self._respond_error(request, code, exc.message)
        except StoreUnavailable as exc:
            code, error = 503, f"store unavailable, retry later: {exc}"
            await self._respond_error(request, code, error)
        except StoreRejected as exc:
            # The store refused a value of the request (an integer past its column's range,
            # say): the request's fault, so a 400 that says what, never a 500.
            code, error = 400, f"invalid request: the store refused it: {exc}"
            await self._respond_error(request, code, error)
        except Exception as exc:
            code, error = 500, f"internal error: {type(exc).__name__}"
            log.exception("endpoint %s failed", route.subject)
            await self._respond_error(request, code, error)
        finally:
            elapsed = time.perf_counter() - started
            counted, timed = self._series(route.name, code)
            counted.inc()
            timed.observe(elapsed)
            self._credit(route.name, elapsed, code, error)

    def _series(self, name: str, code: int) -> tuple[Any, Any]:
        """The endpoint's request counter and timer, looked up once (`labels()` hashes and
        locks on every call, a measurable share of a claim's CPU)."""
        key = (name, code)
        series = self._metric_series.get(key)
        if series is None:
            series = (self.metrics.requests.labels(endpoint=name, code=str(code)),
                      self.metrics.request_seconds.labels(endpoint=name))  # fmt: skip
            self._metric_series[key] = series
        return series

    def _credit(self, name: str, elapsed: float, code: int, error: str) -> None:
        if self._micro is not None:
            self._micro.credit(name, elapsed, code, error)

    async def _respond_error(self, request: Request, code: int, message: str) -> None:
        try:
            await request.respond_error(str(code), message[:512], data=error_body(code, message))
        except Exception:
            log.warning("could not send error reply on %s", request.subject)


@dataclass
class _Tally:
    processing_ns: int = 0
    errors: int = 0
    last_error: str | None = None


class TimedService(Service):
    """A NATS micro service whose $SRV.STATS time the whole request.

    nats-py times the handler it calls, which here only spawns the request's task (so that
    requests run concurrently); each task credits its own processing time and error
    (`credit`), and `stats()` — micro's public hook, which $SRV.STATS answers with — reports
    those instead of the spawn's. Requests are still counted by micro itself."""

    def __init__(self, client: Client, config: ServiceConfig) -> None:
        super().__init__(client, config)
        self._tallies: dict[str, _Tally] = {}

    def credit(self, endpoint: str, elapsed: float, code: int, error: str) -> None:
        tally = self._tallies.setdefault(endpoint, _Tally())
        tally.processing_ns += int(elapsed * 1e9)
        if code >= 400:
            tally.errors += 1
            tally.last_error = f"{code}: {error}"[:512]

    def stats(self) -> ServiceStats:
        stats = super().stats()
        for endpoint in stats.endpoints:
            tally = self._tallies.get(endpoint.name, _Tally())
            endpoint.processing_time = tally.processing_ns
            endpoint.average_processing_time = tally.processing_ns // max(endpoint.num_requests, 1)
            endpoint.num_errors = tally.errors
            endpoint.last_error = tally.last_error
        return stats


def _agent_of(subject: str) -> str | None:
    tokens = subject.split(".")
    if len(tokens) >= 4 and tokens[0] == "agents" and tokens[2] == "rpc":
        return tokens[1]
    return None
