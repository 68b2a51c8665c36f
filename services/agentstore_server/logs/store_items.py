"""`agents.{agent}.rpc.store.batch` → PostgreSQL: an agent's long-term memory as LangGraph's
`BaseStore` keeps it (items under namespaces; filters, semantic, full-text and hybrid
search, TTL), indexed for a fleet's scale.

An item, its vectors (pgvector, one HNSW index per vector size in use) and its text index
(`tsvector`, GIN) are written in one transaction: a crash between them leaves neither, and a
reader never sees an item without its vectors. Searches:

- a `vector`: nearest items by cosine similarity (the best of an item's vectors), through
  the HNSW index with pgvector's iterative scan, so namespace and value filters still fill
  the page. A namespace of fewer than `EXACT_BELOW` vectors is scanned exactly instead
  (faster than the index there, and exact), and so is one whose walk ended before the page
  filled; `exact` always scans (for tests and recall checks);
- a `text`: PostgreSQL full-text search (`websearch_to_tsquery`, English), best first;
- both: reciprocal rank fusion of the two rankings (k = 60);
- neither: the items in the order they were first put (LangGraph's in-memory store's).

Filters have LangGraph's semantics (its in-memory store's comparisons) and are evaluated in
PostgreSQL. Expired items are invisible at once and deleted by the sweep.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentstore.errors import BadRequest, ConfigError, StoreMisconfigured
from agentstore.schemas.common import iso
from agentstore.schemas.store import (
    GetItem,
    ListNamespaces,
    MatchCondition,
    OpResult,
    PutItem,
    PutVectors,
    SearchItems,
    StoreBatch,
    StoreFound,
    StoreItem,
    StoreQuery,
    StoreResults,
)
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.stores.postgres import Executor, PostgresStore, Query, Record, load_queries

Q = load_queries(Path(__file__).with_name("store.sql"))
MIGRATIONS = Path(__file__).with_name("migrations")
SEP = "\x1f"  # ends each label of a namespace's path (labels may not hold it)
OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.; what most hybrid searches use)
# pgvector's HNSW limits: `vector` up to 2,000 dimensions, `halfvec` up to 4,000. Every index
# is built over half precision: half the size of a `vector` index (112 MB against 195 MB at
# 100k vectors of 384 dims), so a search reads half the pages and answers in ~2/3 of the time
# at the same recall; the page found is then scored in full precision, so the scores a caller
# sees (and their order) are exact.
HALFVEC_MAX_DIMS = 4000
# The graph's shape: pgvector's defaults (m 16, ef_construction 64) leave recall@10 at
# 0.944-0.952 under a namespace filter whatever ef_search is (the graph, not the search, bounds
# it). Fewer links and a wider build search (m 12, ef_construction 128) raise it to 0.968 for
# about the same build cost (65 s against 60 s for 100k vectors of 384 dims, one core) and a
# faster search (p50 2.2 ms against 3.0): measured on bench.memory_search's data.
HNSW_M = 12
HNSW_EF_CONSTRUCTION = 128
INDEX_VERSION = "half"  # in the index's name: an index of an older build is replaced at start
# The settings of the pool that walks the index: pgvector's default ef_search (40) with its
# iterative scan, so the index keeps walking until namespace and value filters have filled
# the page. `enable_sort` off makes the index the plan: PostgreSQL's own choice between it and
# sorting the namespace rests on statistics that lag a namespace just filled (a new agent's:
# it sorted 2,000 vectors in 14 ms where the index answers in 2 ms, measured) and on generic
# plans after five runs of the statement. Whether to sort is decided here, by size
# (`EXACT_BELOW`), not by estimate.
NEAREST_SETTINGS = {"hnsw.ef_search": "40", "hnsw.iterative_scan": "relaxed_order", "enable_sort": "off"}
# Below this many vectors in the searched namespace, an exact scan (~3 us a vector through the
# namespace's btree) costs less than walking the index (~2 ms at 100k vectors of 384 dims).
EXACT_BELOW = 500
TEXT_CONFIG = "english"


def joined(namespace: Sequence[str]) -> str:
    return "".join(f"{label}{SEP}" for label in namespace)


def labels(path: str) -> list[str]:
    return path.split(SEP)[:-1]


def prefix_range(prefix: Sequence[str]) -> tuple[str, str]:
    """The btree range of paths under `prefix` (C collation): [p, p with its last U+001F
    raised to U+0020)."""
    if not prefix:
        return "", "\U0010ffff"
    p = joined(prefix)
    return p, p[:-1] + chr(ord(SEP) + 1)


def index_type(dims: int) -> str:
    """The cast an index of `dims`-sized vectors is built on (and a search must name)."""
    if dims <= HALFVEC_MAX_DIMS:
        return f"halfvec({int(dims)})"
    raise BadRequest(
        f"vectors of {dims} dimensions cannot be indexed (pgvector's HNSW takes at most "
        f"{HALFVEC_MAX_DIMS}): use a smaller embedding model or reduce its dimensions"
    )


def vector_text(vector: Sequence[float]) -> str:
    for x in vector:
        if not math.isfinite(x):
            raise BadRequest("a vector holds NaN or infinity: every component must be a finite number")
    return "[" + ",".join(map(repr, vector)) + "]"


def _check_namespace(namespace: Sequence[str]) -> None:
    if any(SEP in label for label in namespace):
        raise BadRequest("a namespace label may not hold the control character U+001F")


@dataclass
class Sql:
    """One composed statement: fixed fragments and `$n` placeholders, never values."""

    params: list[Any] = field(default_factory=list)

    def p(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{cast}"


def filter_sql(sql: Sql, conditions: dict[str, Any], column: str = "i.value") -> list[str]:
    """LangGraph's filter (its in-memory store's `_compare_values`) as SQL conditions."""
    out: list[str] = []
    for key, wanted in conditions.items():
        out.append(_compare_sql(sql, column, [key], wanted))
    return out


def _at(sql: Sql, column: str, path: list[str]) -> str:
    return f"({column} #> {sql.p(path, 'text[]')})"


def _equal_sql(sql: Sql, column: str, path: list[str], wanted: Any) -> str:
    here = _at(sql, column, path)
    if wanted is None:  # a missing key is None too
        return f"({here} IS NULL OR {here} = 'null'::jsonb)"
    return f"({here} = {sql.p(json.dumps(wanted), 'jsonb')})"


def _compare_sql(sql: Sql, column: str, path: list[str], wanted: Any) -> str:
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            parts = [_operator_sql(sql, column, path, op, operand) for op, operand in wanted.items()]
            return "(" + " AND ".join(parts or ["TRUE"]) + ")"
        # A nested filter matches only inside an object.
        parts = [f"jsonb_typeof({_at(sql, column, path)}) = 'object'"]
        parts += [_compare_sql(sql, column, [*path, k], v) for k, v in wanted.items()]
        return "(" + " AND ".join(parts) + ")"
    if isinstance(wanted, list) and any(isinstance(v, dict | list) for v in wanted):
        # Element-wise with the same rules; lists of scalars are plain JSON equality.
        parts = [f"jsonb_typeof({_at(sql, column, path)}) = 'array'",
                 f"jsonb_array_length({_at(sql, column, path)}) = {len(wanted)}"]  # fmt: skip
        parts += [_compare_sql(sql, column, [*path, str(n)], v) for n, v in enumerate(wanted)]
        return "(" + " AND ".join(parts) + ")"
    return _equal_sql(sql, column, path, wanted)


def _operator_sql(sql: Sql, column: str, path: list[str], op: str, operand: Any) -> str:
    if op == "$eq":
        return _equal_sql(sql, column, path, operand)
    if op == "$ne":
        return f"NOT {_equal_sql(sql, column, path, operand)}"
    if op not in OPERATORS:
        raise BadRequest(f"filter operator {op!r} is not one of {', '.join(OPERATORS)}")
    try:
        number = float(operand)
    except (TypeError, ValueError):
        return "FALSE"  # not comparable as numbers: no match (LangGraph's raises; a filter should not)
    if not math.isfinite(number):
        return "FALSE"
    sign = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
    return f"(store_number({_at(sql, column, path)}) {sign} {sql.p(number, 'float8')})"


async def insert_vectors(tx: Executor, agent: str, items: Sequence[tuple[str, str, Sequence[Any]]]) -> None:
    rows = [(path, key, v.path, len(v.vector), vector_text(v.vector)) for path, key, vs in items for v in vs]
    if rows:
        await tx.execute(
            Q["insert_vectors"], agent_id=agent, paths=[r[0] for r in rows], keys=[r[1] for r in rows],
            vector_paths=[r[2] for r in rows], dims=[r[3] for r in rows], embeddings=[r[4] for r in rows],
        )  # fmt: skip


def _ms(now: datetime) -> datetime:
    """Timestamps to the contract's millisecond, so an item's `updated_at` read back names
    exactly the version stored (a re-index writes only where it is unchanged)."""
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class StoreItems:
    def __init__(self, pg: PostgresStore, nearest: PostgresStore | None = None) -> None:
        self.pg = pg
        # The pool approximate searches run on (`NEAREST_SETTINGS`); `pg` when none is given.
        self.nearest = nearest or pg
        self._dims: set[int] = set()
        # One build at a time from this process: concurrent first puts of a new size would
        # otherwise start the same build together.
        self._indexing = asyncio.Lock()

    async def setup(self) -> None:
        """Every vector size in use has its index (a restored backup brings rows, not
        indexes)."""
        for row in await self.pg.run.fetch(Q["known_dims"]):
            await self._index_dims(row["dims"])

    async def _index_dims(self, dims: int) -> None:
        if dims in self._dims:
            return
        async with self._indexing:
            if dims not in self._dims:
                await self._build_index(dims)

    async def _build_index(self, dims: int) -> None:
        cast = index_type(dims)
        name = f"store_vectors_hnsw_{INDEX_VERSION}_{int(dims)}"
        # A concurrent build that was interrupted leaves an invalid index of that name, which
        # IF NOT EXISTS would keep for ever: drop it and build again.
        found = await self.pg.run.fetchrow(Q["index_valid"], name=name)
        if found is not None and not found["valid"] and not found["building"]:
            await self.pg.run.execute(Query("drop_index", f"DROP INDEX CONCURRENTLY IF EXISTS {name}", ()))
        # DDL takes no parameters; `dims` is an int checked by index_type. CONCURRENTLY: a
        # new vector size never blocks the puts and searches of the others.
        statement = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON store_vectors "
            f"USING hnsw ((embedding::{cast}) halfvec_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE dims = {int(dims)}"
        )
        await self.pg.run.execute(Query("index_dims", statement, ()))
        # The full-precision index of an older release, replaced by the one above.
        older = f"DROP INDEX CONCURRENTLY IF EXISTS store_vectors_hnsw_{int(dims)}"
        await self.pg.run.execute(Query("drop_older_index", older, ()))
        await self.pg.run.execute(Q["record_dims"], dims=dims)
        self._dims.add(dims)

    async def batch(self, ctx: RequestContext, q: StoreBatch) -> StoreResults:
        assert ctx.agent is not None  # agent-only: the subject names the agent
        return await self.answer(ctx.agent, q)

    async def query(self, ctx: RequestContext, q: StoreQuery) -> StoreFound:
        """`query.store`: an evaluator's search of one agent's store (no TTL refresh: a look
        from outside does not keep an agent's memories alive)."""
        op = SearchItems(
            namespace_prefix=q.namespace_prefix, filter_json=q.filter_json, limit=q.limit, offset=q.offset,
            vector=q.vector, text=q.text, exact=q.exact,
        )  # fmt: skip
        _check_namespace(op.namespace_prefix)
        found = await self._search(q.agent_id, op, _ms(datetime.now(UTC)))
        return StoreFound(items=[_item(r, score) for r, score in found])

    async def answer(self, agent: str, q: StoreBatch) -> StoreResults:
        now = _ms(datetime.now(UTC))
        results: list[OpResult] = []
        puts: dict[tuple[tuple[str, ...], str], PutItem] = {}
        revectors: list[PutVectors] = []
        refresh: list[tuple[str, str]] = []  # items read with refresh
        for op in q.ops:
            if isinstance(op, GetItem):
                _check_namespace(op.namespace)
                rows = await self.pg.run.fetch(
                    Q["get_items"], agent_id=agent, paths=[joined(op.namespace)], keys=[op.key], now=now
                )
                row = rows[0] if rows else None
                if row is not None and op.refresh_ttl and row["ttl_minutes"]:
                    refresh.append((row["path"], row["key"]))
                results.append(OpResult(item=_item(row) if row is not None else None))
            elif isinstance(op, SearchItems):
                _check_namespace(op.namespace_prefix)
                found = await self._search(agent, op, now)
                if op.refresh_ttl:
                    refresh += [(r["path"], r["key"]) for r, _ in found if r["ttl_minutes"]]
                results.append(OpResult(items=[_item(r, score) for r, score in found]))
            elif isinstance(op, ListNamespaces):
                results.append(OpResult(namespaces=await self._namespaces(agent, op, now)))
            elif isinstance(op, PutVectors):
                _check_namespace(op.namespace)
                revectors.append(op)
                results.append(OpResult())
            else:
                _check_namespace(op.namespace)
                puts[(tuple(op.namespace), op.key)] = op  # the last put of a key in a batch wins
                results.append(OpResult())
        written: list[PutItem | PutVectors] = [*puts.values(), *revectors]
        for dims in {len(v.vector) for p in written for v in p.vectors}:
            await self._index_dims(dims)
        if refresh or puts or revectors:
            async with self.pg.transaction() as tx:
                if refresh:
                    await tx.execute(
                        Q["refresh_ttl"], agent_id=agent, paths=[p for p, _ in refresh],
                        keys=[k for _, k in refresh], now=now,
                    )  # fmt: skip
                if puts:
                    await self._put(tx, agent, list(puts.values()), now)
                if revectors:
                    await self._revector(tx, agent, revectors, results, q)
        return StoreResults(results=results)

    # -- writes ------------------------------------------------------------------------
    async def _put(self, tx: Executor, agent: str, puts: Sequence[PutItem], now: datetime) -> None:
        stamp = time.time_ns()
        spaces = list(dict.fromkeys(joined(p.namespace) for p in puts))
        await tx.execute(Q["add_namespaces"], agent_id=agent, paths=spaces, stamp=stamp)
        ns_seq = {
            r["path"]: r["seq"] for r in await tx.fetch(Q["namespace_seqs"], agent_id=agent, paths=spaces)
        }
        deletes = [p for p in puts if p.value is None]
        if deletes:
            await tx.execute(Q["delete_items"], agent_id=agent, paths=[joined(p.namespace) for p in deletes],
                             keys=[p.key for p in deletes])  # fmt: skip
        writes = [p for p in puts if p.value is not None]
        if not writes:
            return
        paths = [joined(p.namespace) for p in writes]
        keys = [p.key for p in writes]
        await tx.execute(
            Q["upsert_items"], agent_id=agent, paths=paths, keys=keys,
            vals=[json.dumps(p.value, ensure_ascii=False) for p in writes],
            ttls=[p.ttl_minutes for p in writes], ns_seqs=[ns_seq[x] for x in paths], now=now, stamp=stamp,
        )  # fmt: skip
        # The item row first, then its vectors, in the same transaction (tested by killing
        # the service between the two).
        await tx.execute(Q["delete_vectors"], agent_id=agent, paths=paths, keys=keys)
        await insert_vectors(tx, agent, [(joined(p.namespace), p.key, p.vectors) for p in writes])

    async def _revector(self, tx: Executor, agent: str, ops: Sequence[PutVectors], results: list[OpResult],
                        q: StoreBatch) -> None:  # fmt: skip
        """A re-index's new vectors, for the items still at the version it embedded."""
        try:
            stamps = [datetime.fromisoformat(op.updated_at.replace("Z", "+00:00")) for op in ops]
        except ValueError as exc:
            raise BadRequest(f"updated_at is not an RFC 3339 time: {exc}") from None
        current = await tx.fetch(
            Q["set_vectors_if_unchanged"], agent_id=agent, paths=[joined(op.namespace) for op in ops],
            keys=[op.key for op in ops], updated=stamps,
        )  # fmt: skip
        still = {(r["path"], r["key"]) for r in current}
        mine = [op for op in ops if (joined(op.namespace), op.key) in still]
        await tx.execute(Q["delete_vectors"], agent_id=agent, paths=[joined(op.namespace) for op in mine],
                         keys=[op.key for op in mine])  # fmt: skip
        await insert_vectors(tx, agent, [(joined(op.namespace), op.key, op.vectors) for op in mine])
        indexes = [n for n, op in enumerate(q.ops) if isinstance(op, PutVectors)]
        for n, op in zip(indexes, ops, strict=True):
            results[n] = OpResult(updated=(joined(op.namespace), op.key) in still)

    # -- reads ---------------------------------------------------------------------------
    def _where(self, sql: Sql, agent: str, op: SearchItems, now: datetime, alias: str = "i") -> list[str]:
        low, high = prefix_range(op.namespace_prefix)
        where = [f"{alias}.agent_id = {sql.p(agent, 'text')}"]
        if op.namespace_prefix:
            where += [f"{alias}.path >= {sql.p(low, 'text')}", f"{alias}.path < {sql.p(high, 'text')}"]
        return where

    def _item_conditions(self, sql: Sql, op: SearchItems, now: datetime) -> list[str]:
        out = [f"(i.expires_at IS NULL OR i.expires_at > {sql.p(now, 'timestamptz')})"]
        if op.filter_json is not None:
            try:
                conditions = json.loads(op.filter_json)
            except ValueError as exc:
                raise BadRequest(f"filter_json is not JSON: {exc}") from None
            if not isinstance(conditions, dict):
                raise BadRequest("filter_json must be a JSON object")
            out += filter_sql(sql, conditions)
        return out

    async def _search(self, agent: str, op: SearchItems, now: datetime) -> list[tuple[Record, float | None]]:
        if op.vector is not None and op.text:
            return await self._hybrid(agent, op, now)
        if op.vector is not None:
            return await self._nearest(agent, op, now)
        if op.text:
            found = await self._text(agent, op, now, op.offset + op.limit)
            return found[op.offset :]
        sql = Sql()
        where = self._where(sql, agent, op, now) + self._item_conditions(sql, op, now)
        statement = (
            f"SELECT i.path, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes FROM store_items i "
            f"WHERE {' AND '.join(where)} ORDER BY i.ns_seq, i.seq "
            f"LIMIT {sql.p(op.limit, 'int')} OFFSET {sql.p(op.offset, 'int')}"
        )
        rows = await self._fetch(statement, sql.params)
        return [(r, None) for r in rows]

    async def _fetch(
        self, statement: str, params: list[Any], pg: PostgresStore | None = None
    ) -> list[Record]:
        async with (pg or self.pg).connection() as conn:
            return list(await conn.fetch(statement, *params))

    async def _vector_rows(self, agent: str, op: SearchItems, now: datetime, limit: int) -> list[Record]:
        """The `limit` nearest vectors (with their items' filters applied), nearest first.
        Through the index unless the namespace holds fewer than `EXACT_BELOW` vectors of this
        size; exactly when the index's walk ended before the page filled (a filter matching
        few items of a large namespace), so a search never answers short of what is there."""
        assert op.vector is not None
        if not op.exact:
            rows = await self._fetch(*self._vector_statement(agent, op, now, limit, approximate=True),
                                     pg=self.nearest)  # fmt: skip
            if len(rows) >= limit:
                return rows
        return await self._fetch(*self._vector_statement(agent, op, now, limit, approximate=False))

    def _vector_statement(
        self, agent: str, op: SearchItems, now: datetime, limit: int, *, approximate: bool
    ) -> tuple[str, list[Any]]:
        assert op.vector is not None
        dims = len(op.vector)
        cast = index_type(dims)
        sql = Sql()
        query = sql.p(vector_text(op.vector), f"vector({dims})")
        where = [*self._where(sql, agent, op, now, "v"), f"v.dims = {dims}"]
        where += self._item_conditions(sql, op, now)
        full = f"v.embedding::vector({dims}) <=> {query}"
        if approximate:
            # ORDER BY the operator itself, ascending, over the partial index's expression
            # (half precision): what pgvector needs to walk the HNSW index (relaxed iterative
            # scan: filters keep it going until the LIMIT is filled). The guard, evaluated
            # once before the walk, leaves a small namespace to the exact scan: no rows.
            order = f"v.embedding::{cast} <=> {query}::{cast}"
            size = [*self._where(sql, agent, op, now, "s"), f"s.dims = {dims}"]
            where.append(
                f"(SELECT count(*) FROM (SELECT 1 FROM store_vectors s WHERE {' AND '.join(size)} "
                f"LIMIT {EXACT_BELOW}) few) >= {EXACT_BELOW}"
            )
        else:
            # Full precision orders every vector of the namespace (through its btree: the
            # HNSW index, on the half-precision expression, cannot serve this ORDER BY).
            order = full
        # What was found is scored in full precision; the outer ORDER BY puts it in that order.
        statement = (
            "WITH nearest AS MATERIALIZED ("
            f"SELECT v.path, v.key, {full} AS distance "
            "FROM store_vectors v JOIN store_items i "
            "ON i.agent_id = v.agent_id AND i.path = v.path AND i.key = v.key "
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT {sql.p(limit, 'int')}) "
            "SELECT i.path, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes, n.distance "
            f"FROM nearest n JOIN store_items i ON i.agent_id = {sql.p(agent, 'text')} AND i.path = n.path "
            "AND i.key = n.key ORDER BY n.distance, i.ns_seq, i.seq"
        )
        return statement, sql.params

    async def _nearest(self, agent: str, op: SearchItems, now: datetime,
                       want: int | None = None) -> list[tuple[Record, float | None]]:  # fmt: skip
        """Items by their best vector's similarity; items without a vector of this size fill
        what is left of the page after them (as LangGraph's in-memory store has it)."""
        want = op.offset + op.limit if want is None else want
        # As many vectors as items wanted (an item has one vector per embedded field, most
        # often one): asking the index for more makes it walk past the near neighbours into
        # the far ones, which costs most. More only when items repeat.
        limit = max(want, 1)
        while True:
            rows = await self._vector_rows(agent, op, now, limit)
            best: dict[tuple[str, str], tuple[Record, float]] = {}
            for r in rows:  # in order of distance: an item's first row is its best vector
                best.setdefault((r["path"], r["key"]), (r, 1.0 - r["distance"]))
            if len(best) >= want or len(rows) < limit:
                break
            limit = limit * 2 + (want - len(best))
        ranked: list[tuple[Record, float | None]] = list(best.values())
        kept = ranked[op.offset : op.offset + op.limit] if want == op.offset + op.limit else ranked[:want]
        if len(kept) < op.limit and len(rows) < limit and want == op.offset + op.limit:
            kept += [(r, None) for r in await self._unembedded(agent, op, now, op.limit - len(kept))]
        return kept

    async def _unembedded(self, agent: str, op: SearchItems, now: datetime, limit: int) -> list[Record]:
        assert op.vector is not None
        sql = Sql()
        where = self._where(sql, agent, op, now) + self._item_conditions(sql, op, now)
        where.append(
            "NOT EXISTS (SELECT 1 FROM store_vectors v WHERE v.agent_id = i.agent_id AND v.path = i.path "
            f"AND v.key = i.key AND v.dims = {len(op.vector)})"
        )
        statement = (
            f"SELECT i.path, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes FROM store_items i "
            f"WHERE {' AND '.join(where)} ORDER BY i.ns_seq, i.seq LIMIT {sql.p(limit, 'int')}"
        )
        return await self._fetch(statement, sql.params)

    async def _text(
        self, agent: str, op: SearchItems, now: datetime, limit: int
    ) -> list[tuple[Record, float | None]]:
        sql = Sql()
        tsquery = f"websearch_to_tsquery('{TEXT_CONFIG}'::regconfig, {sql.p(op.text, 'text')})"
        where = self._where(sql, agent, op, now) + self._item_conditions(sql, op, now)
        where.append(f"i.search @@ {tsquery}")
        statement = (
            f"SELECT i.path, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes, "
            f"ts_rank_cd(i.search, {tsquery}) AS rank FROM store_items i WHERE {' AND '.join(where)} "
            f"ORDER BY rank DESC, i.ns_seq, i.seq LIMIT {sql.p(limit, 'int')}"
        )
        return [(r, float(r["rank"])) for r in await self._fetch(statement, sql.params)]

    async def _hybrid(self, agent: str, op: SearchItems, now: datetime) -> list[tuple[Record, float | None]]:
        """Reciprocal rank fusion of the vector and the text rankings: an item's score is
        the sum over the rankings it is in of 1 / (60 + its rank)."""
        depth = max(2 * (op.offset + op.limit), 20)
        by_vector = await self._nearest(agent, op, now, want=depth)
        by_text = await self._text(agent, op, now, depth)
        fused: dict[tuple[str, str], list[Any]] = {}
        for ranking in (by_vector, by_text):
            for rank, (r, _) in enumerate(ranking, start=1):
                entry = fused.setdefault((r["path"], r["key"]), [r, 0.0])
                entry[1] += 1.0 / (RRF_K + rank)
        ranked = sorted(fused.values(), key=lambda e: -e[1])
        return [(r, score) for r, score in ranked[op.offset : op.offset + op.limit]]

    async def _namespaces(self, agent: str, op: ListNamespaces, now: datetime) -> list[list[str]]:
        rows = await self.pg.run.fetch(Q["live_paths"], agent_id=agent, now=now)
        spaces = {tuple(labels(r["path"])) for r in rows}
        spaces = {ns for ns in spaces if all(_matches(c, ns) for c in op.match_conditions)}
        if op.max_depth is not None:
            spaces = {ns[: op.max_depth] for ns in spaces}
        return [list(ns) for ns in sorted(spaces)][op.offset : op.offset + op.limit]


