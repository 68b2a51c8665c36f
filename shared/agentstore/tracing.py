"""Spans from plain Python (`async with client.span("plan"):`), nested by context.

A span opened inside another (in the same task, or a task started inside it) is its
child, in the same trace; the outermost one starts a new trace. A span is published once,
when it ends (`agents.{agent}.spans`, CONTRACT v1.12), with its status `error` and the
exception's message if its block raised. Logs written inside a span carry its ids.
"""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from agentstore.schemas.common import nest_keys
from agentstore.schemas.traces import SpanEvent, SpanIn, SpanKind

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
        self.status: str = "unset"
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
            status=self.status,  # type: ignore[arg-type]
            status_message=self.status_message, attributes=nest_keys(self.attributes) or None,
            events=self.events or None, model=self.model, input_tokens=self.input_tokens,
            output_tokens=self.output_tokens, **self.links,
        )  # fmt: skip
