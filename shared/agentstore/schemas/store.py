"""The agent's long-term memory store (v1.8), as LangGraph's `BaseStore` has it: JSON items
under hierarchical namespaces, got, searched (filters, and semantic search by vectors the
agent computes), put with an optional TTL, deleted, and namespaces listed. One request is a
batch of operations answered in order (reads see the store before the batch's puts, as
LangGraph's stores do). Kept by the logs service in MongoDB (`store_items`), per agent.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agentstore.schemas.common import FreeMap, Reply, Strict

MAX_OPS = 1000
MAX_DIMENSIONS = 8192

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Namespace = Annotated[list[Label], msgspec.Meta(max_length=32)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Vector = Annotated[list[float], msgspec.Meta(min_length=1, max_length=MAX_DIMENSIONS)]


class StoreOp(Strict, tag_field="op", kw_only=True):
    """One operation of a batch (`op` names which)."""


class GetItem(StoreOp, tag="get"):
    namespace: Namespace
    key: Key
    refresh_ttl: bool = False


class SearchItems(StoreOp, tag="search"):
    """Items under `namespace_prefix`: those whose value matches `filter_json` (a JSON object:
    a field equal to a value, or `{"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": v}`), in the order
    they were first put, or by similarity to `vector` (cosine, the best of an item's vectors;
    items without vectors after those with)."""

    namespace_prefix: Namespace
    filter_json: Annotated[str, msgspec.Meta(max_length=64 * 1024)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    vector: Vector | None = None
    refresh_ttl: bool = False


class PathVector(Strict, kw_only=True):
    """The embedding of the text at `path` of the value (`$` for the whole value)."""

    path: Annotated[str, msgspec.Meta(max_length=1024)]
    vector: Vector


class PutItem(StoreOp, tag="put"):
    """Store `value` at (namespace, key), or delete it (`value` null). `ttl_minutes`: the item
    expires that long after its last write (or read, with refresh)."""

    namespace: Annotated[list[Label], msgspec.Meta(min_length=1, max_length=32)]
    key: Key
    value: FreeMap | None
    ttl_minutes: Annotated[float, msgspec.Meta(gt=0)] | None = None
    vectors: Annotated[list[PathVector], msgspec.Meta(max_length=1000)] = []


class MatchCondition(Strict, kw_only=True):
    match_type: Literal["prefix", "suffix"]
    path: Annotated[list[Label], msgspec.Meta(max_length=32)]


class ListNamespaces(StoreOp, tag="list_namespaces"):
    """Namespaces holding items, sorted; `*` in a condition's path matches any label;
    `max_depth` truncates them (then de-duplicated)."""

    match_conditions: Annotated[list[MatchCondition], msgspec.Meta(max_length=16)] = []
    max_depth: Annotated[int, msgspec.Meta(ge=1)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 100
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0


Op = GetItem | SearchItems | PutItem | ListNamespaces


class StoreBatch(Strict, kw_only=True):
    ops: Annotated[list[Op], msgspec.Meta(min_length=1, max_length=MAX_OPS)]


class StoreItem(Reply, kw_only=True):
    namespace: list[str]
    key: str
    value: FreeMap
    created_at: str
    updated_at: str
    score: float | None = None


class OpResult(Reply, kw_only=True):
    """A get's `item` (null: none), a search's `items`, a list's `namespaces`; a put: empty."""

    item: StoreItem | None = None
    items: list[StoreItem] | None = None
    namespaces: list[list[str]] | None = None


class StoreResults(Reply, kw_only=True):
    results: list[OpResult]