async def move_from_mongo(mongo: MongoStore, pg: PostgresStore, batch: int = 500) -> int:
    """Items an older release kept in MongoDB (`store_items`, `store_namespaces`) moved into
    PostgreSQL once, at start: copied (an item already here is kept: it is newer), then the
    MongoDB collections dropped. A crash midway copies again; nothing is lost."""
    if "store_items" not in await mongo.collection_names():
        return 0
    moved = 0
    for ns in await mongo.find("store_namespaces", {}):
        agent, namespace = json.loads(ns["_id"])
        await pg.run.execute(
            Q["add_namespaces"], agent_id=agent, paths=[joined(namespace)], stamp=ns["seq"] - 1
        )
    docs = await mongo.find("store_items", {})
    for start in range(0, len(docs), batch):
        async with pg.transaction() as tx:
            for d in docs[start : start + batch]:
                status = await tx.execute(Q["move_item"], agent_id=d["agent_id"], path=joined(d["namespace"]),
                                 key=d["key"], val=json.dumps(d["value"], ensure_ascii=False),
                                 created_at=_utc(d["created_at"]), updated_at=_utc(d["updated_at"]),
                                 expires_at=_utc(d.get("expires_at")), ttl=d.get("ttl_minutes"),
                                 ns_seq=d["ns_seq"], seq=d["seq"])  # fmt: skip
                moved += 1
                if status.endswith(" 0"):
                    continue  # already here, newer: its own vectors stand
                vectors = [PathVectorRow(v["path"], v["vector"]) for v in d.get("vectors") or []]
                for v in vectors:
                    index_type(len(v.vector))
                await insert_vectors(tx, d["agent_id"], [(joined(d["namespace"]), d["key"], vectors)])
    await mongo.drop_collection("store_items")
    await mongo.drop_collection("store_namespaces")
    return moved


