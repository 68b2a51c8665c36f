"""Spans from plain Python (`async with client.span("plan"):`), nested by context.

A span opened inside another (in the same task, or a task started inside it) is its
child, in the same trace; the outermost one starts a new trace. A span is published once,
when it ends (`agents.{agent}.spans`, CONTRACT v1.12), with its status `error` and the
exception's message if its block raised. Logs written inside a span carry its ids.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agentstore.schemas.common import nest_keys
from agentstore.schemas.traces import SpanEvent, SpanIn, SpanKind, SpanStatus, span_msg_id

# The innermost open span of this context (task), whose child a new span is.
CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar("agentstore_span", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


class Span:
    """An open span: set attributes, GenAI usage and events on it while its block runs."""

    def __init__(self, name: str, *, kind: SpanKind = "internal", parent: Span | None = None,
                 trace_id: str | None = None, parent_span_id: str | None = None,
                 attributes: Mapping[str, Any] | None = None, **links: str | None) -> None:  # fmt: skip
        self.name, self.kind = name, kind
        self.trace_id: str = parent.trace_id if parent is not None else (trace_id or new_trace_id())
        self.span_id = new_span_id()
        self.parent_span_id = parent.span_id if parent is not None else parent_span_id
        # A child inherits its parent's links (run, task, session, thread) unless it names its own.
        inherited: dict[str, str] = dict(parent.links) if parent is not None else {}
        self.links: dict[str, str] = {**inherited, **{k: v for k, v in links.items() if v is not None}}
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.events: list[SpanEvent] = []
        self.model: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.status: SpanStatus = "unset"
        self.status_message: str | None = None
        self.start = datetime.now(UTC)

    def set(self, key: str, value: Any) -> None:
        """An attribute; dotted keys (`gen_ai.tool.name`) are stored nested, as OTLP's are."""
        self.attributes[key] = value

    def usage(self, model: str, *, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """A model call's figures: the trace view shows them and prices them (MODEL_PRICES)."""
        self.model = model
        if input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + input_tokens
        if output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + output_tokens

    def event(self, name: str, **attributes: Any) -> None:
        self.events.append(
            SpanEvent(name=name, ts=datetime.now(UTC), attributes=nest_keys(attributes) or None)
        )

    def fail(self, message: str) -> None:
        """Marks the span failed without raising (an exception leaving its block does this)."""
        self.status, self.status_message = "error", message[:4096]

    def ok(self) -> None:
        if self.status != "error":
            self.status = "ok"

    def finished(self, end: datetime | None = None) -> SpanIn:
        return SpanIn(
            trace_id=self.trace_id, span_id=self.span_id, name=self.name, start=self.start,
            end=max(end or datetime.now(UTC), self.start), parent_span_id=self.parent_span_id, kind=self.kind,
            status=self.status,
            status_message=self.status_message, attributes=nest_keys(self.attributes) or None,
            events=self.events or None, model=self.model, input_tokens=self.input_tokens,
            output_tokens=self.output_tokens, **self.links,
        )  # fmt: skip


# What a framework's span data becomes as attributes: JSON the contract takes (no `.` or `$`
# in keys, no NUL, bounded depth and size), whatever objects the framework put there.
MAX_ATTRIBUTE_TEXT = 8 * 1024
MAX_ATTRIBUTE_DEPTH = 8


def attributes_of(value: Any, depth: int = 0) -> Any:
    """`value` as attribute JSON: maps and lists kept (keys made safe), numbers and booleans
    as they are, anything else as its text, long texts cut; None where nothing is left."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth >= MAX_ATTRIBUTE_DEPTH:
        return _text(repr(value))
    if isinstance(value, Mapping):
        out = {}
        for key, item in list(value.items())[:200]:
            name = str(key).replace(".", "_").replace("\x00", "").lstrip("$") or "_"
            out[name] = attributes_of(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [attributes_of(item, depth + 1) for item in value[:200]]
    if hasattr(value, "model_dump"):  # pydantic models (the frameworks' messages, responses)
        try:
            return attributes_of(value.model_dump(mode="json"), depth + 1)
        except Exception:
            return _text(repr(value))
    return _text(value if isinstance(value, str) else str(value))


def _text(text: str) -> str:
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_ATTRIBUTE_TEXT else text[:MAX_ATTRIBUTE_TEXT] + "…"


def hex_id(value: str, size: int) -> str:
    """A framework's id as `size` lowercase hex characters: itself when it is such hex, else
    a digest of it (stable: the same id maps to the same span)."""
    bare = value.split("_", 1)[-1].lower().replace("-", "")
    if len(bare) >= size and all(c in "0123456789abcdef" for c in bare[:size]):
        return bare[:size]
    return hashlib.sha256(value.encode()).hexdigest()[:size]


class Exporter:
    """Publishes finished spans from a framework's callbacks, which may run on any thread:
    each publish is handed to the client's event loop. `await flush()` waits for them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._loop = asyncio.get_running_loop()  # made in async code: the client's loop
        self._pending: set[Any] = set()

    def send(self, span: SpanIn) -> None:
        publish = self.client.publish("spans", span, event_id=span_msg_id(span.trace_id, span.span_id))
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # Registered before this returns, on whichever thread: a flush() after it waits for it.
        pending: Any = (
            asyncio.ensure_future(publish)
            if running is self._loop
            else asyncio.run_coroutine_threadsafe(publish, self._loop)
        )
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        while self._pending:
            await asyncio.gather(*(asyncio.wrap_future(f) if isinstance(f, concurrent.futures.Future) else f
                                   for f in list(self._pending)))  # fmt: skip
        await self.client.flush()
