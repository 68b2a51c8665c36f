"""The PostgreSQL adapter: a pool, named SQL with named parameters, migrations, our errors.

Nothing else imports asyncpg. SQL lives in `.sql` files of named queries
(`-- name: claim_run`), reviewed like code, with named parameters
(`:agent_id`, never `$1`); each service calls them through one typed gateway
(its `db.py`), so no SQL is written in a service class and none is built
with string formatting.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from agentstore.errors import StoreMisconfigured, StoreRejected, StoreUnavailable

Record = asyncpg.Record
if TYPE_CHECKING:
    Connection = PoolConnectionProxy[Record]
else:
    Connection = PoolConnectionProxy

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

# SQLSTATE classes about the data itself (data exceptions, integrity constraints):
# the only errors that can never succeed on retry. Every statement is parameterised,
# so class 42 (undefined table or column, insufficient privilege, ...), 28 (login)
# and 3D/3F (database, schema) are faults of the deployment, never of the data.
_DATA_CLASSES = ("22", "23")
_DEPLOYMENT_CLASSES = ("42", "28", "3D", "3F")
# Raised while encoding a parameter, before anything is sent: the data, every time (a str
# with an unpaired surrogate, an int past int8).
_ENCODING_ERRORS = (UnicodeEncodeError, OverflowError)


# A named parameter: `:name`, but not the second colon of a `::type` cast.
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
# What never holds parameters: quoted strings and identifiers, comments.
_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*")


@dataclass(frozen=True)
class Query:
    """One named statement: its text in asyncpg's `$n` form and the parameter names in order."""

    name: str
    text: str
    params: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, sql: str) -> Query:
        params: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in params:
                params.append(match.group(1))
            return f"${params.index(match.group(1)) + 1}"

        pieces, end = [], 0
        for literal in _LITERAL.finditer(sql):
            pieces.append(_PARAM.sub(number, sql[end : literal.start()]))
            pieces.append(literal.group(0))
            end = literal.end()
        pieces.append(_PARAM.sub(number, sql[end:]))
        return cls(name, "".join(pieces).strip(), tuple(params))

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for `values`; a missing or unknown name is a bug here."""
        missing = [p for p in self.params if p not in values]
        unknown = sorted(set(values) - set(self.params))
        if missing or unknown:
            raise TypeError(f"query {self.name}: missing parameters {missing}, unknown {unknown}")
        return tuple(values[p] for p in self.params)


def load_queries(path: Path) -> dict[str, Query]:
    """Named queries of a .sql file: each starts with a `-- name: x` line."""
    parts = _NAME.split(path.read_text())
    return {name: Query.parse(name, sql) for name, sql in zip(parts[1::2], parts[2::2], strict=True)}


# InternalClientError: asyncpg's protocol state broken by a connection lost mid-statement
# ("cannot switch to state 15; another operation is in progress"), seen when PostgreSQL went
# down under the tasks service's lease sweep: a lost connection (unavailable), not a bug here.
_DRIVER_ERRORS = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError,
    *_ENCODING_ERRORS,
)  # fmt: skip


class Executor:
    """Runs named queries on the pool or on one transaction's connection; driver errors
    leave as our errors."""

    def __init__(self, target: asyncpg.Pool | Connection, url: str) -> None:
        self._target = target
        self._url = url

    async def fetch(self, query: Query, /, **params: Any) -> list[Record]:
        with driver_errors(self._url):
            return list(await self._target.fetch(query.text, *query.args(params)))

    async def fetchrow(self, query: Query, /, **params: Any) -> Record | None:
        with driver_errors(self._url):
            row: Record | None = await self._target.fetchrow(query.text, *query.args(params))
            return row

    async def execute(self, query: Query, /, **params: Any) -> str:
        with driver_errors(self._url):
            return str(await self._target.execute(query.text, *query.args(params)))


@contextmanager
def driver_errors(url: str) -> Iterator[None]:
    """The one place asyncpg's errors become ours (see `convert`)."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise convert(exc, url) from exc


