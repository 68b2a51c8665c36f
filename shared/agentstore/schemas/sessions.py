"""Sessions (v1.7): an agent's ordered item history, as agent frameworks keep it (the OpenAI
Agents SDK's `Session`: get the latest N, append, pop the newest, clear)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from agentstore.schemas.common import (
    DEFAULT_LIMIT,
    EVENT_ID_PATTERN,
    AgentId,
    EventId,
    FreeMap,
    Limit,
    Reply,
    Strict,
)

SessionId = Annotated[str, msgspec.Meta(pattern=EVENT_ID_PATTERN)]
# One add: what one NATS message carries comfortably (each item is a JSON object).
MAX_SESSION_ADD = 1000


class AddSessionItems(Strict):
    """Append `items` in order. `batch_id` makes a retried add a no-op."""

    session_id: SessionId
    items: Annotated[list[FreeMap], msgspec.Meta(min_length=1, max_length=MAX_SESSION_ADD)]
    batch_id: EventId


class SessionAdded(Reply):
    session_id: str
    added: int
    # The position of the last item added (positions grow by one per item, from 1).
    last_seq: int


class SessionItemsQuery(Strict):
    """The latest `limit` items in the order they were added (all of them without `limit`)."""

    session_id: SessionId
    limit: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None


class SessionItems(Reply):
    session_id: str
    items: list[FreeMap]


class PopSessionItem(Strict):
    session_id: SessionId


class PoppedSessionItem(Reply):
    session_id: str
    # The newest item, now removed; null when the session was empty.
    item: FreeMap | None


class ClearSession(Strict):
    session_id: SessionId


class SessionCleared(Reply):
    session_id: str
    removed: int


# -- what evaluators and the console read (query.sessions, query.session) ------------------
class SessionsQuery(Strict, kw_only=True):
    """`query.sessions`: an agent's sessions, by id, with how many items each holds and when
    the newest was added."""

    agent_id: AgentId
    limit: Limit = DEFAULT_LIMIT
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class SessionSummary(Reply, kw_only=True):
    session_id: str
    items: int
    # When its newest item was added (v1.14): the session's last activity, as the console shows it.
    last_added_at: str | None = None


class SessionQuery(Strict, kw_only=True):
    """`query.session`: an agent's session, its latest `limit` items in the order added."""

    agent_id: AgentId
    session_id: SessionId
    limit: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None
