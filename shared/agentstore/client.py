"""Clients for agents and evaluators: typed by the contract, pipelined, logged in from settings.

    async with await AgentClient.connect(None, "a1") as agent:   # settings from the environment
        await agent.log("info", "started")
        async with agent.claim(lease_seconds=60) as lease:
            if lease is not None:
                ...                                  # lease.run.spec; renewed meanwhile
                lease.summary = {"keff": 1.002}
        position = await agent.flush()               # everything published is acked

    async with await EvaluatorClient.connect(None) as evaluator:
        page = await evaluator.call(contract.QUERY_LOGS, LogsQuery(agent_ids=["a1"]))
        async for log in evaluator.pages("query.logs", agent_ids=["a1"], level="error"):
            ...

`connect`'s first argument is a URL, a `NatsSettings`, or None for
`NatsSettings.from_env()` (NATS_URL, NATS_USER/NATS_PASSWORD, NATS_CREDS,
NATS_NKEY, NATS_TLS_*, NATS_CONTEXT, and `.agentstore/stack.env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from agentstore import contract, tracing
from agentstore.bus.connect import Denials, NatsSettings, connect_nats
from agentstore.errors import (
    AgentstoreError,
    BadRequest,
    Conflict,
    ContractViolation,
    Forbidden,
    LeaseLost,
    NotFound,
    ObjectGone,
    RequestError,
    Unavailable,
)
from agentstore.ids import new_id
from agentstore.publisher import MAX_BATCH, BatchPublisher
from agentstore.schemas.artifacts import Presigned, PresignRequest, UploadIn
from agentstore.schemas.common import Level
from agentstore.schemas.logs import ConversationIn, EventIn, LogIn, MemoryIn, MessageIn, OutputIn, Role
from agentstore.schemas.metrics import (
    BulkUpdate,
    BulkUpdated,
    CustodyTest,
    Learning,
    MetricIn,
    Profile,
    ProfileUpdate,
    ResetProfile,
    UpdateProfile,
)
from agentstore.schemas.store import StoreItem, StoreQuery
from agentstore.schemas.tasks import (
    CancelRun,
    ClaimedRun,
    ClaimRun,
    EvalRecord,
    Evaluation,
    ProgressIn,
    ReleaseRun,
    ReleaseStatus,
    RenewLease,
    Restored,
    RestoreRequest,
    Run,
    SubmitRun,
    Submitted,
    TaskIn,
    TaskStatus,
)
from agentstore.schemas.traces import SpanKind, span_msg_id
from agentstore.tracing import Span

log = logging.getLogger("agentstore.client")

INLINE_LIMIT = 512 * 1024  # artifacts up to this size travel inline on NATS
_ERRORS: dict[int, type[RequestError]] = {
    400: BadRequest, 403: Forbidden, 404: NotFound, 409: Conflict, 503: Unavailable,
}  # fmt: skip
Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)
Server = str | NatsSettings | None

__all__ = ["AgentClient", "EvaluatorClient", "Lease", "Position", "new_id"]


@dataclass(frozen=True)
class Position:
    """Where a publish landed: pass it as `after` to read your writes."""

    stream: str
    seq: int

    def as_after(self) -> dict[str, Any]:
        return {"stream": self.stream, "seq": self.seq}


def _settings(server: Server) -> NatsSettings:
    if server is None:
        return NatsSettings.from_env()
    return NatsSettings(url=server) if isinstance(server, str) else server


def _utc(ts: datetime | None) -> datetime | None:
    """Aware UTC; a naive datetime is taken as local time (what `datetime.now()` gives)."""
    return ts.astimezone(UTC) if ts is not None else None


def check_reply(msg: Msg) -> bytes:
    """The reply body, or the service's error as a typed exception."""
    headers = msg.headers or {}
    code = headers.get("Nats-Service-Error-Code")
    if code:
        message = headers.get("Nats-Service-Error", "")
        with contextlib.suppress(msgspec.DecodeError):
            body = msgspec.json.decode(msg.data) if msg.data else None
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                message = body["error"].get("message", message)
        raise _ERRORS.get(int(code), RequestError)(message, int(code))
    return bytes(msg.data)


