"""How the logs service maps wire messages to documents and back, and pages through them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from agentstore.errors import BadRequest, StoreUnavailable
from agentstore.schemas.common import decode_cursor, encode_cursor, from_ms, iso, ms_of, to_ms
from agentstore_server.bus.ingest import Envelope
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

# Fields the store keeps for itself; never part of a reply or an export.
INTERNAL = frozenset({"_id", "level_no", "meta_ts"})

Indexes = dict[str, tuple[list[tuple[str, int]], bool]]


def to_doc(envelope: Envelope, kind: type[msgspec.Struct]) -> Document:
    """`{_id: "{agent}:{id}", agent_id, ...fields, ts}`; `ts` defaults to the JetStream time."""
    return make_doc(envelope.agent, envelope.decode(kind), envelope.received)


def make_doc(agent: str, message: msgspec.Struct, default_ts: datetime) -> Document:
    fields = msgspec.structs.asdict(message)
    fields.pop("agent_id", None)
    doc: Document = {"_id": f"{agent}:{fields['id']}", "agent_id": agent}
    doc.update((k, v) for k, v in fields.items() if v is not None)
    doc["ts"] = to_ms(fields.get("ts") or default_ts)
    return doc


def to_item(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as the wire shows it (timestamps as RFC 3339 UTC)."""
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in doc.items() if k not in INTERNAL}


def agents_filter(agents: Sequence[str] | None) -> Document:
    if not agents:
        return {}
    # A single agent is an equality, which FerretDB pushes down to its backend.
    return {"agent_id": agents[0] if len(agents) == 1 else {"$in": list(agents)}}


def equals(**fields: Any) -> Document:
    return {k: v for k, v in fields.items() if v is not None}


def time_range(field: str, since: datetime | None, until: datetime | None) -> Document:
    bounds: Document = {}
    if since is not None:
        bounds["$gte"] = to_ms(since)
    if until is not None:
        bounds["$lt"] = to_ms(until)
    return {field: bounds} if bounds else {}


def newer_or_same(doc: Document) -> Document:
    """Filter that matches the stored document only if `doc` is at least as new.

    Used with upserts: a stale write misses, collides on `_id` and is dropped.
    Ties on `ts` are broken by `id`, so every replica converges on one winner.
    """
    return {
        "_id": doc["_id"],
        "$or": [{"ts": {"$lt": doc["ts"]}}, {"ts": doc["ts"], "id": {"$lte": doc["id"]}}],
    }


Update = tuple[Document, Document]


async def converge(
    mongo: MongoStore,
    reader: DocumentReader,
    collection: str,
    updates: Sequence[Update],
    applied: Callable[[Document | None, int], bool],
    rounds: int = 5,
) -> dict[int, str]:
    """Upsert, then read back and re-apply any update a concurrent writer overwrote.

    FerretDB 1.x applies an update as read, modify, write without locking the
    document, so two workers updating one document can lose the newer write.
    The guards make every re-apply idempotent; `applied(stored, i)` says whether
    update i is reflected. Real MongoDB never needs the second round.
    """
    # One converge per collection at a time in this process: the ingest workers' updates
    # of one document would otherwise interleave as above, and a write landing after the
    # other's read-back would stay lost (replicas in other processes keep FerretDB's race;
    # README "Known limits").
    async with mongo.lock(f"converge:{collection}"):
        return await _converge(mongo, reader, collection, updates, applied, rounds)


async def _converge(
    mongo: MongoStore,
    reader: DocumentReader,
    collection: str,
    updates: Sequence[Update],
    applied: Callable[[Document | None, int], bool],
    rounds: int,
) -> dict[int, str]:
    refused = await mongo.upsert_many(collection, updates)
    pending = [i for i in range(len(updates)) if i not in refused]
    for _ in range(rounds):
        stored = await reader.find_by_ids(collection, [updates[i][0]["_id"] for i in pending])
        pending = [i for i in pending if not applied(stored.get(updates[i][0]["_id"]), i)]
        if not pending:
            return refused
        again = await mongo.upsert_many(collection, [updates[i] for i in pending])
        refused.update({pending[j]: reason for j, reason in again.items()})
        pending = [i for j, i in enumerate(pending) if j not in again]
    raise StoreUnavailable(f"concurrent writers kept overwriting {collection} documents; will retry")


async def upsert_newest(
    mongo: MongoStore, reader: DocumentReader, collection: str, docs: Sequence[Document]
) -> dict[int, str]:
    """Replace each document by `_id` unless a newer one (by ts, then id) is stored."""
    updates = [(newer_or_same(d), {k: v for k, v in d.items() if k != "_id"}) for d in docs]

    def applied(stored: Document | None, i: int) -> bool:
        doc = docs[i]
        return stored is not None and (stored["ts"], stored["id"]) >= (doc["ts"], doc["id"])

    return await converge(mongo, reader, collection, updates, applied)


@dataclass(frozen=True)
class Order:
    """Keyset order of a list: by `field` then `_id`, both in one direction."""

    field: str
    descending: bool

    @property
    def sort(self) -> list[tuple[str, int]]:
        direction = -1 if self.descending else 1
        return [(self.field, direction), ("_id", direction)]


async def page(
    reader: DocumentReader,
    collection: str,
    filter: Document,
    order: Order,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of `{"items", "next_cursor"}`.

    The cursor is the (field, _id) of the last item; the next page starts
    strictly after it, so concurrent inserts never make a page skip or repeat.
    """
    if cursor is not None:
        at_ms, last_id = decode_cursor(cursor, 2)
        if not isinstance(at_ms, int) or not isinstance(last_id, str):
            raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
        at = from_ms(at_ms)
        op = "$lt" if order.descending else "$gt"
        filter = {
            **filter,
            "$or": [{order.field: {op: at}}, {order.field: at, "_id": {op: last_id}}],
        }
    docs = await reader.find(collection, filter, sort=order.sort, limit=limit + 1)
    items = docs[:limit]
    next_cursor = None
    if len(docs) > limit:
        last = items[-1]
        next_cursor = encode_cursor(ms_of(last[order.field]), last["_id"])
    return {"items": [to_item(d) for d in items], "next_cursor": next_cursor}
