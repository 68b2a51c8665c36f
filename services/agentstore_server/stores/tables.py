"""PostgreSQL tables as files (COPY in CSV) and as rows, for the operator's commands: a full
backup and restore (`ops/backup.py`), reading a seed system's table (`ops/moving_in.py`).

Plain SQL lives here rather than in a service's queries.sql: it is about tables as files,
not about any one service's data; every identifier comes from the catalog or is checked.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from agentstore.errors import AgentstoreError
from agentstore_server.stores.postgres import driver_errors

BOOKKEEPING = ("schema_migrations",)
Progress = Callable[[str, int], None]
STORED_COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 "
    "AND is_generated = 'NEVER' ORDER BY ordinal_position"
)
SERIAL_COLUMNS = (
    "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) "
    "FROM information_schema.columns WHERE table_schema = 'public' AND column_default LIKE 'nextval%'"
)


async def dump_tables(url: str, folder: Path, progress: Progress) -> dict[str, int]:
    """Every table the services own into `folder/<table>.csv`, rows in full-row order
    (deterministic whatever the table's keys); the row count of each."""
    counts: dict[str, int] = {}
    with driver_errors(url):
        conn = await asyncpg.connect(url)
        try:
            for table in await _tables(conn):
                path = folder / f"{table}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                # Generated columns are left out: the load computes them again (COPY refuses them).
                stored = await _stored_columns(conn, table)
                columns = ", ".join(f'"{c}"' for c in stored)
                order = ", ".join(str(i) for i in range(1, len(stored) + 1))
                status = await conn.copy_from_query(f'SELECT {columns} FROM "{table}" ORDER BY {order}',
                                                    output=path, format="csv", header=True)  # fmt: skip
                counts[table] = int(status.split()[-1])  # "COPY <rows>"
                progress(table, counts[table])
        finally:
            await conn.close()
    return counts


async def load_tables(url: str, folder: Path, progress: Progress) -> dict[str, int]:
    """`folder/<table>.csv` back into empty tables (parents before the tables that refer to
    them, in one transaction; serial columns continue after the rows); each table's count."""
    counts: dict[str, int] = {}
    with driver_errors(url):
        conn = await asyncpg.connect(url)
        try:
            tables = await _tables(conn)
            files = sorted(folder.glob("*.csv"))  # noqa: ASYNC240 - a local listing, once
            missing = [f.stem for f in files if f.stem not in tables]
            if missing:
                raise AgentstoreError(
                    f"tables {missing} do not exist here: start the services once (`agentstore up`) so "
                    "they create their tables, then import"
                )
            files = await _parents_first(conn, files)
            for path in files:
                if await conn.fetchval(f'SELECT count(*) FROM "{path.stem}"'):
                    raise AgentstoreError(
                        f"table {path.stem} is not empty: a full import needs an empty stack"
                    )
            async with conn.transaction():
                for path in files:
                    # Triggers keep derived tables (checkpoint_namespaces, traces) as rows are
                    # written; here the derived rows come from their own files, so firing them
                    # would count every row twice. Off for the load, inside its transaction.
                    await conn.execute(f'ALTER TABLE "{path.stem}" DISABLE TRIGGER USER')
                    with path.open() as f:
                        header = next(csv.reader([f.readline()]))
                    await conn.copy_to_table(
                        path.stem, source=path, columns=header, format="csv", header=True
                    )
                    await conn.execute(f'ALTER TABLE "{path.stem}" ENABLE TRIGGER USER')
                    counts[path.stem] = await conn.fetchval(f'SELECT count(*) FROM "{path.stem}"')
                    progress(path.stem, counts[path.stem])
                for table, column, sequence in await conn.fetch(SERIAL_COLUMNS):
                    await conn.execute(
                        f'SELECT setval($1, coalesce((SELECT max("{column}") FROM "{table}"), 1), '
                        f'(SELECT max("{column}") FROM "{table}") IS NOT NULL)',
                        sequence,
                    )
        finally:
            await conn.close()
    return counts


async def read_table(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of one table of another system's database (moving in from a seed)."""
    if not table.replace("_", "").isalnum():
        raise AgentstoreError(f"--table {table!r} is not a plain table name")
    with driver_errors(url):
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(f'SELECT * FROM "{table}"')  # a checked identifier, not data
        finally:
            await conn.close()
    return [dict(r) for r in rows]


async def _parents_first(conn: asyncpg.Connection, files: list[Path]) -> list[Path]:
    """Files in an order that loads every referenced table before the tables that refer to it."""
    edges = await conn.fetch(
        "SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent "
        "FROM pg_constraint WHERE contype = 'f'"
    )
    parents: dict[str, set[str]] = {f.stem: set() for f in files}
    for edge in edges:
        if edge["child"] in parents and edge["parent"] != edge["child"]:
            parents[edge["child"]].add(edge["parent"])
    ordered: list[Path] = []
    placed: set[str] = set()
    while len(ordered) < len(files):
        ready = [f for f in files if f.stem not in placed and parents[f.stem] <= placed | {f.stem}]
        if not ready:
            raise AgentstoreError(f"foreign keys form a cycle among {sorted(set(parents) - placed)}")
        for f in ready:
            ordered.append(f)
            placed.add(f.stem)
    return ordered


async def _stored_columns(conn: asyncpg.Connection, table: str) -> list[str]:
    return [r["column_name"] for r in await conn.fetch(STORED_COLUMNS, table)]


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    return [r["tablename"] for r in rows if r["tablename"] not in BOOKKEEPING]
