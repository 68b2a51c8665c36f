"""`agents.{agent}.events` → MongoDB `events` (append-only), and `query.events` (oldest first).

Ingest only ever inserts: an event already stored is never updated, even by
a later message with the same id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentstore.schemas.logs import EventIn, EventsQuery
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.logs.documents import (
    Indexes,
    Order,
    agents_filter,
    equals,
    page,
    time_range,
    to_doc,
)
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

COLLECTION = "events"
ORDER = Order("ts", descending=False)
INDEXES: Indexes = {
    "agent_ts": ([("agent_id", 1), ("ts", 1), ("_id", 1)], False),
    "run_ts": ([("run_id", 1), ("ts", 1), ("_id", 1)], False),
    "task_ts": ([("task_id", 1), ("ts", 1)], False),
    "type_ts": ([("type", 1), ("ts", 1)], False),
    "trace": ([("trace_id", 1), ("ts", 1)], False),
    "ts": ([("ts", 1), ("_id", 1)], False),
}


def decode_event(envelope: Envelope) -> Document:
    return to_doc(envelope, EventIn)


class Events:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)

    async def write(self, docs: Sequence[Document]) -> Mapping[int, str]:
        return await self.mongo.insert_new(COLLECTION, docs)

    async def query(self, ctx: RequestContext, q: EventsQuery) -> dict[str, Any]:
        filter = {
            **agents_filter(ctx.scope(q.agent_ids)),
            **equals(run_id=q.run_id, task_id=q.task_id, type=q.type, trace_id=q.trace_id),
            **time_range("ts", q.since, q.until),
        }
        return await page(self.reader, COLLECTION, filter, ORDER, q.limit, q.cursor)
