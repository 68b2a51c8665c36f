"""The fleet as the logs service sees it: `agents` (one document per agent, its last
`ts`), kept at ingest from everything on LOGS, and `query.agents`."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstore.schemas.common import LEVEL_NUMBERS
from agentstore.schemas.logs import AgentsQuery
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
# An agent's last_seen is rewritten when it moves by more than about this: each mark is an
# upsert FerretDB commits on its own (~0.9 ms), and marking every agent of every batch took
# two thirds of logs ingest's time with 100 agents (bench.ingest_logs: 2.6k events/s).
MARK_EVERY = timedelta(seconds=1)


def next_mark(ts: datetime, agent: str) -> datetime:
    """When an agent marked at `ts` is due again: MARK_EVERY later, offset by a fraction of
    it fixed per agent. Agents that start together would otherwise fall due in the same
    batch every second, and that batch's ~100 upserts (90 ms) held its acks (bench.poison's
    p99 PubAck -> stored 205 ms at 1,000 events/s)."""
    spread = (zlib.crc32(agent.encode()) % 1000) / 1000  # stable: the same agent, the same offset
    return ts + MARK_EVERY * (0.5 + spread)


class Agents:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)
        # When each agent's last_seen is next due to be rewritten by this process (replicas
        # keep their own).
        self._due: dict[str, datetime] = {}
        self._stored: set[str] | None = None  # the agents the collection holds, once loaded

    async def seen(self, docs: Sequence[Document]) -> None:
        """The agents of stored documents marked seen: the ingest handlers' follow-up, before
        the ack (a redelivery repeats it; marking is idempotent)."""
        if self._stored is None:
            await self._load()
        newest: dict[str, datetime] = {}
        oldest: dict[str, datetime] = {}  # an agent's first_seen, when this batch inserts it
        for d in docs:
            agent, ts = d["agent_id"], d["ts"]
            if agent not in newest or ts > newest[agent]:
                newest[agent] = ts
            if agent not in oldest or ts < oldest[agent]:
                oldest[agent] = ts
        marks = [(agent, ts) for agent, ts in newest.items()
                 if agent not in self._due or ts > self._due[agent]]  # fmt: skip
        if not marks:
            return
        # Agents the collection did not hold when this process started: one insert for all of
        # them, not an upsert each (100 new agents in a batch held its acks ~90 ms). A
        # duplicate (another replica, a redelivery) is read back and falls to the upserts.
        assert self._stored is not None
        new = [(agent, ts) for agent, ts in marks if agent not in self._stored]
        if new:
            refused = await self.mongo.insert_new(
                COLLECTION,
                [{"_id": a, "agent_id": a, "last_seen": ts, "first_seen": oldest[a]} for a, ts in new],
            )
            self._stored.update(a for i, (a, _) in enumerate(new) if i not in refused)
            back = await self.reader.find_by_ids(COLLECTION, [a for a, _ in new])
            inserted = {a for a, ts in new if a in back and back[a]["last_seen"] >= ts}
            # Another worker's later batch may have inserted first: first_seen moves back.
            await self._first_seen({a: oldest[a] for a, _ in new
                                    if a in back and back[a]["first_seen"] > oldest[a]})  # fmt: skip
            for agent, ts in new:
                if agent in inserted:
                    self._marked(agent, ts)
            marks = [(a, ts) for a, ts in marks if a not in inserted]
            if not marks:
                return
        # The guard keeps last_seen monotonic: an older mark misses, collides on _id
        # and is dropped; `converge` re-applies what a concurrent writer overwrote.
        updates = [
            (
                {"_id": agent, "last_seen": {"$lt": ts}},
                {"$set": {"last_seen": ts, "agent_id": agent}, "$setOnInsert": {"first_seen": oldest[agent]}},
            )
            for agent, ts in marks
        ]

        def applied(stored: Document | None, i: int) -> bool:
            return stored is not None and stored["last_seen"] >= marks[i][1]

        refused = await converge(self.mongo, self.reader, COLLECTION, updates, applied)
        for i, (agent, ts) in enumerate(marks):
            if i not in refused:
                self._stored.add(agent)
                self._marked(agent, ts)

    async def _first_seen(self, earliest: dict[str, datetime]) -> None:
        if not earliest:
            return
        agents = list(earliest)
        updates = [({"_id": a, "first_seen": {"$gt": earliest[a]}}, {"$set": {"first_seen": earliest[a]}})
                   for a in agents]  # fmt: skip

        def applied(stored: Document | None, i: int) -> bool:
            return stored is None or stored["first_seen"] <= earliest[agents[i]]

        await converge(self.mongo, self.reader, COLLECTION, updates, applied)

    async def _load(self) -> None:
        """What the collection holds, once: a restarted service's agents are due at their
        stored mark, not all re-marked by its first batches."""
        stored = await self.reader.find(COLLECTION, {})
        for doc in stored:
            self._marked(doc["_id"], doc["last_seen"])
        self._stored = {doc["_id"] for doc in stored}

    def _marked(self, agent: str, ts: datetime) -> None:
        due = next_mark(ts, agent)
        self._due[agent] = max(due, self._due.get(agent, due))

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
