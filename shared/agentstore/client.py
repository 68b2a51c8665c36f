"""Clients for agents and evaluators: typed, pipelined, with the contract's conventions.

async with await AgentClient.connect("nats://127.0.0.1:4222", "a1") as agent:
    await agent.log("info", "started")
    async with agent.claim(lease_seconds=60) as run:
        if run is not None:
            ...                                  # the lease is renewed meanwhile
    position = await agent.flush()               # everything published is acked

evaluator = await EvaluatorClient.connect("nats://127.0.0.1:4222")
async for log in evaluator.pages("logs", agent_ids=["a1"], level="error"):
    ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import uuid6
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from agentstore.bus.catalog import QUERY_STREAMS
from agentstore.bus.connect import connect_nats
from agentstore.errors import (
    AgentstoreError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RequestError,
    Unavailable,
)

log = logging.getLogger("agentstore.client")

INLINE_LIMIT = 512 * 1024  # artifacts up to this size travel inline on NATS
UPSERT_KINDS = frozenset({"tasks", "conversations", "outputs"})
_ERRORS: dict[int, type[RequestError]] = {
    400: BadRequest, 403: Forbidden, 404: NotFound, 409: Conflict, 503: Unavailable,
}  # fmt: skip


@dataclass(frozen=True)
class Position:
    """Where a publish landed: pass it as `after` to read your writes."""

    stream: str
    seq: int

    def as_after(self) -> dict[str, Any]:
        return {"stream": self.stream, "seq": self.seq}


def new_id() -> str:
    return str(uuid6.uuid7())


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _clean(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def raise_for_reply(msg: Any) -> Any:
    """The decoded reply, or the service's error as a typed exception."""
    headers = msg.headers or {}
    code = headers.get("Nats-Service-Error-Code")
    body = msgspec.json.decode(msg.data) if msg.data else None
    if code:
        message = headers.get("Nats-Service-Error", "")
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message", message)
        raise _ERRORS.get(int(code), RequestError)(message, int(code))
    return body


