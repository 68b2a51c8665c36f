"""The fleet as the logs service sees it: `agents` (one document per agent, its last
`ts`), kept at ingest from everything on LOGS, and `query.agents`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstore.schemas.common import LEVEL_NUMBERS
from agentstore.schemas.logs import AgentsQuery
from agentstore_server.bus.ingest import Write
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.logs import logs
from agentstore_server.logs.documents import Indexes, Order, agents_filter, converge, page
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

COLLECTION = "agents"
ORDER = Order("last_seen", descending=True)
INDEXES: Indexes = {"last_seen": ([("last_seen", -1), ("_id", -1)], False)}
# Counted one level at a time: an equality on level_no is what FerretDB pushes down (over
# the wire), and in SQL each level's count is a range of the level_ts_id index.
ERROR_LEVELS = [n for n in LEVEL_NUMBERS.values() if n >= LEVEL_NUMBERS["error"]]
ERROR_WINDOW = timedelta(hours=1)
# An agent's last_seen is rewritten when it moves by more than this: each mark is an upsert
# FerretDB commits on its own (~0.9 ms), and marking every agent of every batch took two
# thirds of logs ingest's time with 100 agents (bench.ingest_logs: 2.6k events/s).
MARK_EVERY = timedelta(seconds=1)


class Agents:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)
        # The newest last_seen this process stored for each agent (replicas keep their own).
        self._marked: dict[str, datetime] = {}

    def tracking(self, write: Write) -> Write:
        """`write`, then the agents of what it stored marked seen (before the ack, so a
        redelivery repeats both; marking is idempotent)."""

        async def write_and_mark(docs: Sequence[Any]) -> Mapping[int, str]:
            refused = await write(docs)
            await self.seen([d for i, d in enumerate(docs) if i not in refused])
            return refused

        return write_and_mark

    async def seen(self, docs: Sequence[Document]) -> None:
        newest: dict[str, datetime] = {}
        for d in docs:
            agent, ts = d["agent_id"], d["ts"]
            if agent not in newest or ts > newest[agent]:
                newest[agent] = ts
        marks = [(agent, ts) for agent, ts in newest.items()
                 if agent not in self._marked or ts > self._marked[agent] + MARK_EVERY]  # fmt: skip
        if not marks:
            return
        # The guard keeps last_seen monotonic: an older mark misses, collides on _id
        # and is dropped; `converge` re-applies what a concurrent writer overwrote.
        updates = [
            (
                {"_id": agent, "last_seen": {"$lt": ts}},
                {"$set": {"last_seen": ts, "agent_id": agent}, "$setOnInsert": {"first_seen": ts}},
            )
            for agent, ts in marks
        ]

        def applied(stored: Document | None, i: int) -> bool:
            return stored is not None and stored["last_seen"] >= marks[i][1]

        refused = await converge(self.mongo, self.reader, COLLECTION, updates, applied)
        for i, (agent, ts) in enumerate(marks):
            if i not in refused:
                self._marked[agent] = max(ts, self._marked.get(agent, ts))

    async def query(self, ctx: RequestContext, q: AgentsQuery) -> dict[str, Any]:
        listed = await page(
            self.reader, COLLECTION, agents_filter(ctx.scope(q.agent_ids)), ORDER, q.limit, q.cursor
        )
        since = q.errors_since or datetime.now(UTC) - ERROR_WINDOW
        errors = await self.errors_since([i["agent_id"] for i in listed["items"]], since)
        for item in listed["items"]:
            item.pop("_id", None)
            item["errors"] = errors.get(item["agent_id"], 0)
        return listed

    async def errors_since(self, agents: list[str], since: datetime) -> dict[str, int]:
        if not agents:
            return {}
        counts: dict[str, int] = {}
        for level_no in ERROR_LEVELS:
            filter = {"level_no": level_no, "ts": {"$gte": since}, **agents_filter(agents)}
            for agent, n in (await self.reader.count_by(logs.COLLECTION, filter, "agent_id")).items():
                counts[agent] = counts.get(agent, 0) + n
        return counts
