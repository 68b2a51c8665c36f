"""Reads of FerretDB 1.24's PostgreSQL backend in SQL: the plans FerretDB cannot make.

FerretDB 1.x keeps each collection as a PostgreSQL table of one `_jsonb` column
and creates every index as a btree over `_jsonb -> 'field'` expressions. But it
pushes down only equality filters, written as `_jsonb -> 'f' @> value`, which no
btree serves, and it sorts and limits in its own memory: "the newest 100 logs"
reads every matching document, so a query's latency grows with the collection
(measured: 420 ms at 1M logs for one agent, seconds for the whole fleet).

This module asks PostgreSQL directly, with the same filters written as
comparisons its btree indexes serve (`_jsonb -> 'f' = $1`, row comparisons for
keyset cursors) and ORDER BY ... LIMIT pushed down, so a page costs an index
range whatever the collection's size. It speaks the filter subset the logs
service uses (equality, `$in`, ranges, `$exists`, `$all`, literal `$regex`,
`$or`, `$and`); anything else raises `Unsupported` and the caller asks FerretDB.
It only reads: every write still goes through FerretDB.

It is used when `MONGODB_SQL_URL` names FerretDB's PostgreSQL database (the local
stack sets it); with a real MongoDB, which uses its indexes itself, it is not.
FerretDB's storage format (sjson: plain JSON plus a `$s` schema, dates as
milliseconds) is read as 1.24 writes it; the suite runs every logs query through
both paths against FerretDB 1.24.2.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from agentstore.errors import StoreUnsupported
from agentstore.schemas.common import EPOCH
from agentstore_server.stores.postgres import driver_errors

Document = dict[str, Any]
IndexKeys = Sequence[tuple[str, int]]

# Keys in filters and sorts come from the services' code; anything else is not ours to quote.
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$(?!\n)")
_SCHEMA = re.compile(r"^[A-Za-z0-9_-]{1,63}$(?!\n)")
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
# Values of these types compare within their own type only (as MongoDB compares).
_JSON_TYPE = {bool: "boolean", int: "number", float: "number", str: "string", datetime: "number"}
# `$in` with a sort and a limit: one index range per value (LATERAL), then a merge.
MAX_LATERAL_VALUES = 1000
MAX_UNION_VALUES = 32


# The FerretDB releases whose PostgreSQL layout this module reads (`_ferretdb_database_metadata`,
# one table a collection with `_jsonb`): probed at start (`readers.probe_ferretdb`); the
# local stack builds this release (devstack/binaries.py, kept equal by a test).
FERRETDB_RELEASE = "v1.24."


class Unsupported(StoreUnsupported):
    """A filter or a stored value this module does not speak: ask FerretDB instead."""


class TableMoved(Unsupported):
    """The collection's table was dropped since it was looked up (made again under a new
    name, or gone); its cached name is forgotten."""


class _Params:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str = "jsonb") -> str:
        self.values.append(value)
        return f"${len(self.values)}::{cast}"


def path(key: str, column: str = "_jsonb") -> str:
    if not _KEY.match(key):
        raise Unsupported(f"field {key!r}")
    parts = key.split(".")
    if len(parts) == 1:
        return f"({column} -> '{key}')"
    return f"({column} #> '{{{','.join(parts)}}}')"


def to_jsonb(value: Any) -> str:
    """A filter value as FerretDB stores it: dates as milliseconds since the epoch."""
    if isinstance(value, datetime):
        return str(round((value - EPOCH) / timedelta(milliseconds=1)))
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return msgspec.json.encode(value).decode()
    raise Unsupported(f"value of type {type(value).__name__}")


def _typed(expr: str, value: Any) -> str:
    kind = _JSON_TYPE.get(type(value))
    if kind is None:
        raise Unsupported(f"range over {type(value).__name__}")
    return f"jsonb_typeof({expr}) = '{kind}'"


def _equal(key: str, value: Any, p: _Params) -> str:
    expr = path(key)
    if value is None:  # MongoDB: null or missing
        return f"({expr} IS NULL OR {expr} = 'null'::jsonb)"
    if isinstance(value, list | dict):
        raise Unsupported("equality with a document or an array")
    return f"{expr} = {p.add(to_jsonb(value))}"


def _literal(pattern: str) -> str:
    """The text of a `re.escape`d literal; Unsupported for a real regular expression."""
    text = re.sub(r"\\(.)", r"\1", pattern, flags=re.DOTALL)
    if re.escape(text) != pattern:
        raise Unsupported("a $regex that is not an escaped literal")
    return text


def _operator(key: str, op: str, value: Any, options: str, p: _Params) -> str:
    expr = path(key)
    if op == "$eq":
        return _equal(key, value, p)
    if op in _RANGE:
        return f"({_typed(expr, value)} AND {expr} {_RANGE[op]} {p.add(to_jsonb(value))})"
    if op == "$in":
        if not isinstance(value, list) or any(v is None or isinstance(v, list | dict) for v in value):
            raise Unsupported("$in over null, documents or arrays")
        return f"{expr} = ANY({p.add([to_jsonb(v) for v in value], 'jsonb[]')})"
    if op == "$exists":
        return f"({expr} IS {'NOT ' if value else ''}NULL)"
    if op == "$all":
        if not isinstance(value, list) or not value:
            raise Unsupported("$all needs a non-empty list")
        return f"{expr} @> {p.add(to_jsonb(value))}"
    if op == "$regex":
        if not isinstance(value, str) or set(options) - {"i"}:
            raise Unsupported("$regex options other than i")
        like = re.sub(r"([\\%_])", r"\\\1", _literal(value))
        verb = "ILIKE" if "i" in options else "LIKE"
        return (
            f"(jsonb_typeof({expr}) = 'string' AND ({expr} #>> '{{}}') {verb} {p.add(f'%{like}%', 'text')})"
        )
    raise Unsupported(op)


# Ranges on numbers (and dates) and strings are written by _Ranges; others by _operator.
_RANGED_KINDS = ("number", "string")


@dataclass(frozen=True)
class _Bound:
    key: str
    sign: str  # one of _RANGE's values
    value: Any

    @property
    def kind(self) -> str:
        return _JSON_TYPE[type(self.value)]

    @property
    def upper(self) -> bool:
        return self.sign.startswith("<")


@dataclass(frozen=True)
class _Keyset:
    """A page's cursor: rows after (value, tie) in the order (key, _id), `sign` `<` for a
    descending order."""

    key: str
    sign: str
    value: Any
    tie: Any


def _keyset(branches: Any) -> _Keyset | None:
    """`$or: [{f: {$lt: a}}, {f: a, _id: {$lt: b}}]`, the cursor the services write."""
    if not isinstance(branches, list) or len(branches) != 2 or not all(isinstance(b, dict) for b in branches):
        return None
    first, second = branches
    if len(first) != 1 or len(second) != 2 or "_id" not in second:
        return None
    ((field, bound),) = first.items()
    if not isinstance(bound, dict) or len(bound) != 1 or field not in second:
        return None
    ((op, at),) = bound.items()
    tie = second["_id"]
    if op not in ("$lt", "$gt") or second[field] != at or not isinstance(tie, dict) or set(tie) != {op}:
        return None
    if _JSON_TYPE.get(type(at)) not in _RANGED_KINDS:
        return None
    return _Keyset(field, _RANGE[op], at, tie[op])


# (field, value) of an equality that ranges on the sort field are paired with: see select().
Leading = tuple[str, Any] | None

# Below every double and every int64, so below any number a document holds.
_BELOW_NUMBERS = "'-1e400'::jsonb"
# Closing a range of one type on its open side (jsonb orders Null < String < Number < Boolean).
_TYPE_BOUND = {
    ("number", "upper"): "< 'false'::jsonb", ("number", "lower"): f">= {_BELOW_NUMBERS}",
    ("string", "upper"): f"< {_BELOW_NUMBERS}", ("string", "lower"): "> 'null'::jsonb",
}  # fmt: skip


class _Ranges:
    """The range conditions of one filter (its fields' bounds and its cursor), written so
    that PostgreSQL both estimates them sanely and starts its index scan at the right key.

    What it writes, and why (each measured at 1M logs on PostgreSQL 18):
    - The cursor `(f, _id) < (a, b)` is a row comparison: it is where an index on
      (f, _id) starts. A bound of f on the same side is implied by it or implies it; only
      the tighter one is written, since btree cannot tell which of a row comparison and a
      plain bound is tighter and may start at the wrong one (it read the index from the
      top down to the window: 20-200 ms).
    - MongoDB compares within a type, so a range stays within its value's type. Where the
      filter leaves a side open, it is closed by a bound of the neighbouring type (a
      number's by `false` above, by a number below every double beneath). PostgreSQL reads
      those off the histogram as ~all rows; `jsonb_typeof(f) = 'number'` it cannot
      estimate and takes to keep 0.5% of rows, and two or three planned a page of
      thousands of rows as if it held one.
    - Two plain bounds of one field are estimated together, as the histogram buckets
      between them, and jsonb has no scale to interpolate inside a bucket: an hour of ten
      days (one in ~100 buckets) came out as no rows, and a plan for no rows ignores the
      LIMIT: some hour pages sorted a skip scan's 4,000 rows (6-12 ms) instead of reading
      101 off the ts index (0.2 ms). So the upper bound of a window is written as the row
      comparison `(f, _id) < (b, [])` (jsonb sorts `[]` below any `_id`): the same rows and
      index range, estimated on its own, which overestimates the window; an overestimate
      never costs a LIMITed index range.
    - Next to an equality `e = x` on the sort field's index prefix, a bound `f >= a` is
      `(e, f) >= (x, a)`: only the (e, f) index serves that, which the estimates otherwise
      missed (the fleet-wide ts index was taken for one agent's hour, filtering 4,000 rows).
    """

    def __init__(self, leading: Leading, sorted_by: str) -> None:
        self.leading, self.sorted_by = leading, sorted_by
        self.bounds: list[_Bound] = []
        self.cursor: _Keyset | None = None

    def add(self, key: str, op: str, value: Any) -> bool:
        """Takes a range it writes itself; False for one _operator writes."""
        if op not in _RANGE or _JSON_TYPE.get(type(value)) not in _RANGED_KINDS:
            return False
        self.bounds.append(_Bound(key, _RANGE[op], value))
        return True

    def sql(self, p: _Params) -> list[str]:
        bounds, cursor = self._tightest()
        parts: list[str] = []
        sides: dict[tuple[str, str], set[str]] = {}  # (field, kind) -> the sides bounded
        for b in bounds:
            sides.setdefault((b.key, b.kind), set()).add("upper" if b.upper else "lower")
        if cursor is not None:
            expr = path(cursor.key)
            parts.append(f"({expr}, {path('_id')}) {cursor.sign} "
                         f"({p.add(to_jsonb(cursor.value))}, {p.add(to_jsonb(cursor.tie))})")  # fmt: skip
            kind = _JSON_TYPE[type(cursor.value)]
            sides.setdefault((cursor.key, kind), set()).add("upper" if cursor.sign == "<" else "lower")
        for b in bounds:
            expr, value = path(b.key), p.add(to_jsonb(b.value))
            if self.leading is not None and b.key == self.sorted_by:
                field, equal = self.leading
                parts.append(f"({path(field)}, {expr}) {b.sign} ({p.add(to_jsonb(equal))}, {value})")
            elif b.sign == "<" and b.key != "_id" and "lower" in sides[(b.key, b.kind)]:
                parts.append(f"({expr}, {path('_id')}) < ({value}, '[]'::jsonb)")
            else:
                parts.append(f"{expr} {b.sign} {value}")
        for (key, kind), bounded in sides.items():
            if len(bounded) == 1:
                (side,) = bounded
                parts.append(f"{path(key)} {_TYPE_BOUND[(kind, 'lower' if side == 'upper' else 'upper')]}")
        return parts

    def _tightest(self) -> tuple[list[_Bound], _Keyset | None]:
        """The bounds and the cursor, less the one of a bound and the cursor on the same side
        of the same field that the other implies. For a descending cursor `(f, _id) < (a, b)`
        and a bound `f < v`: the cursor implies the bound when a < v, the bound implies the
        cursor when v <= a (for `f <= v`: a <= v, and v < a); ascending mirrors it."""
        cursor = self.cursor
        if cursor is None:
            return self.bounds, None
        for b in self.bounds:
            a, v = _number(cursor.value), _number(b.value)
            if b.key != cursor.key or b.upper != (cursor.sign == "<") or a is None or v is None:
                continue
            if b.sign in ("<", ">="):
                cursor_implies = a < v if b.upper else a >= v
            else:
                cursor_implies = a <= v if b.upper else a > v
            if cursor_implies:
                return [x for x in self.bounds if x is not b], cursor
            return self.bounds, None
        return self.bounds, cursor


def _number(value: Any) -> int | float | None:
    """A bound's value as jsonb compares it (dates as milliseconds); None for text, whose
    order is the database's collation."""
    if isinstance(value, datetime):
        return int(to_jsonb(value))
    return value if type(value) in (int, float) else None


def where(filter: Mapping[str, Any], p: _Params, leading: Leading = None, sorted_by: str = "") -> str:
    parts: list[str] = []
    ranges = _Ranges(leading, sorted_by)
    for key, cond in filter.items():
        if key == "$or":
            if not isinstance(cond, list) or not cond:
                raise Unsupported("$or needs a non-empty list")
            ranges.cursor = _keyset(cond)
            if ranges.cursor is None:
                parts.append("(" + " OR ".join(f"({where(c, p)})" for c in cond) + ")")
        elif key == "$and":
            parts += [f"({where(c, p)})" for c in cond]
        elif key.startswith("$"):
            raise Unsupported(key)
        elif isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            options = str(cond.get("$options", ""))
            for op, v in cond.items():
                if op != "$options" and not ranges.add(key, op, v):
                    parts.append(_operator(key, op, v, options, p))
        else:
            parts.append(_equal(key, cond, p))
    parts += ranges.sql(p)
    return " AND ".join(parts) or "true"


def order_by(sort: IndexKeys) -> str:
    # The sorted fields are always present in the services' documents, so PostgreSQL's
    # null placement (which the indexes use) never differs from MongoDB's.
    return ", ".join(f"{path(k)} {'DESC' if d < 0 else 'ASC'}" for k, d in sort)


def select(table: str, filter: Mapping[str, Any], sort: IndexKeys, limit: int) -> tuple[str, list[Any]]:
    """The statement for a find, and its parameters."""
    p = _Params()
    lateral = _lateral_key(filter) if sort and limit else None
    if lateral is not None and len(lateral[1]) <= MAX_UNION_VALUES:
        # Few values: one subquery each, planned for its own value (a level's range in
        # level_ts_id, an agent's in agent_ts), merged. LATERAL's per-value parameter is
        # unknown when planned, and for a field of few values (levels) PostgreSQL then
        # prefers filtering the ts index, which for a rare level reads the whole table.
        key, values = lateral
        rest = {k: v for k, v in filter.items() if k != key}
        n = p.add(limit, "int")
        first = sort[0][0]
        parts = [f"(SELECT _jsonb FROM {table} WHERE {path(key)} = {p.add(to_jsonb(v))} AND "
                 f"{where(rest, p, (key, v), first)} ORDER BY {order_by(sort)} LIMIT {n})"
                 for v in values]  # fmt: skip
        return (
            f"SELECT _jsonb FROM ({' UNION ALL '.join(parts)}) AS t ORDER BY {order_by(sort)} LIMIT {n}",
            p.values,
        )
    if lateral is not None:
        key, values = lateral
        rest = {k: v for k, v in filter.items() if k != key}
        keys = p.add([to_jsonb(v) for v in values], "jsonb[]")
        inner = f"{path(key)} = k.v AND {where(rest, p)}"
        n = p.add(limit, "int")
        sql = (f"SELECT _jsonb FROM unnest({keys}) AS k(v) CROSS JOIN LATERAL "
               f"(SELECT _jsonb FROM {table} WHERE {inner} ORDER BY {order_by(sort)} LIMIT {n}) AS t "
               f"ORDER BY {order_by(sort)} LIMIT {n}")  # fmt: skip
        return sql, p.values
    sql = f"SELECT _jsonb FROM {table} WHERE {where(filter, p, *_leading(filter, sort))}"
    if sort:
        sql += f" ORDER BY {order_by(sort)}"
    if limit:
        sql += f" LIMIT {p.add(limit, 'int')}"
    return sql, p.values


def _leading(filter: Mapping[str, Any], sort: IndexKeys) -> tuple[Leading, str]:
    """The first scalar equality of a filter that also ranges over its sort's first field."""
    if not sort or not isinstance(filter.get(sort[0][0]), dict):
        return None, ""
    for key, cond in filter.items():
        if not key.startswith("$") and key != sort[0][0] and type(cond) in (str, int, bool):
            return (key, cond), sort[0][0]
    return None, ""


def _lateral_key(filter: Mapping[str, Any]) -> tuple[str, list[Any]] | None:
    """The one top-level `$in` a sorted, limited find can split into per-value ranges."""
    found = [(k, c["$in"]) for k, c in filter.items()
             if isinstance(c, dict) and set(c) == {"$in"} and isinstance(c["$in"], list)]  # fmt: skip
    if len(found) != 1 or not 0 < len(found[0][1]) <= MAX_LATERAL_VALUES:
        return None
    if any(v is None or isinstance(v, list | dict) for v in found[0][1]):
        return None
    return found[0]


# -- FerretDB's sjson documents ----------------------------------------------------


def decode(raw: str | bytes) -> Document:
    """A stored document as PyMongo returns it (dates as aware UTC datetimes)."""
    data = msgspec.json.decode(raw)
    schema = data.pop("$s", None)
    if not isinstance(schema, dict):
        raise Unsupported("a row without FerretDB's $s schema")
    return _document(data, schema)


def _document(data: dict[str, Any], schema: dict[str, Any]) -> Document:
    props = schema.get("p") or {}
    return {key: _value(data[key], props.get(key)) for key in schema.get("$k", list(data))}


def _value(value: Any, element: dict[str, Any] | None) -> Any:
    if value is None:
        return None
    if element is None:
        raise Unsupported("a value without a schema")
    kind = element["t"]
    if kind in ("string", "bool", "int", "long"):
        return value
    if kind == "double":
        return float(value)
    if kind == "date":
        return EPOCH + timedelta(milliseconds=value)
    if kind == "object":
        return _document(value, element["$s"])
    if kind == "array":
        return [_value(v, e) for v, e in zip(value, element["i"], strict=True)]
    raise Unsupported(f"stored type {kind}")  # objectId, binData, regex, timestamp: not ours


class FerretSql:
    """Finds and counts on one FerretDB database's tables, through PostgreSQL."""

    def __init__(self, url: str, database: str) -> None:
        self.url, self.schema = url, database
        self._pool: asyncpg.Pool | None = None
        self._connecting = asyncio.Lock()
        self._tables: dict[str, str] = {}

    async def _connect(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._connecting:  # concurrent first reads make one pool, not one each
            if self._pool is not None:
                return self._pool
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=8,
                # Plans for these parameters, not a generic one: an equality on a
                # jsonb parameter otherwise loses its index after five executions.
                server_settings={"plan_cache_mode": "force_custom_plan",
                                 "default_transaction_read_only": "on"},
            )  # fmt: skip
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _table(self, pool: asyncpg.Pool, collection: str) -> str | None:
        """`"schema"."table"` of a collection, or None when it does not exist (yet)."""
        if collection not in self._tables:
            try:
                name = await pool.fetchval(
                    f"SELECT _jsonb ->> 'table' FROM \"{self.schema}\"._ferretdb_database_metadata "
                    "WHERE _jsonb -> '_id' = $1::jsonb",
                    to_jsonb(collection),
                )
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                # No schema of that name: a database without collections yet, or a name
                # FerretDB stored differently. FerretDB itself knows which.
                raise Unsupported(f"no FerretDB metadata in schema {self.schema!r}") from None
            if name is None:
                return None
            self._tables[collection] = f'"{self.schema}"."{name}"'
        return self._tables[collection]

    async def _rows(
        self, collection: str, statement: Callable[[str], tuple[str, list[Any]]]
    ) -> list[Any] | None:
        """The rows of `statement(table)` on the collection's table; None when there is no such
        collection (yet). A table dropped since it was looked up raises `TableMoved`. Driver
        errors go through the same SQLSTATE table as every PostgreSQL statement of agentstore."""
        if not _SCHEMA.match(self.schema):
            raise Unsupported(f"database name {self.schema!r}")
        with driver_errors(self.url):
            pool = await self._connect()
            table = await self._table(pool, collection)
            if table is None:
                return None
            sql, args = statement(table)
            try:
                return list(await pool.fetch(sql, *args))
            except asyncpg.UndefinedTableError:
                self._tables.pop(collection, None)
                raise TableMoved(f"the table of {collection!r} moved") from None
            except asyncpg.PostgresError as exc:
                # SQL this module generated that PostgreSQL refuses (class 42: syntax, an
                # operator for the stored types, a privilege): a shape this module does not
                # speak rightly, not a deployment down; FerretDB answers it over the wire.
                if (getattr(exc, "sqlstate", "") or "").startswith("42"):
                    raise Unsupported(
                        f"generated SQL refused ({exc.sqlstate} {type(exc).__name__}: {exc})"
                    ) from None
                raise

    async def find(self, collection: str, filter: Mapping[str, Any], sort: IndexKeys = (),
                   limit: int = 0) -> list[Document]:  # fmt: skip
        for attempt in (1, 2):
            try:
                rows = await self._rows(collection, lambda table: select(table, filter, sort, limit))
            except TableMoved:
                # Dropped and created again under a new table name: look it up once more.
                if attempt == 2:
                    return []
                continue
            return [decode(r[0]) for r in rows or ()]
        return []

    async def count_by(self, collection: str, filter: Mapping[str, Any], key: str) -> dict[Any, int]:
        """Matching documents per value of `key` (a text field; null for missing), as
        `$group: {_id: "$key", n: {$sum: 1}}` counts them. A moved table: ask FerretDB."""

        def statement(table: str) -> tuple[str, list[Any]]:
            p = _Params()
            return f"SELECT {path(key)}, count(*) FROM {table} WHERE {where(filter, p)} GROUP BY 1", p.values

        counts: dict[Any, int] = {}
        for value, n in await self._rows(collection, statement) or ():
            group = None if value is None else msgspec.json.decode(value)
            if group is not None and not isinstance(group, str):
                raise Unsupported(f"grouping by {key!r}, which holds {type(group).__name__} values")
            counts[group] = counts.get(group, 0) + int(n)
        return counts

    async def count(self, collection: str, filter: Mapping[str, Any]) -> int:
        """Matching documents. A moved table: ask FerretDB."""

        def statement(table: str) -> tuple[str, list[Any]]:
            p = _Params()
            return f"SELECT count(*) FROM {table} WHERE {where(filter, p)}", p.values

        rows = await self._rows(collection, statement)
        return int(rows[0][0]) if rows else 0