@dataclass(frozen=True)
class PathVectorRow:
    path: str
    vector: list[float]


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


async def sweep_expired(pg: PostgresStore) -> int:
    """Deletes expired items and their vectors (reads already skip them); how many."""
    gone = 0
    while True:
        row = await pg.run.fetchrow(Q["sweep_expired"], now=datetime.now(UTC))
        n = int(row["n"]) if row else 0
        gone += n
        if n < 10000:
            return gone


def sweeper(pg: PostgresStore, every_seconds: float) -> Periodic:
    async def sweep() -> dict[str, int]:
        gone = await sweep_expired(pg)
        return {"store_items": gone} if gone else {}

    return Periodic("store TTL sweep", every_seconds, sweep)


def no_vector_extension(exc: StoreMisconfigured, url: str) -> ConfigError:
    host = url.split("@")[-1]
    return ConfigError(
        f"PostgreSQL at {host} has no pgvector extension, which the memory store's vector index "
        f"needs ({exc}): install it (Debian: apt install postgresql-<version>-pgvector; images: "
        "pgvector/pgvector:pg16) or run `CREATE EXTENSION vector` as a superuser, then restart"
    )


def _item(row: Record, score: float | None = None) -> StoreItem:
    return StoreItem(
        namespace=labels(row["path"]), key=row["key"], value=json.loads(row["value"]),
        created_at=iso(row["created_at"]), updated_at=iso(row["updated_at"]), score=score,
    )  # fmt: skip


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
