"""The logs service's wire messages: logs, memories, conversations, messages,
audit events and agent outputs (ingest bodies and query requests)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from agentstore.schemas.common import (
    DEFAULT_LIMIT,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    After,
    AgentId,
    AgentIds,
    EventId,
    FreeMap,
    Level,
    Limit,
    Name,
    Reply,
    Strict,
    UtcTime,
)

MessageText = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
TaskId = EventId
RunId = EventId
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)]
Cursor = Annotated[str, msgspec.Meta(max_length=512)]
Role = Literal["user", "assistant", "system", "tool"]
SchemaVersion = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
# W3C / OpenTelemetry ids in lowercase hex (v1.3): a trace's 16 bytes, a span's 8.
TraceId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$(?!\n)")]
SpanId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{16}$(?!\n)")]


# -- ingest bodies (agents.{agent}.{kind}) ------------------------------------


class LogIn(Strict):
    """Body of `agents.{agent}.logs`."""

    id: EventId
    level: Level
    message: MessageText
    ts: UtcTime | None = None
    task_id: TaskId | None = None
    fields: FreeMap | None = None
    agent_id: AgentId | None = None
    trace_id: TraceId | None = None
    span_id: SpanId | None = None


class MemoryIn(Strict):
    """Body of `agents.{agent}.memories`; with `key`, the newest (by ts) replaces older ones."""

    id: EventId
    kind: Name
    content: Text
    ts: UtcTime | None = None
    key: Name | None = None
    task_id: TaskId | None = None
    tags: Tags | None = None
    data: FreeMap | None = None
    agent_id: AgentId | None = None


class ConversationIn(Strict):
    """Body of `agents.{agent}.conversations`: upsert; the newest `ts` sets user_id/context."""

    id: EventId
    ts: UtcTime | None = None
    user_id: Name | None = None
    context: FreeMap | None = None
    agent_id: AgentId | None = None


class MessageIn(Strict):
    """Body of `agents.{agent}.messages`: one message of a conversation."""

    id: EventId
    conversation_id: EventId
    role: Role
    content: Text
    ts: UtcTime | None = None
    agent_steps: list[Any] | None = None
    pdf_names: list[Name] | None = None
    source_citations: list[FreeMap] | None = None
    meta_data: FreeMap | None = None
    agent_id: AgentId | None = None


class EventIn(Strict):
    """Body of `agents.{agent}.events`: append-only audit trail."""

    id: EventId
    type: Name
    ts: UtcTime | None = None
    run_id: RunId | None = None
    task_id: TaskId | None = None
    payload: FreeMap | None = None
    agent_id: AgentId | None = None
    trace_id: TraceId | None = None
    span_id: SpanId | None = None


class OutputIn(Strict):
    """Body of `agents.{agent}.outputs`: a structured, versioned output; upsert by (agent, id)."""

    id: EventId
    kind: Name
    schema_version: SchemaVersion
    data: FreeMap
    ts: UtcTime | None = None
    run_id: RunId | None = None
    task_id: TaskId | None = None
    agent_id: AgentId | None = None


# -- queries (query.{name} and agents.{agent}.rpc.query.{name}) ---------------


class LogsQuery(Strict):
    """`query.logs`: newest first; `level` is a minimum."""

    agent_ids: AgentIds | None = None
    level: Level | None = None
    task_id: TaskId | None = None
    since: UtcTime | None = None
    until: UtcTime | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    trace_id: TraceId | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class MemoriesQuery(Strict):
    """`query.memories`: newest first; every tag given must be on the memory."""

    agent_ids: AgentIds | None = None
    kind: Name | None = None
    key: Name | None = None
    task_id: TaskId | None = None
    tags: Annotated[list[Tag], msgspec.Meta(min_length=1, max_length=MAX_TAGS)] | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class ConversationsQuery(Strict):
    """`query.conversations`: newest `updated_at` first."""

    agent_ids: AgentIds | None = None
    user_id: Name | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class ConversationQuery(Strict):
    """`query.conversation`: one conversation with its messages, oldest first."""

    agent_id: AgentId
    conversation_id: EventId
    after: After | None = None


class MessagesQuery(Strict):
    """`query.messages` (v1.3): a conversation's messages, oldest first, in pages."""

    agent_id: AgentId
    conversation_id: EventId
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class EventsQuery(Strict):
    """`query.events`: oldest first."""

    agent_ids: AgentIds | None = None
    run_id: RunId | None = None
    task_id: TaskId | None = None
    type: Name | None = None
    since: UtcTime | None = None
    until: UtcTime | None = None
    trace_id: TraceId | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class OutputsQuery(Strict):
    """`query.outputs`: newest first."""

    agent_ids: AgentIds | None = None
    run_id: RunId | None = None
    task_id: TaskId | None = None
    kind: Name | None = None
    schema_version: SchemaVersion | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class AgentsQuery(Strict):
    """`query.agents` (v1.3): the agents seen on LOGS, most recently seen first, each with
    its logs at level error or above since `errors_since` (default: the last hour)."""

    agent_ids: AgentIds | None = None
    errors_since: UtcTime | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


# -- replies -------------------------------------------------------------------


class AgentItem(Reply):
    agent_id: str
    first_seen: str
    last_seen: str
    errors: int


class LogItem(Reply):
    """A stored log, as `query.logs` lists it."""

    id: str
    agent_id: str
    ts: str
    level: Level
    message: str
    task_id: str | None = None
    fields: FreeMap | None = None
    trace_id: str | None = None
    span_id: str | None = None


class MemoryItem(Reply):
    id: str
    agent_id: str
    ts: str
    kind: str
    content: str
    key: str | None = None
    task_id: str | None = None
    tags: list[str] | None = None
    data: FreeMap | None = None


class ConversationItem(Reply):
    conversation_id: str
    agent_id: str
    created_at: str
    updated_at: str
    user_id: str | None = None
    context: FreeMap | None = None


class MessageItem(Reply):
    id: str
    agent_id: str
    conversation_id: str
    ts: str
    role: Role
    content: str
    agent_steps: list[Any] | None = None
    pdf_names: list[str] | None = None
    source_citations: list[FreeMap] | None = None
    meta_data: FreeMap | None = None


class Conversation(ConversationItem):
    """`query.conversation`: the conversation and its messages, oldest first."""

    messages: list[MessageItem] = msgspec.field(default_factory=list)
    # v1.3: set when the conversation has more messages than the first page shown here;
    # pass it to `query.messages` for the rest (nothing is cut silently).
    messages_next_cursor: str | None = None


class EventItem(Reply):
    id: str
    agent_id: str
    ts: str
    type: str
    run_id: str | None = None
    task_id: str | None = None
    payload: FreeMap | None = None
    trace_id: str | None = None
    span_id: str | None = None


class OutputItem(Reply):
    id: str
    agent_id: str
    ts: str
    kind: str
    schema_version: int
    data: FreeMap
    run_id: str | None = None
    task_id: str | None = None
