"""`agents.{agent}.logs` → MongoDB `logs`, and `query.logs` (newest first)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agentstore.bus.ingest import Envelope
from agentstore.bus.rpc import RequestContext
from agentstore.errors import BadRequest, InvalidMessage
from agentstore.schemas.common import (
    LEVEL_NUMBERS,
    decode_cursor,
    decode_message,
    encode_cursor,
    iso,
    to_ms,
)
from agentstore.schemas.logs import LogIn, LogsQuery
from agentstore.stores.mongo import MongoStore

COLLECTION = "logs"

# (keys, unique) per index name; every query.logs filter leads with one of them.
INDEXES: dict[str, tuple[list[tuple[str, int]], bool]] = {
    "agent_ts": ([("agent_id", 1), ("ts", -1), ("_id", -1)], False),
    "task_ts": ([("task_id", 1), ("ts", -1)], False),
    "level_ts": ([("level_no", 1), ("ts", -1)], False),
    "ts": ([("ts", -1), ("_id", -1)], False),
}


def check_body_agent(envelope: Envelope, body_agent: str | None) -> None:
    if body_agent is not None and body_agent != envelope.agent:
        raise InvalidMessage(
            f"body agent_id {body_agent!r} differs from the subject's agent {envelope.agent!r}"
        )


def decode_log(envelope: Envelope) -> dict[str, Any]:
    log = decode_message(envelope.data, LogIn)
    check_body_agent(envelope, log.agent_id)
    doc: dict[str, Any] = {
        "_id": f"{envelope.agent}:{log.id}",
        "agent_id": envelope.agent,
        "id": log.id,
        "ts": to_ms(log.ts or envelope.received),
        "level": log.level,
        "level_no": LEVEL_NUMBERS[log.level],
        "message": log.message,
    }
    if log.task_id is not None:
        doc["task_id"] = log.task_id
    if log.fields:
        doc["fields"] = log.fields
    return doc


class Logs:
    def __init__(self, mongo: MongoStore) -> None:
        self.mongo = mongo

    async def setup(self) -> None:
        await self.mongo.ensure_indexes(COLLECTION, INDEXES)

    async def write(self, docs: Sequence[dict[str, Any]]) -> Mapping[int, str]:
        return await self.mongo.insert_new(COLLECTION, docs)

    async def query(self, ctx: RequestContext, q: LogsQuery) -> dict[str, Any]:
        filter: dict[str, Any] = {}
        agents = ctx.scope(q.agent_ids)
        if agents:
            filter["agent_id"] = agents[0] if len(agents) == 1 else {"$in": agents}
        if q.task_id is not None:
            filter["task_id"] = q.task_id
        if q.level is not None and q.level != "debug":
            filter["level_no"] = {"$gte": LEVEL_NUMBERS[q.level]}
        ts_range: dict[str, Any] = {}
        if q.since is not None:
            ts_range["$gte"] = to_ms(q.since)
        if q.until is not None:
            ts_range["$lt"] = to_ms(q.until)
        if ts_range:
            filter["ts"] = ts_range
        if q.text is not None:
            filter["message"] = {"$regex": re.escape(q.text), "$options": "i"}
        if q.cursor is not None:
            ts_ms, last_id = decode_cursor(q.cursor, 2)
            if not isinstance(ts_ms, int) or not isinstance(last_id, str):
                raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
            at = datetime.fromtimestamp(ts_ms / 1000, UTC)
            filter["$or"] = [{"ts": {"$lt": at}}, {"ts": at, "_id": {"$lt": last_id}}]
        docs = await self.mongo.find(
            COLLECTION, filter, sort=[("ts", -1), ("_id", -1)], limit=q.limit + 1
        )
        page = docs[: q.limit]
        next_cursor = None
        if len(docs) > q.limit:
            last = page[-1]
            next_cursor = encode_cursor(int(last["ts"].timestamp() * 1000), last["_id"])
        return {"items": [log_item(d) for d in page], "next_cursor": next_cursor}


def log_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    item = {
        "id": doc["id"],
        "agent_id": doc["agent_id"],
        "ts": iso(doc["ts"]),
        "level": doc["level"],
        "message": doc["message"],
    }
    if "task_id" in doc:
        item["task_id"] = doc["task_id"]
    if "fields" in doc:
        item["fields"] = doc["fields"]
    return item
