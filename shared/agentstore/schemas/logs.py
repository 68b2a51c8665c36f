"""Logs: `agents.{agent}.logs` ingest and `query.logs`."""

from __future__ import annotations

from typing import Annotated

import msgspec

from agentstore.schemas.common import (
    DEFAULT_LIMIT,
    After,
    AgentId,
    AgentIds,
    EventId,
    FreeMap,
    Level,
    Limit,
    Strict,
    UtcTime,
)

MessageText = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
TaskId = EventId


class LogIn(Strict):
    """Body of `agents.{agent}.logs`."""

    id: EventId
    level: Level
    message: MessageText
    ts: UtcTime | None = None
    task_id: TaskId | None = None
    fields: FreeMap | None = None
    agent_id: AgentId | None = None


class LogsQuery(Strict):
    """Request of `query.logs`: newest first."""

    agent_ids: AgentIds | None = None
    level: Level | None = None
    task_id: TaskId | None = None
    since: UtcTime | None = None
    until: UtcTime | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    after: After | None = None
