"""Every MongoDB collection of the logs service, declared once: its indexes, the timestamp
retention ages it by (`RETENTION_DAYS`), and whether a full backup carries it. The service's
start, the retention sweep and `agentstore export --full` all read this table, so a new
collection cannot be indexed and forgotten by the backup (as `session_items` once was).

The memory store (`store_items`, LangGraph's store and ADK's sessions) is PostgreSQL's
(`store_items.py`): the backup carries every table the services own."""

from __future__ import annotations

from dataclasses import dataclass

from agentstore_server.logs import agents, conversations, events, logs, memories, outputs, sessions
from agentstore_server.logs.documents import Indexes


@dataclass(frozen=True)
class Collection:
    name: str
    indexes: Indexes
    # The field retention ages a document by; None: kept until its owner deletes it.
    age_field: str | None
    backed_up: bool = True


COLLECTIONS = (
    Collection(logs.COLLECTION, logs.INDEXES, "ts"),
    Collection(memories.COLLECTION, memories.INDEXES, "ts"),
    Collection(conversations.CONVERSATIONS, conversations.CONVERSATION_INDEXES, "updated_at"),
    Collection(conversations.MESSAGES, conversations.MESSAGE_INDEXES, "ts"),
    Collection(events.COLLECTION, events.INDEXES, "ts"),
    Collection(outputs.COLLECTION, outputs.INDEXES, "ts"),
    Collection(agents.COLLECTION, agents.INDEXES, None),
    Collection(sessions.COLLECTION, sessions.INDEXES, None),
)
BY_NAME = {c.name: c for c in COLLECTIONS}
# The timestamp each collection ages by (the ones RETENTION_DAYS may name).
AGE_FIELD = {c.name: c.age_field for c in COLLECTIONS if c.age_field is not None}
BACKED_UP = tuple(sorted(c.name for c in COLLECTIONS if c.backed_up))
