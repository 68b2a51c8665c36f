"""`agents.{agent}.memories` → MongoDB `memories`, and `query.memories` (newest first).

A memory with a `key` is stored under `{agent}#{key}` (ids cannot hold `#`),
and only the newest by `ts` is kept, whatever order the messages arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentstore.schemas.logs import MemoriesQuery, MemoryIn
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.logs.documents import (
    Indexes,
    Order,
    agents_filter,
    equals,
    page,
    to_doc,
    upsert_newest,
)
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

COLLECTION = "memories"
ORDER = Order("ts", descending=True)
INDEXES: Indexes = {
    "agent_ts": ([("agent_id", 1), ("ts", -1), ("_id", -1)], False),
    "agent_key": ([("agent_id", 1), ("key", 1)], False),
    "agent_kind_ts": ([("agent_id", 1), ("kind", 1), ("ts", -1)], False),
    "task_ts": ([("task_id", 1), ("ts", -1)], False),
    "tags": ([("tags", 1)], False),
    "ts": ([("ts", -1), ("_id", -1)], False),
}


def decode_memory(envelope: Envelope) -> Document:
    doc = to_doc(envelope, MemoryIn)
    if "key" in doc:
        doc["_id"] = f"{envelope.agent}#{doc['key']}"
    return doc


class Memories:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)

    async def write(self, docs: Sequence[Document]) -> Mapping[int, str]:
        plain = [i for i, d in enumerate(docs) if "key" not in d]
        keyed = [i for i, d in enumerate(docs) if "key" in d]
        refused: dict[int, str] = {}
        if plain:
            result = await self.mongo.insert_new(COLLECTION, [docs[i] for i in plain])
            refused.update({plain[i]: reason for i, reason in result.items()})
        if keyed:
            result = await upsert_newest(self.mongo, self.reader, COLLECTION, [docs[i] for i in keyed])
            refused.update({keyed[i]: reason for i, reason in result.items()})
        return refused

    async def query(self, ctx: RequestContext, q: MemoriesQuery) -> dict[str, Any]:
        filter = {
            **agents_filter(ctx.scope(q.agent_ids)),
            **equals(kind=q.kind, key=q.key, task_id=q.task_id),
        }
        if q.tags:
            filter["tags"] = {"$all": q.tags}
        return await page(self.reader, COLLECTION, filter, ORDER, q.limit, q.cursor)
