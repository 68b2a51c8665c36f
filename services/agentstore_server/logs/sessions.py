"""`agents.{agent}.rpc.session.*` → MongoDB `session_items`: an agent's ordered item history
per session (what the OpenAI Agents SDK's `Session` keeps), written by request-reply so an
add is acknowledged once it is stored and a read right after sees it.

Each item is one document keyed by (agent, session, position); positions grow by one per item.
An add carries a `batch_id`: a retried add finds its batch stored and adds nothing. Adds and
pops of one session are serialized in this process; two replicas adding to one session at the
same instant are told to retry (the read-back sees the other's items), not silently merged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from agentstore.errors import StoreUnavailable
from agentstore.schemas.common import Page, decode_cursor, encode_cursor, iso
from agentstore.schemas.sessions import (
    AddSessionItems,
    ClearSession,
    PoppedSessionItem,
    PopSessionItem,
    SessionAdded,
    SessionCleared,
    SessionItems,
    SessionItemsQuery,
    SessionQuery,
    SessionsQuery,
    SessionSummary,
)
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.logs.documents import Indexes
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

COLLECTION = "session_items"
INDEXES: Indexes = {
    "agent_session_seq": ([("agent_id", 1), ("session_id", 1), ("seq", -1)], False),
    "batch": ([("agent_id", 1), ("session_id", 1), ("batch_id", 1)], False),
}


def _key(agent: str, session: str, seq: int) -> str:
    return f"{agent}:{session}:{seq:012d}"


class Sessions:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)

    @staticmethod
    def _agent(ctx: RequestContext) -> str:
        assert ctx.agent is not None  # agent-only endpoints: the subject names the agent
        return ctx.agent

    async def _newest(self, agent: str, session: str) -> Document | None:
        found = await self.reader.find(
            COLLECTION, {"agent_id": agent, "session_id": session}, sort=[("seq", -1)], limit=1
        )
        return found[0] if found else None

    async def add(self, ctx: RequestContext, q: AddSessionItems) -> SessionAdded:
        agent = self._agent(ctx)
        where = {"agent_id": agent, "session_id": q.session_id}
        async with self.mongo.lock(f"session:{agent}:{q.session_id}"):
            done = await self.reader.find(
                COLLECTION, {**where, "batch_id": q.batch_id}, sort=[("seq", -1)], limit=1
            )
            if done:  # a retry of an add that was stored
                return SessionAdded(session_id=q.session_id, added=0, last_seq=int(done[0]["seq"]))
            newest = await self._newest(agent, q.session_id)
            first = int(newest["seq"]) + 1 if newest else 1
            now = datetime.now(UTC)
            docs = [
                {"_id": _key(agent, q.session_id, first + i), **where, "seq": first + i,
                 "batch_id": q.batch_id, "ts": now, "item": item}
                for i, item in enumerate(q.items)
            ]  # fmt: skip
            refused = await self.mongo.insert_new(COLLECTION, docs)
            if refused:
                raise StoreUnavailable(f"session {q.session_id}: {next(iter(refused.values()))}")
            stored = await self.reader.find_by_ids(COLLECTION, [d["_id"] for d in docs])
            if any(stored.get(d["_id"], {}).get("batch_id") != q.batch_id for d in docs):
                # Another replica took these positions between our read and our write.
                raise StoreUnavailable(f"session {q.session_id} was added to concurrently; retry the add")
        return SessionAdded(session_id=q.session_id, added=len(docs), last_seq=first + len(docs) - 1)

    async def items(self, ctx: RequestContext, q: SessionItemsQuery) -> SessionItems:
        return await self._latest(self._agent(ctx), q.session_id, q.limit)

    async def query_one(self, ctx: RequestContext, q: SessionQuery) -> SessionItems:
        ctx.check_agent(q.agent_id)
        return await self._latest(q.agent_id, q.session_id, q.limit)

    async def query_list(self, ctx: RequestContext, q: SessionsQuery) -> Page[SessionSummary]:
        """An agent's sessions by id (one count over its items: an agent's scale)."""
        ctx.check_agent(q.agent_id)
        counts = await self.reader.count_by(COLLECTION, {"agent_id": q.agent_id}, "session_id")
        ids = sorted(str(k) for k in counts)
        if q.cursor is not None:
            (after,) = decode_cursor(q.cursor, 1)
            ids = [i for i in ids if i > after]
        page = ids[: q.limit]
        more = len(ids) > q.limit
        # Each listed session's newest item: one indexed read each (agent, session, seq desc).
        newest = await asyncio.gather(*(self._newest(q.agent_id, i) for i in page))
        return Page[SessionSummary](
            items=[
                SessionSummary(session_id=i, items=counts[i], last_added_at=_added_at(doc))
                for i, doc in zip(page, newest, strict=True)
            ],  # fmt: skip
            next_cursor=encode_cursor(page[-1]) if more and page else None,
        )

    async def _latest(self, agent: str, session: str, limit: int | None) -> SessionItems:
        q = SessionItemsQuery(session_id=session, limit=limit)
        where = {"agent_id": agent, "session_id": q.session_id}
        if q.limit == 0:
            return SessionItems(session_id=q.session_id, items=[])
        if q.limit is None:
            docs = await self.reader.find(COLLECTION, where, sort=[("seq", 1)])
        else:  # the latest N, newest first from the index, then in the order added
            docs = (await self.reader.find(COLLECTION, where, sort=[("seq", -1)], limit=q.limit))[::-1]
        return SessionItems(session_id=q.session_id, items=[_item(d) for d in docs])

    async def pop(self, ctx: RequestContext, q: PopSessionItem) -> PoppedSessionItem:
        agent = self._agent(ctx)
        async with self.mongo.lock(f"session:{agent}:{q.session_id}"):
            newest = await self._newest(agent, q.session_id)
            if newest is None or not await self.mongo.delete_many(COLLECTION, {"_id": newest["_id"]}):
                return PoppedSessionItem(session_id=q.session_id, item=None)
        return PoppedSessionItem(session_id=q.session_id, item=_item(newest))

    async def clear(self, ctx: RequestContext, q: ClearSession) -> SessionCleared:
        agent = self._agent(ctx)
        async with self.mongo.lock(f"session:{agent}:{q.session_id}"):
            removed = await self.mongo.delete_many(
                COLLECTION, {"agent_id": agent, "session_id": q.session_id}
            )
        return SessionCleared(session_id=q.session_id, removed=removed)


def _item(doc: Document) -> dict[str, Any]:
    item: dict[str, Any] = doc["item"]
    return item


def _added_at(doc: Document | None) -> str | None:
    if doc is None or not isinstance(doc.get("ts"), datetime):
        return None
    ts: datetime = doc["ts"]
    return iso(ts if ts.tzinfo else ts.replace(tzinfo=UTC))
