"""How the logs service reads documents: one interface, two ways to answer it, chosen at start.

- `MongoStore` answers over the wire, on any MongoDB-wire server.
- `FerretSqlReader` reads FerretDB 1.24's PostgreSQL tables in SQL (`ferretsql`), with the
  sorts, ranges and `$in` FerretDB 1.x filters itself (README "Known limits"). What SQL cannot
  say it asks the wire instead: counted in `fallbacks` (`agentstore_read_fallbacks_total`) and
  logged once per shape, so a slow read is never silent.

`reading()` probes the server and chooses: the SQL reader only where MONGODB_SQL_URL is set and
the server is the FerretDB release whose tables it reads; any other FerretDB is refused at start
rather than read from tables of a layout the reader does not know.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from agentstore.errors import ConfigError
from agentstore_server.stores import ferretsql
from agentstore_server.stores.ferretsql import FerretSql, Unsupported
from agentstore_server.stores.mongo import Document, IndexKeys, MongoStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class DocumentReader(Protocol):
    """The reads the logs service makes (its writes go to `MongoStore`)."""

    async def find(
        self, collection: str, filter: Document, *, sort: IndexKeys = (), limit: int = 0
    ) -> list[Document]: ...

    async def find_one(self, collection: str, filter: Document) -> Document | None: ...

    async def find_by_ids(self, collection: str, ids: Sequence[Any]) -> dict[Any, Document]:
        """The stored documents of these `_id`s (missing ones absent)."""
        ...

    async def count(self, collection: str, filter: Document) -> int: ...

    async def count_by(self, collection: str, filter: Document, key: str) -> dict[Any, int]:
        """Matching documents per value of the text field `key` (None: documents without it)."""
        ...


class FerretSqlReader:
    """Reads in SQL from FerretDB's PostgreSQL tables; the wire answers what SQL cannot."""

    def __init__(self, sql: FerretSql, wire: MongoStore) -> None:
        self.sql = sql
        self.wire = wire
        # (operation, collection) -> reads the wire answered instead (slower: FerretDB filters
        # those itself); each new (operation, collection, reason) is logged once.
        self.fallbacks: Counter[tuple[str, str]] = Counter()
        self._shapes: set[tuple[str, str, str]] = set()

    async def _either(
        self, operation: str, collection: str, in_sql: Callable[[], Awaitable[T]],
        over_wire: Callable[[], Awaitable[T]],
    ) -> T:  # fmt: skip
        try:
            return await in_sql()
        except Unsupported as reason:
            self.fallbacks[(operation, collection)] += 1
            shape = (operation, collection, str(reason))
            if shape not in self._shapes and len(self._shapes) < 1000:
                self._shapes.add(shape)
                log.warning(
                    "%s on %s answered over the wire, not in SQL (%s): FerretDB filters such a read "
                    "itself, slower on a large collection; counted in agentstore_read_fallbacks_total",
                    operation, collection, reason,
                )  # fmt: skip
        return await over_wire()

    async def find(
        self, collection: str, filter: Document, *, sort: IndexKeys = (), limit: int = 0
    ) -> list[Document]:
        return await self._either(
            "find", collection, lambda: self.sql.find(collection, filter, sort, limit),
            lambda: self.wire.find(collection, filter, sort=sort, limit=limit),
        )  # fmt: skip

    async def find_one(self, collection: str, filter: Document) -> Document | None:
        async def in_sql() -> Document | None:
            found = await self.sql.find(collection, filter, (), 1)
            return found[0] if found else None

        return await self._either(
            "find_one", collection, in_sql, lambda: self.wire.find_one(collection, filter)
        )

    async def find_by_ids(self, collection: str, ids: Sequence[Any]) -> dict[Any, Document]:
        """One index lookup on the collection's table (the wire would filter an `$in` by
        reading the whole collection in FerretDB 1.24)."""
        if not ids:
            return {}

        async def in_sql() -> dict[Any, Document]:
            return {d["_id"]: d for d in await self.sql.find(collection, {"_id": {"$in": list(ids)}})}

        return await self._either(
            "find_by_ids", collection, in_sql, lambda: self.wire.find_by_ids(collection, ids)
        )

    async def count(self, collection: str, filter: Document) -> int:
        return await self._either(
            "count", collection, lambda: self.sql.count(collection, filter),
            lambda: self.wire.count(collection, filter),
        )  # fmt: skip

    async def count_by(self, collection: str, filter: Document, key: str) -> dict[Any, int]:
        return await self._either(
            "count_by", collection, lambda: self.sql.count_by(collection, filter, key),
            lambda: self.wire.count_by(collection, filter, key),
        )  # fmt: skip


async def probe_ferretdb(wire: MongoStore) -> None:
    """The server must be the FerretDB release whose tables the SQL reader reads; anything else
    is a ConfigError naming the fix."""
    info = await wire.build_info()
    version = str(info.get("ferretdbVersion") or "")
    if not version:
        raise ConfigError(
            f"MONGODB_SQL_URL is set, but the server at {wire.url} is not FerretDB (MongoDB "
            f"{info.get('version')}): unset MONGODB_SQL_URL to read over the wire"
        )
    if not version.startswith(ferretsql.FERRETDB_RELEASE):
        raise ConfigError(
            f"FerretDB {version} at {wire.url}: the SQL read path reads the tables of FerretDB "
            f"{ferretsql.FERRETDB_RELEASE}x only; run that release, or unset MONGODB_SQL_URL to read "
            "over the wire"
        )


@asynccontextmanager
async def reading(wire: MongoStore, sql_url: str | None, database: str) -> AsyncIterator[DocumentReader]:
    """The reader for this deployment: in SQL with `sql_url` (after the probe), else the wire."""
    if sql_url is None:
        yield wire
        return
    await probe_ferretdb(wire)
    sql = FerretSql(sql_url, database)
    try:
        yield FerretSqlReader(sql, wire)
    finally:
        await sql.close()