def decode_reply(data: bytes, endpoint: contract.Endpoint[Any, Any]) -> Any:
    """The reply as the first of the endpoint's declared shapes it matches."""
    error: msgspec.ValidationError | None = None
    for shape in endpoint.reply_types:
        try:
            return msgspec.json.decode(data, type=shape)
        except msgspec.ValidationError as exc:
            error = error or exc
    raise ContractViolation(
        f"the reply of {endpoint.name} does not match the contract: {error}; the service and this SDK "
        "speak different contract versions: upgrade the older one"
    )


class _Requester:
    """Request-reply with the contract's types and errors."""

    def __init__(
        self, nc: Client, timeout: float, agent: str | None = None, denials: Denials | None = None
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.agent = agent
        self.denials = denials

    def subject(self, endpoint: contract.Endpoint[Any, Any]) -> str:
        if self.agent is None:
            if endpoint.agent_only:
                raise AgentstoreError(f"{endpoint.subject} is for agents; use an AgentClient")
            return endpoint.subject
        if not (endpoint.agent_only or "agent" in endpoint.roles):
            raise AgentstoreError(f"{endpoint.subject} is not open to agents")
        return contract.concrete(endpoint.addresses[-1], self.agent)

    async def call(self, endpoint: contract.Endpoint[Req, Rep], request: Req) -> Rep:
        subject = self.subject(endpoint)
        try:
            msg = await self.nc.request(subject, msgspec.json.encode(request), timeout=self.timeout)
        except NatsTimeout:
            reason = self.denials.of(subject) if self.denials is not None else None
            if reason is not None:
                raise Forbidden(f"{reason}: this identity may not call {subject}") from None
            raise Unavailable(
                f"no reply on {subject} within {self.timeout:g} s; is the service up?"
            ) from None
        except NoRespondersError:
            raise Unavailable(f"no service answers {subject}; is `make up` running?") from None
        reply: Rep = decode_reply(check_reply(msg), endpoint)
        return reply

    async def named(self, name: str, fields: Mapping[str, Any]) -> Any:
        """An endpoint by short name with the request's fields (checked against its Struct)."""
        try:
            endpoint = contract.endpoint(name)
        except KeyError as exc:
            raise BadRequest(str(exc.args[0])) from None
        try:
            request = msgspec.convert({k: v for k, v in fields.items() if v is not None}, endpoint.request)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid {endpoint.request.__name__}: {exc}") from None
        return await self.call(endpoint, request)

    async def pages(self, name: str, fields: Mapping[str, Any]) -> AsyncIterator[Any]:
        """Every item of a list query, page after page."""
        cursor = None
        while True:
            page = await self.named(name, {**fields, "cursor": cursor})
            if not (hasattr(page, "items") and hasattr(page, "next_cursor")):
                raise AgentstoreError(f"{name} does not answer in pages")
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return


@dataclass
class Lease:
    """A claimed run while its body runs: set `summary`, `artifacts` or `release_as`
    before the `async with` ends to release it with them."""

    run: ClaimedRun
    summary: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    release_as: ReleaseStatus = "succeeded"
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the lease was lost (the renewal's 409: expired, cancelled, taken over).
    lost_reason: str | None = None


class AgentClient:
    """One agent's connection: publishes under `agents.{agent}.*`, requests under its rpc.

    Publishes go out as JetStream atomic batches per stream (`BatchPublisher`):
    up to `max_batch` messages or `linger` seconds, one PubAck (fsynced) per
    batch, at most `window` messages held. `flush()` waits for every PubAck;
    `send(body, wait=True)` waits for one message's.
    """

    def __init__(self, nc: Client, agent: str, *, window: int = 10_000, timeout: float = 10.0,
                 max_batch: int = MAX_BATCH, linger: float = 0.005, denials: Denials | None = None) -> None:  # fmt: skip
        self.nc = nc
        self.agent = agent
        self._publisher = BatchPublisher(
            nc, window=window, max_batch=max_batch, linger=linger, timeout=timeout, denials=denials
        )
        self._rpc = _Requester(nc, timeout, agent, denials)
        self.timeout = timeout

    @classmethod
    async def connect(cls, server: Server, agent: str, *, window: int = 10_000, timeout: float = 10.0,
                      max_batch: int = MAX_BATCH, linger: float = 0.005) -> AgentClient:  # fmt: skip
        """Connect as `agent`: its own credentials when `AGENTSTORE_CREDENTIALS` names a folder
        (never another identity's: a missing file is a ConfigError), else the settings' login.
        A refused login raises at once; a subject the server refuses raises Forbidden from
        the call or from `flush()`, once, instead of a stream of warnings."""
        settings = _settings(server).as_identity(f"agent-{agent}")
        denials = Denials()
        nc = await connect_nats(settings, name=f"agent-{agent}", inbox_prefix=f"_INBOX.agents.{agent}",
                                denials=denials)  # fmt: skip
        return cls(
            nc, agent, window=window, timeout=timeout, max_batch=max_batch, linger=linger, denials=denials
        )

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self.nc.drain()

    # -- publishing -------------------------------------------------------------------
    @property
    def publish_retries(self) -> int:
        return self._publisher.retries

    @publish_retries.setter
    def publish_retries(self, value: int) -> None:
        self._publisher.retries = value

    @property
    def held(self) -> int:
        """Messages queued or awaiting their PubAck (never more than the window)."""
        return self._publisher.held

    async def publish(self, kind: str, body: msgspec.Struct | bytes, *, event_id: str,
                      headers: Mapping[str, str] | None = None) -> asyncio.Future[int]:  # fmt: skip
        """Queue one publish on `agents.{agent}.{kind}` with `Nats-Msg-Id: {agent}:{event_id}`;
        returns a future of the stream sequence its batch was acknowledged up to."""
        ingest = contract.INGEST_BY_KIND.get(kind)
        if ingest is None:
            raise BadRequest(
                f"no ingest subject {kind!r}; the contract has {sorted(contract.INGEST_BY_KIND)}"
            )
        self._publisher.check()
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return await self._publisher.publish(
            ingest.stream, ingest.subject(self.agent), data, f"{self.agent}:{event_id}", dict(headers or {}),
            alone=ingest.body is None,  # raw artifacts (up to 512 KiB) go one by one
        )  # fmt: skip

    async def flush(self) -> dict[str, Position]:
        """Wait until everything published so far is acked; the newest position per stream."""
        acked = await self._publisher.flush()
        return {stream: Position(stream, seq) for stream, seq in acked.items()}

    def position(self, stream: str) -> Position | None:
        """The newest acked publish into a stream (LOGS, TASKS, METRICS, ARTIFACTS)."""
        seq = self._publisher.acked.get(stream)
        return Position(stream, seq) if seq is not None else None

    async def send(self, body: msgspec.Struct, *, wait: bool = False) -> str:
        """Publish an ingest body (`LogIn`, `TaskIn` ...) on its subject; returns its id.
        With `wait`, returns only once its PubAck (fsynced) arrived."""
        kind = contract.KIND_OF_BODY[type(body)]
        event_id: str = body.id  # type: ignore[attr-defined]
        # An upsert's id names the entity, not the update: with Nats-Msg-Id `{agent}:{id}`
        # JetStream would drop every later update inside its duplicate window.
        msg_id = f"{event_id}@{new_id()}" if contract.INGEST_BY_KIND[kind].upsert else event_id
        acked = await self.publish(kind, body, event_id=msg_id)
        if wait:
            await acked
        return event_id

    async def log(self, level: Level, message: str, *, task_id: str | None = None,
                  fields: dict[str, Any] | None = None, ts: datetime | None = None,
                  id: str | None = None) -> str:  # fmt: skip
        span = (
            tracing.CURRENT.get()
        )  # a log inside a span links to it, and is timed by the agent's clock as spans are
        if span is not None and ts is None:
            ts = datetime.now(UTC)
        return await self.send(LogIn(id=id or new_id(), level=level, message=message, task_id=task_id,
                                     fields=fields, ts=_utc(ts), trace_id=span.trace_id if span else None,
                                     span_id=span.span_id if span else None))  # fmt: skip

    async def memory(self, kind: str, content: str, *, key: str | None = None, task_id: str | None = None,
                     tags: list[str] | None = None, data: dict[str, Any] | None = None,
                     ts: datetime | None = None, id: str | None = None) -> str:  # fmt: skip
        return await self.send(MemoryIn(id=id or new_id(), kind=kind, content=content, key=key,
                                        task_id=task_id, tags=tags, data=data, ts=_utc(ts)))  # fmt: skip

    async def conversation(self, conversation_id: str, *, user_id: str | None = None,
                           context: dict[str, Any] | None = None, ts: datetime | None = None) -> str:  # fmt: skip
        return await self.send(
            ConversationIn(id=conversation_id, user_id=user_id, context=context, ts=_utc(ts))
        )

    async def message(self, conversation_id: str, role: Role, content: str, *,
                      agent_steps: list[Any] | None = None, pdf_names: list[str] | None = None,
                      source_citations: list[dict[str, Any]] | None = None,
                      meta_data: dict[str, Any] | None = None, ts: datetime | None = None,
                      id: str | None = None) -> str:  # fmt: skip
        return await self.send(MessageIn(
            id=id or new_id(), conversation_id=conversation_id, role=role, content=content,
            agent_steps=agent_steps, pdf_names=pdf_names, source_citations=source_citations,
            meta_data=meta_data, ts=_utc(ts)))  # fmt: skip

    async def event(self, type: str, *, run_id: str | None = None, task_id: str | None = None,
                    payload: dict[str, Any] | None = None, ts: datetime | None = None,
                    id: str | None = None) -> str:  # fmt: skip
        return await self.send(EventIn(id=id or new_id(), type=type, run_id=run_id, task_id=task_id,
                                       payload=payload, ts=_utc(ts)))  # fmt: skip

    @contextlib.asynccontextmanager
    async def span(self, name: str, *, kind: SpanKind = "internal", attributes: dict[str, Any] | None = None,
                   run_id: str | None = None, task_id: str | None = None, session_id: str | None = None,
                   thread_id: str | None = None, checkpoint_id: str | None = None,
                   trace_id: str | None = None, parent_span_id: str | None = None) -> AsyncIterator[Span]:  # fmt: skip
        """A span of this agent's trace around the block, published when it ends (CONTRACT
        v1.12): nested in the enclosing `span()` of this task, else a new trace (or the one
        `trace_id`/`parent_span_id` continue, from a caller's traceparent). An exception
        leaving the block marks it failed with the exception's message, and propagates."""
        span = Span(name, kind=kind, parent=tracing.CURRENT.get(), trace_id=trace_id,
                    parent_span_id=parent_span_id, attributes=attributes, run_id=run_id, task_id=task_id,
                    session_id=session_id, thread_id=thread_id, checkpoint_id=checkpoint_id)  # fmt: skip
        token = tracing.CURRENT.set(span)
        try:
            yield span
        except BaseException as exc:
            span.fail(f"{type(exc).__name__}: {exc}")
            raise
        else:
            span.ok()
        finally:
            tracing.CURRENT.reset(token)
            await self.publish("spans", span.finished(), event_id=span_msg_id(span.trace_id, span.span_id))

    async def output(self, kind: str, schema_version: int, data: dict[str, Any], *, run_id: str | None = None,
                     task_id: str | None = None, ts: datetime | None = None, id: str | None = None) -> str:  # fmt: skip
        return await self.send(OutputIn(id=id or new_id(), kind=kind, schema_version=schema_version, data=data,
                                        run_id=run_id, task_id=task_id, ts=_utc(ts)))  # fmt: skip

    async def task(self, task_id: str, status: TaskStatus, *, kind: str | None = None, title: str | None = None,
                   meta: dict[str, Any] | None = None, ts: datetime | None = None) -> str:  # fmt: skip
        return await self.send(
            TaskIn(id=task_id, status=status, kind=kind, title=title, meta=meta, ts=_utc(ts))
        )

    async def progress(self, task_id: str, step: int, status: str, *, percent: float | None = None,
                       detail: dict[str, Any] | None = None, ts: datetime | None = None,
                       id: str | None = None) -> str:  # fmt: skip
        return await self.send(ProgressIn(id=id or new_id(), task_id=task_id, step=step, status=status,
                                          percent=percent, detail=detail, ts=_utc(ts)))  # fmt: skip

    async def metric(self, name: str, value: float, *, experiment_id: str | None = None,
                     task_id: str | None = None, tags: dict[str, Any] | None = None,
                     ts: datetime | None = None, id: str | None = None) -> str:  # fmt: skip
        return await self.send(MetricIn(id=id or new_id(), name=name, value=value, experiment_id=experiment_id,
                                        task_id=task_id, tags=tags, ts=_utc(ts)))  # fmt: skip

    async def screenshot(self, data: bytes | Path, name: str, *, content_type: str = "image/png",
                         task_id: str | None = None, bucket: str | None = None,
                         id: str | None = None) -> str:  # fmt: skip
        """Store an artifact: inline when small, by presigned upload when large. Returns its file id.
        Pass `id` to make storing the same file again a no-op (an importer's stable id)."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        artifact_id = id or new_id()
        if len(payload) <= INLINE_LIMIT:
            headers = {"Content-Type": content_type, "Artifact-Name": name}
            if task_id:
                headers["Task-Id"] = task_id
            if bucket:
                headers["Artifact-Bucket"] = bucket
            await self.publish("artifacts", payload, event_id=artifact_id, headers=headers)
        else:
            grant: Presigned = await self.call(contract.PRESIGN, PresignRequest(
                name=name, content_type=content_type, task_id=task_id, bucket=bucket))  # fmt: skip
            await asyncio.to_thread(http_put, grant.upload_url, payload, content_type)
            await self.send(UploadIn(id=artifact_id, object_key=grant.object_key, name=name,
                                     content_type=content_type, task_id=task_id, bucket=grant.bucket))  # fmt: skip
        return f"{self.agent}:{artifact_id}"

    # -- request-reply -------------------------------------------------------------
    async def call(self, endpoint: contract.Endpoint[Req, Rep], request: Req) -> Rep:
        """Any endpoint open to agents, on this agent's `agents.{agent}.rpc.*` subject."""
        return await self._rpc.call(endpoint, request)

    async def query(self, name: str, /, *, fresh: bool = True, **fields: Any) -> Any:
        """`agents.{agent}.rpc.query.{name}` (fields as in `query.{name}`); with `fresh`, waits
        for this client's own acked publishes to be stored first (read your writes)."""
        endpoint = contract.endpoint(f"query.{name}")
        if fresh and "after" not in fields and endpoint.after is not None:
            await self.flush()
            position = self.position(endpoint.after)
            if position is not None:
                fields["after"] = position.as_after()
        return await self._rpc.named(endpoint.name, fields)

    async def restore(self) -> Restored:
        """What this agent needs to resume: every open task (all pages), held runs, profile."""
        first = await self.call(contract.RESTORE, RestoreRequest())
        cursor = first.next_cursor
        while cursor:
            page = await self.call(contract.RESTORE, RestoreRequest(cursor=cursor))
            first.tasks.extend(page.tasks)
            cursor = page.next_cursor
        first.next_cursor = None
        return first

    @contextlib.asynccontextmanager
    async def claim(self, *, lease_seconds: float = 300, kinds: list[str] | None = None
                    ) -> AsyncIterator[Lease | None]:  # fmt: skip
        """Claim a run; renew its lease in the background; release it on exit.

        A normal exit releases it as `lease.release_as` (succeeded by default)
        with `lease.summary` and `lease.artifacts`; an exception releases it as
        failed with that exception. Yields None when no run is queued.

        When a renewal finds the lease gone (it expired, or the run was cancelled
        by `runs.cancel`), the body is cancelled at its next await, with the
        reason, and `LeaseLost` is raised from the `async with`: the work stops
        instead of running on unaware. Renewals come every third of the lease.
        """
        reply = await self.call(contract.CLAIM, ClaimRun(lease_seconds=lease_seconds, kinds=kinds))
        if reply.run is None:
            yield None
            return
        lease = Lease(reply.run)
        body = asyncio.current_task()
        renewer = asyncio.create_task(self._renew(lease, lease_seconds, body))
        run = lease.run
        try:
            yield lease
        except BaseException as exc:
            renewer.cancel()
            if lease.lost.is_set() and isinstance(exc, asyncio.CancelledError) and body is not None:
                # Our cancellation, not the caller's: the run is not ours to release any more.
                body.uncancel()
                raise LeaseLost(f"run {run.run_id}: {lease.lost_reason}") from None
            error = {"type": type(exc).__name__, "message": str(exc)[:2000]}
            with contextlib.suppress(AgentstoreError):
                await self.call(contract.RELEASE, ReleaseRun(run_id=run.run_id, status="failed", error=error,
                                                             attempt=run.attempt))  # fmt: skip
            raise
        else:
            renewer.cancel()
            await self.call(contract.RELEASE, ReleaseRun(
                run_id=run.run_id, status=lease.release_as, summary=lease.summary,
                artifacts=lease.artifacts, attempt=run.attempt))  # fmt: skip

    async def _renew(self, lease: Lease, lease_seconds: float, body: asyncio.Task[Any] | None) -> None:
        run = lease.run
        while True:
            await asyncio.sleep(lease_seconds / 3)  # renew well before the lease ends
            try:
                await self.call(contract.RENEW, RenewLease(run_id=run.run_id, lease_seconds=lease_seconds,
                                                           attempt=run.attempt))  # fmt: skip
            except Conflict as exc:
                log.warning("lost the lease on run %s: %s; stopping its work", run.run_id, exc)
                lease.lost_reason = str(exc)
                lease.lost.set()
                if body is not None:
                    body.cancel(f"lost the lease on run {run.run_id}: {exc}")
                return
            except AgentstoreError as exc:
                log.warning("could not renew run %s: %s", run.run_id, exc)


class EvaluatorClient:
    """Typed access to `query.*`, `eval.*` and `runs.*`."""

    def __init__(self, nc: Client, *, timeout: float = 10.0, denials: Denials | None = None) -> None:
        self.nc = nc
        self._rpc = _Requester(nc, timeout, denials=denials)

    @classmethod
    async def connect(cls, server: Server, *, name: str = "evaluator", inbox_prefix: str = "_INBOX.evaluator",
                      timeout: float = 10.0) -> EvaluatorClient:  # fmt: skip
        """Connect as evaluator `name` (its own credentials when `AGENTSTORE_CREDENTIALS` holds them)."""
        settings = _settings(server).as_identity(f"evaluator-{name}")
        denials = Denials()
        nc = await connect_nats(
            settings, name=f"evaluator-{name}", inbox_prefix=inbox_prefix, denials=denials
        )
        return cls(nc, timeout=timeout, denials=denials)

    async def __aenter__(self) -> EvaluatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.drain()

    async def call(self, endpoint: contract.Endpoint[Req, Rep], request: Req) -> Rep:
        """Any endpoint, typed by the contract: `call(contract.QUERY_TASK, TaskQuery(...))`."""
        return await self._rpc.call(endpoint, request)

    async def request(self, name: str, /, **fields: Any) -> Any:
        """Any endpoint by short name (`query.logs`, `runs.submit`) with the request's fields;
        the reply as the contract declares it."""
        return await self._rpc.named(name, fields)

    async def query(self, name: str, /, **fields: Any) -> Any:
        """`query.{name}` with the request's fields; the reply as the contract declares it."""
        return await self._rpc.named(f"query.{name}", fields)

    def pages(self, name: str, /, **fields: Any) -> AsyncIterator[Any]:
        """Every item of `query.{name}`, page after page."""
        return self._rpc.pages(f"query.{name}", fields)

    async def search_memories(
        self, agent_id: str, namespace_prefix: Sequence[str] = (), *, text: str | None = None,
        vector: Sequence[float] | None = None, filter: Mapping[str, Any] | None = None, limit: int = 10,
        offset: int = 0, exact: bool = False,
    ) -> list[StoreItem]:  # fmt: skip
        """`query.store`: one agent's memory store searched by `text` (full-text), by `vector`
        (embedded by the caller with the agent's model), both (fused), or only by `filter`."""
        found = await self.call(contract.QUERY_STORE, StoreQuery(
            agent_id=agent_id, namespace_prefix=list(namespace_prefix), text=text,
            vector=[float(x) for x in vector] if vector is not None else None,
            filter_json=json.dumps(filter) if filter else None, limit=limit, offset=offset, exact=exact,
        ))  # fmt: skip
        return found.items

    async def record_evaluation(self, evaluation: EvalRecord) -> Evaluation:
        return await self.call(contract.EVAL_RECORD, evaluation)

    async def custody_test(self, result: CustodyTest) -> Profile:
        return await self.call(contract.EVAL_CUSTODY_TEST, result)

    async def learning(self, figures: Learning) -> Profile:
        return await self.call(contract.EVAL_LEARNING, figures)

    async def update_metrics(self, agent_id: str, updates: ProfileUpdate) -> Profile:
        return await self.call(
            contract.EVAL_AGENT_METRICS_UPDATE, UpdateProfile(agent_id=agent_id, updates=updates)
        )

    async def bulk_update_metrics(self, updates: dict[str, ProfileUpdate]) -> BulkUpdated:
        return await self.call(contract.EVAL_AGENT_METRICS_BULK, BulkUpdate(updates=updates))

    async def reset_metrics(self, agent_id: str) -> Profile:
        return await self.call(contract.EVAL_AGENT_METRICS_RESET, ResetProfile(agent_id=agent_id))

    async def submit_run(self, spec: dict[str, Any], *, run_id: str | None = None, priority: int = 0,
                         kind: str = "run", max_attempts: int = 3) -> Submitted:  # fmt: skip
        return await self.call(contract.RUNS_SUBMIT, SubmitRun(spec=spec, run_id=run_id, priority=priority,
                                                               kind=kind, max_attempts=max_attempts))  # fmt: skip

    async def cancel_run(self, run_id: str) -> Run:
        return await self.call(contract.RUNS_CANCEL, CancelRun(run_id=run_id))


def http_put(url: str, data: bytes, content_type: str) -> None:
    """A presigned PUT with the standard library: the SDK needs no HTTP package."""
    request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            if response.status >= 300:
                raise Unavailable(f"presigned upload failed with HTTP {response.status}")
    except OSError as exc:
        raise Unavailable(f"presigned upload failed: {exc}") from exc


def http_get(url: str, start: int | None = None, end: int | None = None) -> bytes:
    """A presigned GET with the standard library; of bytes [start, end) when given (a server
    that ignores Range answers the whole object, sliced here)."""
    headers = {"Range": f"bytes={start}-{end - 1}"} if start is not None and end is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
            data: bytes = response.read()
            if headers and response.status == 200:
                return data[start:end]
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ObjectGone(f"presigned download found nothing: {exc}") from exc
        raise Unavailable(f"presigned download failed: {exc}") from exc
    except OSError as exc:
        raise Unavailable(f"presigned download failed: {exc}") from exc
