"""The agent's long-term memory store (v1.8), as LangGraph's `BaseStore` has it: JSON items
under hierarchical namespaces, got, searched (filters, and semantic search by vectors the
agent computes), put with an optional TTL, deleted, and namespaces listed. One request is a
batch of operations answered in order (reads see the store before the batch's puts, as
LangGraph's stores do). Kept by the logs service in PostgreSQL (v1.9: items, pgvector HNSW
indexes per vector size, a full-text index), per agent.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agentstore.schemas.common import AgentId, FreeMap, Reply, Strict

MAX_OPS = 1000
MAX_DIMENSIONS = 4000  # pgvector's HNSW limit (halfvec); v1.8 took 8192, never indexable

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
    items without a vector of that size after those with), or (v1.9) those matching `text`
    by full-text search, best first; `vector` and `text` together: both rankings fused by
    reciprocal rank fusion. `exact`: an exact scan instead of the HNSW index (slower)."""

    namespace_prefix: Namespace
    filter_json: Annotated[str, msgspec.Meta(max_length=64 * 1024)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    vector: Vector | None = None
    refresh_ttl: bool = False
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    exact: bool = False


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


class PutVectors(StoreOp, tag="vectors"):
    """(v1.9) Replace an item's vectors, if it is still the version of `updated_at` (what a
    re-index read): its value, order and TTL are left. The result's `updated` says whether
    it was."""

    namespace: Annotated[list[Label], msgspec.Meta(min_length=1, max_length=32)]
    key: Key
    updated_at: Annotated[str, msgspec.Meta(max_length=64)]
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


Op = GetItem | SearchItems | PutItem | ListNamespaces | PutVectors


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
    """A get's `item` (null: none), a search's `items`, a list's `namespaces`, a `vectors`
    op's `updated`; a put: empty."""

    item: StoreItem | None = None
    items: list[StoreItem] | None = None
    namespaces: list[list[str]] | None = None
    updated: bool | None = None


class StoreResults(Reply, kw_only=True):
    results: list[OpResult]


class StoreQuery(Strict, kw_only=True):
    """`query.store` (v1.9): an evaluator's search of one agent's memory store, as an
    agent's `search` op (by `text`, by `vector` the evaluator embedded, both, or neither)."""

    agent_id: AgentId
    namespace_prefix: Namespace = []
    filter_json: Annotated[str, msgspec.Meta(max_length=64 * 1024)] | None = None
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    vector: Vector | None = None
    limit: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    exact: bool = False


class StoreFound(Reply, kw_only=True):
    items: list[StoreItem]
