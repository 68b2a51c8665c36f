"""Conversations and their messages (seed 001), in MongoDB `conversations` and `messages`.

`agents.{agent}.conversations` upserts a conversation: `created_at` is the
oldest `ts` seen, `updated_at` the newest `ts` of the conversation or any of
its messages, and `user_id`/`context` come from the newest conversation
message. `agents.{agent}.messages` appends messages; a message for a
conversation not seen yet creates it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agentstore.errors import NotFound
from agentstore.schemas.common import EPOCH
from agentstore.schemas.logs import (
    ConversationIn,
    ConversationQuery,
    ConversationsQuery,
    MessageIn,
    MessagesQuery,
)
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.logs.documents import (
    Indexes,
    Order,
    agents_filter,
    converge,
    equals,
    page,
    to_doc,
    to_item,
)
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

CONVERSATIONS = "conversations"
MESSAGES = "messages"
ORDER = Order("updated_at", descending=True)
# The first page of messages `query.conversation` embeds; `messages_next_cursor` and
# `query.messages` give the rest.
MAX_MESSAGES = 1_000
MESSAGE_ORDER = Order("ts", descending=False)
CONVERSATION_INDEXES: Indexes = {
    "agent_updated": ([("agent_id", 1), ("updated_at", -1), ("_id", -1)], False),
    "user_updated": ([("user_id", 1), ("updated_at", -1)], False),
    "updated": ([("updated_at", -1), ("_id", -1)], False),
    "created": ([("created_at", -1)], False),  # seed 001's index
}
MESSAGE_INDEXES: Indexes = {
    "conversation_ts": ([("agent_id", 1), ("conversation_id", 1), ("ts", 1), ("_id", 1)], False),
    "role": ([("role", 1)], False),
    "ts": ([("ts", 1)], False),
}


def decode_conversation(envelope: Envelope) -> Document:
    return to_doc(envelope, ConversationIn)


def decode_message_doc(envelope: Envelope) -> Document:
    return to_doc(envelope, MessageIn)


def conversation_key(agent: str, conversation_id: str) -> str:
    return f"{agent}:{conversation_id}"


def touch(agent: str, conversation_id: str, oldest: datetime, newest: datetime) -> tuple[Document, Document]:
    """Create the conversation if missing and widen its [created_at, updated_at]."""
    return (
        {"_id": conversation_key(agent, conversation_id)},
        {
            "$setOnInsert": {"agent_id": agent, "conversation_id": conversation_id},
            "$min": {"created_at": oldest},
            "$max": {"updated_at": newest},
        },
    )


def metadata(doc: Document) -> tuple[Document, Document]:
    """The newest conversation message (by meta_ts) defines user_id and context."""
    ts = doc["ts"]
    present = {k: doc[k] for k in ("user_id", "context") if k in doc}
    update: Document = {"$set": {**present, "meta_ts": ts}}
    absent = {k: "" for k in ("user_id", "context") if k not in doc}
    if absent:
        update["$unset"] = absent
    guard = {"_id": doc["_id"], "$or": [{"meta_ts": {"$exists": False}}, {"meta_ts": {"$lte": ts}}]}
    return guard, update


def covers(stored: Document | None, oldest: datetime, newest: datetime) -> bool:
    """Whether a stored conversation's [created_at, updated_at] spans [oldest, newest]."""
    return stored is not None and stored["created_at"] <= oldest and stored["updated_at"] >= newest


class Conversations:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo  # writes
        self.reader = reader  # reads (the wire, or FerretDB's tables in SQL)

    async def write_conversations(self, docs: Sequence[Document]) -> Mapping[int, str]:
        spans = [(d["ts"], d["ts"]) for d in docs]
        updates = [touch(d["agent_id"], d["id"], d["ts"], d["ts"]) for d in docs]
        refused = await converge(
            self.mongo, self.reader, CONVERSATIONS, updates, lambda s, i: covers(s, *spans[i])
        )
        ok = [i for i in range(len(docs)) if i not in refused]
        meta = [metadata(docs[i]) for i in ok]
        stamps = [docs[i]["ts"] for i in ok]
        late = await converge(
            self.mongo,
            self.reader,
            CONVERSATIONS,
            meta,
            lambda s, j: s is not None and s.get("meta_ts", EPOCH) >= stamps[j],
        )
        refused.update({ok[j]: reason for j, reason in late.items()})
        return refused

    async def write_messages(self, docs: Sequence[Document]) -> Mapping[int, str]:
        refused = await self.mongo.insert_new(MESSAGES, docs)
        newest: dict[tuple[str, str], datetime] = {}
        oldest: dict[tuple[str, str], datetime] = {}
        for i, d in enumerate(docs):
            if i in refused:
                continue
            key = (d["agent_id"], d["conversation_id"])
            newest[key] = max(newest.get(key, d["ts"]), d["ts"])
            oldest[key] = min(oldest.get(key, d["ts"]), d["ts"])
        keys = list(newest)
        updates = [touch(a, c, oldest[(a, c)], newest[(a, c)]) for a, c in keys]
        # Touching is idempotent, so a retry after a failure here is harmless.
        await converge(
            self.mongo,
            self.reader,
            CONVERSATIONS,
            updates,
            lambda s, i: covers(s, oldest[keys[i]], newest[keys[i]]),
        )
        return refused

    async def query_list(self, ctx: RequestContext, q: ConversationsQuery) -> dict[str, Any]:
        filter = {**agents_filter(ctx.scope(q.agent_ids)), **equals(user_id=q.user_id)}
        return await page(self.reader, CONVERSATIONS, filter, ORDER, q.limit, q.cursor)

    async def query_one(self, ctx: RequestContext, q: ConversationQuery) -> dict[str, Any]:
        ctx.check_agent(q.agent_id)
        doc = await self.reader.find_one(
            CONVERSATIONS, {"_id": conversation_key(q.agent_id, q.conversation_id)}
        )
        if doc is None:
            raise NotFound(f"no conversation {q.conversation_id!r} for agent {q.agent_id!r}")
        messages = await self.messages_page(q.agent_id, q.conversation_id, None, MAX_MESSAGES)
        return {
            **to_item(doc),
            "messages": messages["items"],
            "messages_next_cursor": messages["next_cursor"],
        }

    async def query_messages(self, ctx: RequestContext, q: MessagesQuery) -> dict[str, Any]:
        ctx.check_agent(q.agent_id)
        return await self.messages_page(q.agent_id, q.conversation_id, q.cursor, q.limit)

    async def messages_page(
        self, agent: str, conversation: str, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        where = {"agent_id": agent, "conversation_id": conversation}
        return await page(self.reader, MESSAGES, where, MESSAGE_ORDER, limit, cursor)
