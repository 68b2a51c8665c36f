"""Traces (v1.12): spans as agents publish them (`agents.{agent}.spans`, and the OTLP gateway
for OpenTelemetry-instrumented agents), and the evaluator's and console's reads of them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agentstore.schemas.common import (
    DEFAULT_LIMIT,
    After,
    AgentId,
    AgentIds,
    EventId,
    FreeMap,
    Limit,
    Name,
    Reply,
    Strict,
    UtcTime,
)
from agentstore.schemas.logs import Cursor, SpanId, TraceId

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
SpanStatus = Literal["unset", "ok", "error"]
Tokens = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
StatusMessage = Annotated[str, msgspec.Meta(max_length=4096)]
# A span's own timed events (an exception, a retry): OpenTelemetry's span events.
MAX_SPAN_EVENTS = 128
# The console shows at most this many spans of one trace per page (a 100k-span trace pages).
MAX_TRACE_PAGE = 2000


def span_msg_id(trace_id: str, span_id: str) -> str:
    """A span's event id for `Nats-Msg-Id` (`{agent}:span:{trace}:{span}`): the same span
    published twice is deduplicated. Not `span-{trace}-{span}`: that is the id of the OTLP
    gateway's audit event of the span, on the same stream (JetStream would drop one)."""
    return f"span:{trace_id}:{span_id}"


class SpanEvent(Strict):
    name: Name
    ts: UtcTime
    attributes: FreeMap | None = None


class SpanIn(Strict):
    """Body of `agents.{agent}.spans`: one finished span. Idempotent on (agent, trace_id,
    span_id): the first stored wins, so a redelivery or a retried export is harmless.

    `model`, `input_tokens` and `output_tokens` are the GenAI figures (OpenTelemetry's
    `gen_ai.request.model`, `gen_ai.usage.*_tokens`); when absent they are read from
    `attributes` under those names. `thread_id`/`checkpoint_id` link a LangGraph step,
    `session_id` a conversation or session, `run_id`/`task_id` agentstore's own.
    """

    trace_id: TraceId
    span_id: SpanId
    name: Name
    start: UtcTime
    end: UtcTime
    parent_span_id: SpanId | None = None
    kind: SpanKind = "internal"
    status: SpanStatus = "unset"
    status_message: StatusMessage | None = None
    attributes: FreeMap | None = None
    events: Annotated[list[SpanEvent], msgspec.Meta(max_length=MAX_SPAN_EVENTS)] | None = None
    model: Name | None = None
    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None
    run_id: EventId | None = None
    task_id: EventId | None = None
    session_id: Name | None = None
    thread_id: Name | None = None
    checkpoint_id: Name | None = None
    agent_id: AgentId | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a span's end is before its start")
        if self.parent_span_id == self.span_id:
            raise ValueError("a span cannot be its own parent")


class TracesQuery(Strict):
    """`query.traces`: an agent's (or the fleet's) traces, newest first or slowest first."""

    agent_ids: AgentIds | None = None
    since: UtcTime | None = None
    until: UtcTime | None = None
    errors: bool = False  # only traces with a span whose status is error
    model: Name | None = None  # only traces with a span of this model
    session_id: Name | None = None
    run_id: EventId | None = None
    thread_id: Name | None = None
    order: Literal["recent", "slowest"] = "recent"
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class TraceQuery(Strict):
    """`query.trace`: one trace's spans in start order (pages of up to MAX_TRACE_PAGE)."""

    trace_id: TraceId
    agent_id: AgentId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TRACE_PAGE)] = 1000
    cursor: Cursor | None = None
    after: After | None = None


class TraceItem(Reply):
    agent_id: str
    trace_id: str
    # The root span's name (the first span's when the root never arrived).
    name: str
    start: str
    end: str
    duration_ms: float
    spans: int
    errors: int
    models: list[str]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    root_span_id: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    thread_id: str | None = None


class SpanItem(Reply):
    agent_id: str
    span_id: str
    name: str
    start: str
    end: str
    duration_ms: float
    kind: str
    status: str
    parent_span_id: str | None = None
    status_message: str | None = None
    attributes: FreeMap | None = None
    events: list[FreeMap] | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    run_id: str | None = None
    task_id: str | None = None
    session_id: str | None = None
    thread_id: str | None = None
    checkpoint_id: str | None = None


class Trace(Reply):
    """A trace's summary and a page of its spans, in start order."""

    trace: TraceItem
    spans: list[SpanItem]
    next_cursor: str | None