class _Requester:
    """Request-reply with the contract's errors."""

    def __init__(self, nc: Client, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout

    async def request(self, subject: str, body: Mapping[str, Any] | None = None) -> Any:
        try:
            msg = await self.nc.request(
                subject, msgspec.json.encode(_clean(body or {})), timeout=self.timeout
            )
        except NatsTimeout:
            raise Unavailable(
                f"no reply on {subject} within {self.timeout:g} s; is the service up?"
            ) from None
        except NoRespondersError:
            raise Unavailable(f"no service answers {subject}; is `make up` running?") from None
        return raise_for_reply(msg)

    async def pages(self, subject: str, **body: Any) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list query, page after page."""
        cursor = None
        while True:
            page = await self.request(subject, {**body, "cursor": cursor})
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return


class AgentClient:
    """One agent's connection: publishes under `agents.{agent}.*`, requests under its rpc."""

    def __init__(self, nc: Client, agent: str, *, window: int = 2000, timeout: float = 10.0) -> None:
        self.nc = nc
        self.agent = agent
        self._js = nc.jetstream(timeout=timeout, publish_async_max_pending=window)
        self._window = asyncio.Semaphore(window)
        self._inflight: set[asyncio.Task[PubAck]] = set()
        self._acked: dict[str, int] = {}  # stream -> highest acked sequence
        self._failure: BaseException | None = None
        self._rpc = _Requester(nc, timeout)
        self.timeout = timeout
        self.publish_retries = 5

    @classmethod
    async def connect(cls, url: str, agent: str, *, creds: str | None = None, **options: Any) -> AgentClient:
        nc = await connect_nats(url, name=f"agent-{agent}", creds=creds,
                                inbox_prefix=f"_INBOX.agents.{agent}")  # fmt: skip
        return cls(nc, agent, **options)

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.flush()
        finally:
            await self.nc.drain()

    # -- publishing -------------------------------------------------------------------
    async def publish(self, kind: str, body: Mapping[str, Any] | bytes, *, event_id: str,
                      headers: Mapping[str, str] | None = None) -> None:  # fmt: skip
        """Queue one publish; at most `window` are in flight, so hot loops stay bounded."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise AgentstoreError(f"an earlier publish failed: {failure}") from failure
        data = body if isinstance(body, bytes) else msgspec.json.encode(_clean(body))
        hdrs = {"Nats-Msg-Id": f"{self.agent}:{event_id}", **(headers or {})}
        await self._window.acquire()
        task = asyncio.create_task(self._publish(f"agents.{self.agent}.{kind}", data, hdrs))
        self._inflight.add(task)
        task.add_done_callback(self._done)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
        """Pipelined publish; a PubAck that does not come in time is retried, which is
        safe: JetStream dedupes on Nats-Msg-Id."""
        for attempt in range(self.publish_retries + 1):
            try:
                future = await self._js.publish_async(subject, data, headers=headers)
                ack: PubAck = await asyncio.wait_for(future, self.timeout * 2**attempt)
                return ack
            except (TimeoutError, NatsTimeout, NoStreamResponseError, ServiceUnavailableError) as exc:
                if attempt == self.publish_retries:
                    raise Unavailable(f"no PubAck for {subject} after {attempt + 1} tries: {exc!r}") from exc
                await asyncio.sleep(0.05 * 2**attempt)  # back off before retrying the publish
        raise AssertionError("unreachable")

    def _done(self, task: asyncio.Task[PubAck]) -> None:
        self._inflight.discard(task)
        self._window.release()
        if task.cancelled():
            return
        if task.exception() is not None:
            self._failure = task.exception()
            return
        ack = task.result()
        self._acked[ack.stream] = max(self._acked.get(ack.stream, 0), ack.seq)

    async def flush(self) -> dict[str, Position]:
        """Wait until everything published so far is acked; the newest position per stream."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise AgentstoreError(f"a publish failed: {failure}") from failure
        return {stream: Position(stream, seq) for stream, seq in self._acked.items()}

    def position(self, stream: str) -> Position | None:
        """The newest acked publish into a stream (LOGS, TASKS, METRICS, ARTIFACTS)."""
        seq = self._acked.get(stream)
        return Position(stream, seq) if seq is not None else None

    async def log(self, level: str, message: str, *, task_id: str | None = None,
                  fields: Mapping[str, Any] | None = None, ts: datetime | None = None,
                  id: str | None = None) -> str:  # fmt: skip
        event_id = id or new_id()
        await self.publish("logs", {"id": event_id, "level": level, "message": message,
                                    "task_id": task_id, "fields": fields, "ts": _ts(ts)},
                           event_id=event_id)  # fmt: skip
        return event_id

    async def memory(self, kind: str, content: str, *, key: str | None = None, **extra: Any) -> str:
        return await self._event("memories", {"kind": kind, "content": content, "key": key, **extra})

    async def conversation(self, conversation_id: str, **fields: Any) -> str:
        return await self._event("conversations", fields, event_id=conversation_id)

    async def message(self, conversation_id: str, role: str, content: str, **extra: Any) -> str:
        body = {"conversation_id": conversation_id, "role": role, "content": content, **extra}
        return await self._event("messages", body)

    async def event(self, type: str, **extra: Any) -> str:
        return await self._event("events", {"type": type, **extra})

    async def output(self, kind: str, schema_version: int, data: Mapping[str, Any], **extra: Any) -> str:
        return await self._event(
            "outputs", {"kind": kind, "schema_version": schema_version, "data": data, **extra}
        )

    async def task(self, task_id: str, status: str, **extra: Any) -> str:
        return await self._event("tasks", {"status": status, **extra}, event_id=task_id)

    async def progress(self, task_id: str, step: int, status: str, **extra: Any) -> str:
        return await self._event("progress", {"task_id": task_id, "step": step, "status": status, **extra})

    async def metric(self, name: str, value: float, **extra: Any) -> str:
        return await self._event("metrics", {"name": name, "value": value, **extra})

    async def _event(self, kind: str, body: Mapping[str, Any], event_id: str | None = None) -> str:
        event_id = event_id or body.get("id") or new_id()
        if isinstance(body.get("ts"), datetime):
            body = {**body, "ts": _ts(body["ts"])}
        # An upsert's id names the entity, not the update: with Nats-Msg-Id `{agent}:{id}`
        # JetStream would drop every later update inside its duplicate window.
        msg_id = f"{event_id}@{new_id()}" if kind in UPSERT_KINDS else event_id
        await self.publish(kind, {**body, "id": event_id}, event_id=msg_id)
        return event_id

    async def screenshot(self, data: bytes | Path, name: str, *, content_type: str = "image/png",
                         task_id: str | None = None, bucket: str | None = None) -> str:  # fmt: skip
        """Store an artifact: inline when small, by presigned upload when large. Returns its file id."""
        payload = data.read_bytes() if isinstance(data, Path) else data
        artifact_id = new_id()
        if len(payload) <= INLINE_LIMIT:
            headers = {"Content-Type": content_type, "Artifact-Name": name}
            if task_id:
                headers["Task-Id"] = task_id
            if bucket:
                headers["Artifact-Bucket"] = bucket
            await self.publish("artifacts", payload, event_id=artifact_id, headers=headers)
        else:
            grant = await self.rpc("presign", {"name": name, "content_type": content_type,
                                               "task_id": task_id, "bucket": bucket})  # fmt: skip
            await _http_put(grant["upload_url"], payload, content_type)
            await self.publish("uploads", {"id": artifact_id, "object_key": grant["object_key"],
                                           "name": name, "content_type": content_type,
                                           "task_id": task_id, "bucket": grant.get("bucket")},
                               event_id=artifact_id)  # fmt: skip
        return f"{self.agent}:{artifact_id}"

    # -- request-reply -------------------------------------------------------------
    async def rpc(self, name: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self._rpc.request(f"agents.{self.agent}.rpc.{name}", body)

    async def query(self, name: str, *, fresh: bool = True, **body: Any) -> Any:
        """`agents.{agent}.rpc.query.{name}`; with `fresh`, waits for this client's own
        acked publishes to be stored first (read your writes)."""
        if fresh and "after" not in body:
            await self.flush()
            position = self.position(QUERY_STREAMS.get(name, ""))
            if position is not None:
                body["after"] = position.as_after()
        return await self.rpc(f"query.{name}", body)

    async def restore(self) -> Any:
        return await self.rpc("restore", {})

    @contextlib.asynccontextmanager
    async def claim(
        self, *, lease_seconds: float = 300, kinds: list[str] | None = None
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Claim a run; renew its lease in the background; release it on exit.

        A normal exit releases it as succeeded (with `run["summary"]` if set),
        an exception as failed with that exception; `run["release"]` may name
        another status (e.g. "queued"). Yields None when no run is queued.
        """
        reply = await self.rpc("claim", {"lease_seconds": lease_seconds, "kinds": kinds})
        run = reply["run"]
        if run is None:
            yield None
            return
        renewer = asyncio.create_task(self._renew(run, lease_seconds))
        try:
            yield run
        except BaseException as exc:
            renewer.cancel()
            error = {"type": type(exc).__name__, "message": str(exc)[:2000]}
            with contextlib.suppress(AgentstoreError):
                await self.rpc("release", {"run_id": run["run_id"], "status": "failed",
                                           "error": error, "attempt": run["attempt"]})  # fmt: skip
            raise
        else:
            renewer.cancel()
            await self.rpc("release", {"run_id": run["run_id"],
                                       "status": run.get("release", "succeeded"),
                                       "summary": run.get("summary"),
                                       "artifacts": run.get("artifacts"),
                                       "attempt": run["attempt"]})  # fmt: skip

    async def _renew(self, run: dict[str, Any], lease_seconds: float) -> None:
        while True:
            await asyncio.sleep(lease_seconds / 3)  # renew well before the lease ends
            try:
                await self.rpc("renew", {"run_id": run["run_id"], "lease_seconds": lease_seconds,
                                         "attempt": run["attempt"]})  # fmt: skip
            except Conflict:
                log.warning("lost the lease on run %s", run["run_id"])
                return
            except AgentstoreError as exc:
                log.warning("could not renew run %s: %s", run["run_id"], exc)


class EvaluatorClient:
    """Typed access to `query.*`, `eval.*` and `runs.*`."""

    def __init__(self, nc: Client, *, timeout: float = 10.0) -> None:
        self.nc = nc
        self._rpc = _Requester(nc, timeout)

    @classmethod
    async def connect(cls, url: str, *, creds: str | None = None, inbox_prefix: str = "_INBOX.evaluator",
                      **options: Any) -> EvaluatorClient:  # fmt: skip
        nc = await connect_nats(url, name="evaluator", creds=creds, inbox_prefix=inbox_prefix)
        return cls(nc, **options)

    async def __aenter__(self) -> EvaluatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.drain()

    async def request(self, subject: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self._rpc.request(subject, body)

    async def query(self, name: str, **body: Any) -> Any:
        return await self.request(f"query.{name}", body)

    def pages(self, name: str, **body: Any) -> AsyncIterator[dict[str, Any]]:
        return self._rpc.pages(f"query.{name}", **body)

    async def record_evaluation(self, **body: Any) -> Any:
        return await self.request("eval.record", body)

    async def custody_test(self, **body: Any) -> Any:
        return await self.request("eval.custody_test", body)

    async def learning(self, **body: Any) -> Any:
        return await self.request("eval.learning", body)

    async def update_metrics(self, agent_id: str, updates: Mapping[str, Any]) -> Any:
        return await self.request("eval.agent_metrics.update", {"agent_id": agent_id, "updates": updates})

    async def bulk_update_metrics(self, updates: Mapping[str, Mapping[str, Any]]) -> Any:
        return await self.request("eval.agent_metrics.bulk", {"updates": updates})

    async def reset_metrics(self, agent_id: str) -> Any:
        return await self.request("eval.agent_metrics.reset", {"agent_id": agent_id})

    async def submit_run(self, spec: Mapping[str, Any], **extra: Any) -> Any:
        return await self.request("runs.submit", {"spec": spec, **extra})

    async def cancel_run(self, run_id: str) -> Any:
        return await self.request("runs.cancel", {"run_id": run_id})


async def _http_put(url: str, data: bytes, content_type: str) -> None:
    import io

    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.put(url, data=io.BytesIO(data), headers={"Content-Type": content_type}) as response,
    ):
        if response.status >= 300:
            raise Unavailable(f"presigned upload failed with HTTP {response.status}")
