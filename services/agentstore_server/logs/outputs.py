"""`agents.{agent}.outputs` → MongoDB `agent_outputs`, and `query.outputs` (newest first).

Structured, versioned agent outputs (seed 004): upsert by (agent, id); the
newest `ts` wins, so a late, older version never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentstore.schemas.logs import OutputIn, OutputsQuery
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

COLLECTION = "agent_outputs"
ORDER = Order("ts", descending=True)
INDEXES: Indexes = {
    "agent_ts": ([("agent_id", 1), ("ts", -1), ("_id", -1)], False),
    "run_ts": ([("run_id", 1), ("ts", -1)], False),
    "task_ts": ([("task_id", 1), ("ts", -1)], False),
    "kind_version": ([("kind", 1), ("schema_version", 1)], False),
    "ts": ([("ts", -1), ("_id", -1)], False),
}


def decode_output(envelope: Envelope) -> Document:
    return to_doc(envelope, OutputIn)


class Outputs:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)

    async def write(self, docs: Sequence[Document]) -> Mapping[int, str]:
        return await upsert_newest(self.mongo, self.reader, COLLECTION, docs)

    async def query(self, ctx: RequestContext, q: OutputsQuery) -> dict[str, Any]:
        filter = {
            **agents_filter(ctx.scope(q.agent_ids)),
            **equals(run_id=q.run_id, task_id=q.task_id, kind=q.kind),
        }
        if q.schema_version is not None:
            filter["schema_version"] = q.schema_version
        return await page(self.reader, COLLECTION, filter, ORDER, q.limit, q.cursor)