def convert(exc: BaseException, url: str) -> Exception:
    """The one table from asyncpg's errors to ours, by SQLSTATE class: StoreRejected (the
    data), StoreMisconfigured (the deployment) or StoreUnavailable (everything else: a lost
    connection, a server shutting down, a serialization failure, too many connections)."""
    state = getattr(exc, "sqlstate", None) or ""
    host = url.split("@")[-1]
    if isinstance(exc, _ENCODING_ERRORS):
        return StoreRejected(f"PostgreSQL cannot take this value ({type(exc).__name__}: {exc})")
    if isinstance(exc, asyncpg.PostgresError) and state[:2] in _DATA_CLASSES:
        return StoreRejected(f"PostgreSQL refused it: {exc}")
    if isinstance(exc, asyncpg.PostgresError) and state[:2] in _DEPLOYMENT_CLASSES:
        return StoreMisconfigured(
            f"PostgreSQL at {host} refused the statement ({state} {type(exc).__name__}: {exc}); "
            "the deployment is wrong (a missed migration, a privilege, a login): fix it and "
            "everything waiting is stored"
        )
    return StoreUnavailable(
        f"PostgreSQL at {host} is unavailable ({type(exc).__name__}: {exc}); is `make up` running?"
    )


async def _keep_session(conn: Any) -> None:
    """Connections go back to the pool as they are: agentstore keeps no session state
    (no LISTEN, no SET, advisory locks are transaction-scoped), so asyncpg's default
    reset (four statements, a round trip on every release) buys nothing."""


class PostgresStore:
    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 10, settings: Mapping[str, str] | None = None
    ) -> None:
        """`settings`: PostgreSQL settings of every connection (a pool for one purpose)."""
        self.url = url
        self._min, self._max = min_size, max_size
        self._settings = dict(settings or {})
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> PostgresStore:
        with driver_errors(self.url):
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self._min, max_size=self._max, command_timeout=30, reset=_keep_session,
                server_settings=self._settings,
            )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "use `async with PostgresStore(...)`"
        return self._pool

    @property
    def run(self) -> Executor:
        """Named queries on the pool (each statement its own transaction)."""
        return Executor(self.pool, self.url)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """Named queries in one transaction; driver errors leave as our errors."""
        with driver_errors(self.url):
            async with self.pool.acquire() as conn, conn.transaction():
                yield Executor(conn, self.url)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Executor]:
        """Named queries reading one snapshot (a read-only REPEATABLE READ transaction): a
        read made of several statements sees rows a concurrent delete removes either in all of
        them or in none."""
        with driver_errors(self.url):
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield Executor(conn, self.url)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """One connection of the pool, for a statement composed at run time (a search whose
        shape depends on the request) or settings of one transaction; driver errors leave as
        our errors."""
        with driver_errors(self.url):
            async with self.pool.acquire() as conn:
                yield conn

    async def ping(self) -> None:
        with driver_errors(self.url):
            await self.pool.fetchval("SELECT 1")

    async def migrate(self, service: str, folder: Path) -> list[str]:
        """Apply `NNN_name.sql` files not applied yet, in order, in one transaction
        under an advisory lock, so replicas starting together never race."""
        lock = int.from_bytes(hashlib.sha256(f"migrate:{service}".encode()).digest()[:8], "big")
        lock -= 1 << 63 if lock >= 1 << 63 else 0
        applied: list[str] = []
        async with self.transaction() as tx:
            await tx.execute(_MIGRATION["lock"], key=lock)
            await tx.execute(_MIGRATION["create_table"])
            done = {r["version"] for r in await tx.fetch(_MIGRATION["applied"], service=service)}
            for path in sorted(folder.glob("[0-9][0-9][0-9]_*.sql")):
                if path.stem in done:
                    continue
                await tx.execute(Query(path.stem, path.read_text(), ()))
                await tx.execute(_MIGRATION["record"], service=service, version=path.stem)
                applied.append(path.stem)
        return applied


# The migration bookkeeping's own statements.
_MIGRATION = {
    "lock": Query.parse("lock", "SELECT pg_advisory_xact_lock(:key)"),
    "create_table": Query.parse("create_table", """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            service text NOT NULL, version text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (service, version))"""),
    "applied": Query.parse("applied", "SELECT version FROM schema_migrations WHERE service = :service"),
    "record": Query.parse(
        "record", "INSERT INTO schema_migrations (service, version) VALUES (:service, :version)"
    ),
}  # fmt: skip


class Gateway:
    """Base of a service's typed gateway (its `db.py`): named queries run on the pool, or,
    inside `transaction()`, on one transaction's connection, through the same methods."""

    def __init__(self, pg: PostgresStore, run: Executor | None = None) -> None:
        self.pg = pg
        self.run = run or pg.run

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        async with self.pg.transaction() as tx:
            yield type(self)(self.pg, tx)
