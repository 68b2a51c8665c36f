"""`agents.{agent}.rpc.store.batch` → MongoDB `store_items`: an agent's long-term memory as
LangGraph's `BaseStore` keeps it (items under namespaces; filters, vector search, TTL).

Filters and similarity are evaluated here, over the agent's items under the namespace prefix
(an equality-indexed read: FerretDB pushes only equality down), with LangGraph's own
semantics (its in-memory store's comparisons, max-pooled cosine similarity). That is exact
search at one agent's scale: a search reads every item under its prefix, so it stays in
milliseconds to ~10k items, and ~1 s for 10k items of 1536-dimension vectors (pure Python);
past that, narrow the prefix.

Order is the order items were first put (a namespace's first put, then the item's), which an
update keeps, as LangGraph's stores have it. Expired items are invisible at once and deleted
by the sweep (FerretDB has no TTL index).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstore.errors import BadRequest
from agentstore.schemas.common import iso
from agentstore.schemas.store import (
    GetItem,
    ListNamespaces,
    MatchCondition,
    OpResult,
    PutItem,
    SearchItems,
    StoreBatch,
    StoreItem,
    StoreResults,
)
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.logs.documents import Indexes
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.readers import DocumentReader

COLLECTION = "store_items"
NAMESPACES = "store_namespaces"
INDEXES: Indexes = {
    "agent_prefixes": ([("agent_id", 1), ("prefixes", 1)], False),
    "expires": ([("expires_at", 1)], False),
}
SEP = "\x1f"  # joins a namespace's labels (a control character no label holds in practice)
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")


def _joined(labels: Sequence[str]) -> str:
    return SEP.join(labels)


def _id(agent: str, namespace: Sequence[str], key: str) -> str:
    return json.dumps([agent, list(namespace), key])


class StoreItems:
    def __init__(self, mongo: MongoStore, reader: DocumentReader) -> None:
        self.mongo = mongo
        self.reader = reader

    async def batch(self, ctx: RequestContext, q: StoreBatch) -> StoreResults:
        assert ctx.agent is not None  # agent-only: the subject names the agent
        agent = ctx.agent
        now = datetime.now(UTC)
        results: list[OpResult] = []
        puts: dict[tuple[tuple[str, ...], str], PutItem] = {}
        refresh: dict[str, float] = {}  # _id -> ttl minutes, items read with refresh
        for op in q.ops:
            if isinstance(op, GetItem):
                found = await self.reader.find_by_ids(COLLECTION, [_id(agent, op.namespace, op.key)])
                doc = next(iter(found.values()), None)
                if doc is not None and _expired(doc, now):
                    doc = None
                if doc is not None and op.refresh_ttl and doc.get("ttl_minutes"):
                    refresh[doc["_id"]] = doc["ttl_minutes"]
                results.append(OpResult(item=_item(doc) if doc else None))
            elif isinstance(op, SearchItems):
                docs = await self._search(agent, op, now)
                if op.refresh_ttl:
                    refresh.update({d["_id"]: d["ttl_minutes"] for d in docs if d.get("ttl_minutes")})
                results.append(OpResult(items=[_item(d, d.get("_score")) for d in docs]))
            elif isinstance(op, ListNamespaces):
                results.append(OpResult(namespaces=await self._namespaces(agent, op, now)))
            else:
                puts[(tuple(op.namespace), op.key)] = op  # the last put of a key in a batch wins
                results.append(OpResult())
        if refresh:
            await self.mongo.upsert_many(
                COLLECTION,
                [
                    ({"_id": i}, {"$set": {"expires_at": now + timedelta(minutes=m)}})
                    for i, m in refresh.items()
                ],
            )
        if puts:
            await self._put(agent, list(puts.values()), now)
        return StoreResults(results=results)

    async def _search(self, agent: str, op: SearchItems, now: datetime) -> list[Document]:
        where: Document = {"agent_id": agent}
        if op.namespace_prefix:
            # `$all`, not equality: FerretSqlReader writes a scalar equality as `=`, which
            # (unlike MongoDB) does not look inside arrays; `$all` is `@>` there.
            where["prefixes"] = {"$all": [_joined(op.namespace_prefix)]}
        docs = [d for d in await self.reader.find(COLLECTION, where) if not _expired(d, now)]
        if op.filter_json is not None:
            try:
                conditions = json.loads(op.filter_json)
            except ValueError as exc:
                raise BadRequest(f"filter_json is not JSON: {exc}") from None
            if not isinstance(conditions, dict):
                raise BadRequest("filter_json must be a JSON object")
            _check_filter(conditions)
            docs = [d for d in docs if all(_compare(d["value"].get(k), v) for k, v in conditions.items())]
        docs.sort(key=lambda d: (d["ns_seq"], d["seq"]))
        if op.vector is None:
            return docs[op.offset : op.offset + op.limit]
        return _by_similarity(docs, op.vector, op.offset, op.limit)

    async def _namespaces(self, agent: str, op: ListNamespaces, now: datetime) -> list[list[str]]:
        docs = await self.reader.find(COLLECTION, {"agent_id": agent})
        spaces = {tuple(d["namespace"]) for d in docs if not _expired(d, now)}
        spaces = {ns for ns in spaces if all(_matches(c, ns) for c in op.match_conditions)}
        if op.max_depth is not None:
            spaces = {ns[: op.max_depth] for ns in spaces}
        return [list(ns) for ns in sorted(spaces)][op.offset : op.offset + op.limit]

    async def _put(self, agent: str, puts: Sequence[PutItem], now: datetime) -> None:
        # A namespace's order is that of its first write (a put or a delete, as LangGraph's
        # in-memory store has it): recorded once, never moved.
        stamp = time.time_ns()
        spaces = list(dict.fromkeys(tuple(p.namespace) for p in puts))
        ids = [json.dumps([agent, list(ns)]) for ns in spaces]
        await self.mongo.insert_new(
            NAMESPACES, [{"_id": i, "agent_id": agent, "seq": stamp + n} for n, i in enumerate(ids)]
        )
        first = await self.reader.find_by_ids(NAMESPACES, ids)
        ns_seq = {ns: first[i]["seq"] for ns, i in zip(spaces, ids, strict=True)}
        deletes = [_id(agent, p.namespace, p.key) for p in puts if p.value is None]
        if deletes:
            await self.mongo.delete_many(COLLECTION, {"_id": {"$in": deletes}})
        writes = [p for p in puts if p.value is not None]
        if not writes:
            return
        updates = []
        for i, p in enumerate(writes):
            fields: Document = {
                "value": p.value, "updated_at": now,
                "expires_at": now + timedelta(minutes=p.ttl_minutes) if p.ttl_minutes else None,
                "ttl_minutes": p.ttl_minutes,
                "vectors": [{"path": v.path, "vector": v.vector} for v in p.vectors],
            }  # fmt: skip
            once: Document = {
                "agent_id": agent, "namespace": list(p.namespace), "key": p.key,
                "prefixes": [_joined(p.namespace[:n]) for n in range(1, len(p.namespace) + 1)],
                "created_at": now, "seq": stamp + i, "ns_seq": ns_seq[tuple(p.namespace)],
            }  # fmt: skip
            updates.append(({"_id": _id(agent, p.namespace, p.key)}, {"$set": fields, "$setOnInsert": once}))
        refused = await self.mongo.upsert_many(COLLECTION, updates)
        if refused:
            index, reason = next(iter(refused.items()))
            raise BadRequest(f"put of {writes[index].key!r} refused by the store: {reason}")


async def sweep_expired(mongo: MongoStore) -> int:
    """Deletes expired items (reads already skip them); how many."""
    return await mongo.delete_many(COLLECTION, {"expires_at": {"$lt": datetime.now(UTC)}})


def sweeper(mongo: MongoStore, every_seconds: float) -> Periodic:
    async def sweep() -> dict[str, int]:
        gone = await sweep_expired(mongo)
        return {COLLECTION: gone} if gone else {}

    return Periodic("store TTL sweep", every_seconds, sweep)


def _expired(doc: Document, now: datetime) -> bool:
    expires = doc.get("expires_at")
    if expires is None:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return bool(expires <= now)


def _item(doc: Document, score: float | None = None) -> StoreItem:
    return StoreItem(
        namespace=list(doc["namespace"]), key=doc["key"], value=doc["value"],
        created_at=iso(doc["created_at"]), updated_at=iso(doc["updated_at"]), score=score,
    )  # fmt: skip


def _check_filter(conditions: dict[str, Any]) -> None:
    for value in conditions.values():
        if isinstance(value, dict) and any(k.startswith("$") for k in value):
            unknown = [k for k in value if k not in OPERATORS]
            if unknown:
                raise BadRequest(f"filter operator {unknown[0]!r} is not one of {', '.join(OPERATORS)}")


def _compare(item_value: Any, filter_value: Any) -> bool:
    """LangGraph's filter semantics (its in-memory store's `_compare_values`)."""
    if isinstance(filter_value, dict):
        if any(k.startswith("$") for k in filter_value):
            return all(_operator(item_value, k, v) for k, v in filter_value.items())
        if not isinstance(item_value, dict):
            return False
        return all(_compare(item_value.get(k), v) for k, v in filter_value.items())
    if isinstance(filter_value, list):
        return (
            isinstance(item_value, list)
            and len(item_value) == len(filter_value)
            and all(_compare(i, f) for i, f in zip(item_value, filter_value, strict=False))
        )
    return bool(item_value == filter_value)


def _operator(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    try:
        a, b = float(value), float(operand)
    except (TypeError, ValueError):
        return False  # not comparable as numbers: no match (LangGraph's raises; a filter should not)
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def _matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = condition.path
    if len(namespace) < len(path):
        return False
    pairs = (
        zip(namespace, path, strict=False)
        if condition.match_type == "prefix"
        else zip(reversed(namespace), reversed(path), strict=False)
    )
    return all(p == "*" or n == p for n, p in pairs)


def _cosine(x: Sequence[float], y: Sequence[float]) -> float:
    dot = math.fsum(a * b for a, b in zip(x, y, strict=False))
    nx = math.sqrt(math.fsum(a * a for a in x))
    ny = math.sqrt(math.fsum(b * b for b in y))
    return dot / (nx * ny) if nx > 0 and ny > 0 else 0.0


def _by_similarity(docs: list[Document], query: Sequence[float], offset: int, limit: int) -> list[Document]:
    """Max-pooled cosine similarity, best first; items without vectors fill what is left (as
    LangGraph's in-memory store does)."""
    flat: list[tuple[float, Document]] = []
    scoreless: list[Document] = []
    for d in docs:
        vectors = d.get("vectors") or []
        flat.extend((_cosine(query, v["vector"]), d) for v in vectors)
        if not vectors:
            scoreless.append(d)
    flat.sort(key=lambda x: x[0], reverse=True)
    seen: set[str] = set()
    kept: list[Document] = []
    for score, d in flat:
        if d["_id"] in seen:
            continue
        index = len(seen)
        seen.add(d["_id"])
        if index >= offset + limit:
            break
        if index < offset:
            continue
        kept.append({**d, "_score": score})
    if scoreless and len(kept) < limit:
        kept.extend(scoreless[: limit - len(kept)])
    return kept
