"""Meet agents where they log: a stdlib `logging.Handler` and a `traced` step recorder.

    client = await AgentClient.connect(None, "agent-7")
    handler = AgentstoreHandler(client)
    logging.getLogger().addHandler(handler)
    log.warning("tool failed", extra={"tool": "browser", "task_id": "t-1"})
    ...
    await handler.drain()        # before the client closes: what was logged is acked

    @traced(client)              # or: async with traced(client, "plan"): ...
    async def plan(goal): ...

`emit` never blocks and never raises into the caller: a record becomes a
`LogIn` on a bounded queue (from any thread), and a task on the client's
event loop publishes it with the client's batching (acked = fsynced). When
the queue is full (the bus is down for long) new records are counted in
`dropped` and a warning goes to stderr once, so an agent keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import msgspec

from agentstore.client import AgentClient
from agentstore.ids import new_id
from agentstore.schemas.common import Level, nest_keys
from agentstore.schemas.logs import EventIn, LogIn

P = ParamSpec("P")
R = TypeVar("R")

MAX_MESSAGE = 64 * 1024
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def level_of(levelno: int) -> Level:
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def current_span() -> tuple[str | None, str | None]:
    """(trace_id, span_id) in hex of the active OpenTelemetry span, when the SDK is in use."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def jsonable(value: Any) -> Any:
    """`value` if JSON can carry it, else its repr (a log line never fails on a field)."""
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    return value


class _Sink:
    """A bounded, thread-safe queue of bodies in front of a client; one publishing task."""

    def __init__(self, client: AgentClient, capacity: int) -> None:
        self.client = client
        self.capacity = capacity
        self.dropped = 0
        self.failed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[msgspec.Struct] | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def bind(self) -> None:
        """Called on the client's loop (lazily, by the first put from it, or `start`)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue(self.capacity)

    def put(self, body: msgspec.Struct) -> None:
        loop = self._loop
        if loop is None:
            try:
                self.bind()
            except RuntimeError:
                self._drop("no event loop is running yet: call `await handler.start()` first")
                return
            loop = self._loop
        assert loop is not None
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._offer(body)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._offer, body)
        else:
            self._drop("the client's event loop is closed")

    def _offer(self, body: msgspec.Struct) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self._drop(f"{self.capacity} records wait for NATS")
            return
        # One publishing task while there is work; it ends when the queue is empty, so an
        # idle handler or a forgotten step recorder holds no task.
        if self._task is None or self._task.done():
            assert self._loop is not None
            self._task = self._loop.create_task(self._run(), name="agentstore-log-sink")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if not self._warned:
            self._warned = True
            print(f"agentstore: dropping log records ({why})", file=sys.stderr)

    async def _run(self) -> None:
        assert self._queue is not None
        while not self._queue.empty():
            body = self._queue.get_nowait()
            try:
                await self.client.send(body)
            except Exception as exc:  # a handler must not die: count, say once, go on
                self.failed += 1
                self._drop(f"publishing failed: {exc}")
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Until every queued body is published and acknowledged."""
        if self._queue is not None:
            await self._queue.join()
        await self.client.flush()

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class AgentstoreHandler(logging.Handler):
    """Publishes log records to `agents.{agent}.logs` through an `AgentClient`.

    Each record keeps its level, message, logger, source location, thread,
    `extra` fields, exception text and the active span's trace and span ids.
    An `extra={"task_id": ...}` becomes the log's task_id.
    """

    def __init__(self, client: AgentClient, level: int = logging.NOTSET, *, capacity: int = 100_000) -> None:
        super().__init__(level)
        self.sink = _Sink(client, capacity)

    @property
    def dropped(self) -> int:
        return self.sink.dropped

    async def start(self) -> None:
        """Bind to the running loop now (otherwise the first record logged on it does)."""
        self.sink.bind()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.put(self.to_log(record))
        except Exception:
            self.handleError(record)

    def to_log(self, record: logging.LogRecord) -> LogIn:
        message = record.getMessage()
        fields: dict[str, Any] = {
            "logger": record.name,
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
            "thread": record.threadName,
        }
        extra = nest_keys({k: jsonable(v) for k, v in vars(record).items() if k not in _STANDARD})
        task_id = extra.pop("task_id", None)
        fields.update(extra)
        if record.exc_info:
            fields["exception"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = record.stack_info
        trace_id, span_id = current_span()
        return LogIn(
            id=new_id(),
            level=level_of(record.levelno),
            message=message[:MAX_MESSAGE],
            ts=None,
            task_id=task_id if isinstance(task_id, str) and task_id else None,
            fields=fields,
            trace_id=trace_id,
            span_id=span_id,
        )

    async def drain(self) -> None:
        await self.sink.drain()

    async def aclose(self) -> None:
        await self.sink.close()
        self.close()


class traced:
    """Records a step as an audit event (`type: "step"`) with its name, duration, and its
    result or exception: a decorator for sync and async functions, or `async with`.

    The event's payload: `{"name", "duration_ms", "ok", "result" | "error"}`; it carries
    the active span's trace id when OpenTelemetry is in use.
    """

    def __init__(self, client: AgentClient, name: str | None = None, *, task_id: str | None = None,
                 run_id: str | None = None, capacity: int = 10_000) -> None:  # fmt: skip
        self.client = client
        self.name = name
        self.task_id = task_id
        self.run_id = run_id
        self.sink = _Sink(client, capacity)
        self._started: list[float] = []
        self._lock = threading.Lock()

    def record(self, name: str, started: float, outcome: dict[str, Any]) -> None:
        trace_id, span_id = current_span()
        payload = {"name": name, "duration_ms": round((time.perf_counter() - started) * 1000, 3), **outcome}
        event = EventIn(id=new_id(), type="step", task_id=self.task_id, run_id=self.run_id,
                        payload=payload, trace_id=trace_id, span_id=span_id)  # fmt: skip
        self.sink.put(event)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        name = self.name or fn.__qualname__
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_step(*args: P.args, **kwargs: P.kwargs) -> Any:
                started = time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)  # type: ignore[misc]
                except BaseException as exc:
                    self.record(name, started, failure(exc))
                    raise
                self.record(name, started, {"ok": True, "result": jsonable(result)})
                return result

            return async_step  # type: ignore[return-value]

        @functools.wraps(fn)
        def step(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self.record(name, started, failure(exc))
                raise
            self.record(name, started, {"ok": True, "result": jsonable(result)})
            return result

        return step

    async def __aenter__(self) -> traced:
        self.sink.bind()
        with self._lock:
            self._started.append(time.perf_counter())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            started = self._started.pop()
        outcome = failure(exc) if exc is not None else {"ok": True}
        self.record(self.name or "step", started, outcome)

    async def drain(self) -> None:
        await self.sink.drain()


def failure(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def wait_all(*sinks: AgentstoreHandler | traced) -> None:
    """Drain several handlers and step recorders at once."""
    await asyncio.gather(*(s.drain() for s in sinks))


__all__ = ["AgentstoreHandler", "current_span", "level_of", "traced", "wait_all"]
