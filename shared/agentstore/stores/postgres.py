"""The PostgreSQL adapter: a pool, named SQL, versioned migrations, our errors.

Nothing else imports asyncpg. SQL lives in `.sql` files of named queries
(`-- name: claim_run`), reviewed like code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from agentstore.errors import StoreRejected, StoreUnavailable

Record = asyncpg.Record
if TYPE_CHECKING:
    Connection = PoolConnectionProxy[Record]
else:
    Connection = PoolConnectionProxy

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

# SQLSTATE classes that are about this data or request, never about the server's health.
_PERMANENT_CLASSES = ("22", "23", "42")


def load_queries(path: Path) -> dict[str, str]:
    """Named queries of a .sql file: each starts with a `-- name: x` line."""
    text = path.read_text()
    parts = _NAME.split(text)
    return {name: sql.strip() for name, sql in zip(parts[1::2], parts[2::2], strict=True)}


def convert(exc: BaseException, url: str) -> Exception:
    """Driver error -> StoreRejected (the data or query is wrong) or StoreUnavailable."""
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, asyncpg.PostgresError) and state[:2] in _PERMANENT_CLASSES:
        return StoreRejected(f"PostgreSQL refused it: {exc}")
    host = url.split("@")[-1]
    return StoreUnavailable(
        f"PostgreSQL at {host} is unavailable ({type(exc).__name__}: {exc}); is `make up` running?"
    )


class PostgresStore:
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> PostgresStore:
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self._min, max_size=self._max, command_timeout=30
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise convert(exc, self.url) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "use `async with PostgresStore(...)`"
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection in a transaction; driver errors leave as our errors."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise convert(exc, self.url) from exc

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        try:
            return list(await self.pool.fetch(sql, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise convert(exc, self.url) from exc

    async def fetchrow(self, sql: str, *args: Any) -> Record | None:
        try:
            return await self.pool.fetchrow(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise convert(exc, self.url) from exc

    async def execute(self, sql: str, *args: Any) -> str:
        try:
            return str(await self.pool.execute(sql, *args))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise convert(exc, self.url) from exc

    async def ping(self) -> None:
        await self.fetchrow("SELECT 1")

    async def migrate(self, service: str, folder: Path) -> list[str]:
        """Apply `NNN_name.sql` files not applied yet, in order, in one transaction
        under an advisory lock, so replicas starting together never race."""
        lock = int.from_bytes(hashlib.sha256(f"migrate:{service}".encode()).digest()[:8], "big")
        lock -= 1 << 63 if lock >= 1 << 63 else 0
        applied: list[str] = []
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       service text NOT NULL, version text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       PRIMARY KEY (service, version))"""
            )
            done = {
                r["version"]
                for r in await conn.fetch("SELECT version FROM schema_migrations WHERE service = $1", service)
            }
            for path in sorted(folder.glob("[0-9][0-9][0-9]_*.sql")):
                if path.stem in done:
                    continue
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (service, version) VALUES ($1, $2)",
                    service,
                    path.stem,
                )
                applied.append(path.stem)
        return applied
