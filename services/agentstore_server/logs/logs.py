"""`agents.{agent}.logs` → MongoDB `logs`, and `query.logs` (newest first)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from agentstore.schemas.common import LEVEL_NUMBERS
from agentstore.schemas.logs import LogIn, LogsQuery
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

COLLECTION = "logs"
ORDER = Order("ts", descending=True)
INDEXES: Indexes = {
    "agent_ts": ([("agent_id", 1), ("ts", -1), ("_id", -1)], False),
    "task_ts": ([("task_id", 1), ("ts", -1)], False),
    # With _id, a page of one level is an index range in the page's own order.
    "level_ts_id": ([("level_no", 1), ("ts", -1), ("_id", -1)], False),
    "trace": ([("trace_id", 1), ("ts", -1)], False),
    "ts": ([("ts", -1), ("_id", -1)], False),
}

# Superseded indexes, dropped at start (each costs every insert).
OBSOLETE_INDEXES = ("level_ts",)


def decode_log(envelope: Envelope) -> Document:
    doc = to_doc(envelope, LogIn)
    # The numeric level makes "at least warning" one range filter.
    doc["level_no"] = LEVEL_NUMBERS[doc["level"]]
    return doc


class Logs:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)

    async def write(self, docs: Sequence[Document]) -> Mapping[int, str]:
        return await self.mongo.insert_new(COLLECTION, docs)

    async def query(self, ctx: RequestContext, q: LogsQuery) -> dict[str, Any]:
        filter = {
            **agents_filter(ctx.scope(q.agent_ids)),
            **equals(task_id=q.task_id, trace_id=q.trace_id),
            **time_range("ts", q.since, q.until),
        }
        if q.level is not None and q.level != "debug":
            # The levels at or above, as a set: each is an index range (level_no, ts) that
            # a page merges, where a range over level_no would read every matching log.
            floor = LEVEL_NUMBERS[q.level]
            filter["level_no"] = {"$in": [n for n in sorted(set(LEVEL_NUMBERS.values())) if n >= floor]}
        if q.text is not None:
            filter["message"] = {"$regex": re.escape(q.text), "$options": "i"}
        return await page(self.reader, COLLECTION, filter, ORDER, q.limit, q.cursor)
