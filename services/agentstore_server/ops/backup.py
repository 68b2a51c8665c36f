"""`agentstore export --full` / `agentstore import --full`: a backup of all the data.

Every MongoDB collection of the logs service (one canonical Extended JSON line per
document, by `_id`), every PostgreSQL table the services own (PostgreSQL's own
CSV, every row in full-row order; the migration bookkeeping stays the target's),
and optionally every object of the buckets. Restoring into an empty stack (its
services started once, so the tables exist) gives the same system back: a second
backup of it is byte-identical to the first, which the tests check.

Plain SQL lives here rather than in a service's queries.sql: it is about tables as
files (COPY), not about any one service's data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import asyncpg
from bson import json_util

from agentstore.errors import AgentstoreError
from agentstore_server.config import Settings
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.stores.objects import ObjectStore

FORMAT = 1
MONGO_COLLECTIONS = ("agent_outputs", "agents", "conversations", "events", "logs", "memories", "messages")
BOOKKEEPING = ("schema_migrations",)
BATCH = 1000
Progress = Callable[[str, int], None]
COLUMN_COUNT = (
    "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1"
)
SERIAL_COLUMNS = (
    "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) "
    "FROM information_schema.columns WHERE table_schema = 'public' AND column_default LIKE 'nextval%'"
)


def _silent(what: str, done: int) -> None:
    pass


async def backup(settings: Settings, folder: Path, *, objects: bool = False,
                 progress: Progress = _silent) -> dict[str, int]:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - local files, written in order
    counts: dict[str, int] = {}
    async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
        for name in MONGO_COLLECTIONS:
            counts[f"mongo.{name}"] = await _dump_collection(
                mongo, name, folder / "mongo" / f"{name}.jsonl", progress
            )
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        for table in await _tables(conn):
            path = folder / "postgres" / f"{table}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            width = await conn.fetchval(COLUMN_COUNT, table)
            order = ", ".join(str(i) for i in range(1, width + 1))
            # Full-row order: deterministic whatever the table's keys.
            status = await conn.copy_from_query(f'SELECT * FROM "{table}" ORDER BY {order}', output=path,
                                                format="csv", header=True)  # fmt: skip
            counts[f"postgres.{table}"] = int(status.split()[-1])  # "COPY <rows>"
            progress(table, counts[f"postgres.{table}"])
    finally:
        await conn.close()
    if objects:
        async with ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                               secure=settings.s3_secure) as store:  # fmt: skip
            for bucket in (*settings.s3_buckets, settings.s3_checkpoints_bucket):
                types: dict[str, str] = {}
                async for info in store.list(bucket):
                    target = folder / "objects" / bucket / info.key
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(await store.get(bucket, info.key))
                    stat = await store.stat(bucket, info.key)
                    types[info.key] = (stat.content_type if stat else None) or "application/octet-stream"
                (folder / "objects" / f"{bucket}.types.json").parent.mkdir(parents=True, exist_ok=True)
                (folder / "objects" / f"{bucket}.types.json").write_text(
                    json.dumps(types, indent=0, sort_keys=True)
                )
                counts[f"objects.{bucket}"] = len(types)
    (folder / "manifest.json").write_text(
        json.dumps({"format": FORMAT, "counts": counts}, indent=1, sort_keys=True)
    )
    return counts


async def restore(settings: Settings, folder: Path, *, progress: Progress = _silent) -> dict[str, int]:
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("format") != FORMAT:
        raise AgentstoreError(
            f"{folder} is not a full export of this version (format {manifest.get('format')})"
        )
    counts: dict[str, int] = {}
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        tables = await _tables(conn)
        files = sorted((folder / "postgres").glob("*.csv"))
        missing = [f.stem for f in files if f.stem not in tables]
        if missing:
            raise AgentstoreError(
                f"tables {missing} do not exist here: start the services once (`agentstore up`) so they "
                "create their tables, then import"
            )
        files = await _parents_first(conn, files)
        for path in files:
            if await conn.fetchval(f'SELECT count(*) FROM "{path.stem}"'):
                raise AgentstoreError(f"table {path.stem} is not empty: a full import needs an empty stack")
        async with conn.transaction():
            for path in files:
                await conn.copy_to_table(path.stem, source=path, format="csv", header=True)
                counts[f"postgres.{path.stem}"] = await conn.fetchval(f'SELECT count(*) FROM "{path.stem}"')
                progress(path.stem, counts[f"postgres.{path.stem}"])
            # Serial columns continue after the restored rows.
            for table, column, sequence in await conn.fetch(SERIAL_COLUMNS):
                await conn.execute(
                    f'SELECT setval($1, coalesce((SELECT max("{column}") FROM "{table}"), 1), '
                    f'(SELECT max("{column}") FROM "{table}") IS NOT NULL)',
                    sequence,
                )
    finally:
        await conn.close()
    async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
        for path in sorted((folder / "mongo").glob("*.jsonl")):
            if await mongo.count(path.stem, {}):
                raise AgentstoreError(
                    f"collection {path.stem} is not empty: a full import needs an empty stack"
                )
            docs = [json_util.loads(line) for line in path.read_bytes().splitlines() if line]
            for start in range(0, len(docs), BATCH):
                refused = await mongo.insert_new(path.stem, docs[start : start + BATCH])
                if refused:
                    raise AgentstoreError(
                        f"{path.stem}: the server refused documents: {list(refused.values())[:3]}"
                    )
            counts[f"mongo.{path.stem}"] = len(docs)
            progress(path.stem, len(docs))
    objects_dir = folder / "objects"
    if objects_dir.is_dir():
        async with ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                               secure=settings.s3_secure) as store:  # fmt: skip
            for listing in sorted(objects_dir.glob("*.types.json")):
                bucket = listing.name.removesuffix(".types.json")
                await store.ensure_bucket(bucket)
                types = json.loads(listing.read_text())
                for key, content_type in types.items():
                    await store.put(bucket, key, (objects_dir / bucket / key).read_bytes(), content_type)
                counts[f"objects.{bucket}"] = len(types)
    return counts


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


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    return [r["tablename"] for r in rows if r["tablename"] not in BOOKKEEPING]


async def _dump_collection(mongo: MongoStore, name: str, path: Path, progress: Progress) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    last: object = None
    with path.open("w") as out:
        while True:
            where = {} if last is None else {"_id": {"$gt": last}}
            docs = await mongo.find(name, where, sort=[("_id", 1)], limit=BATCH)
            for doc in docs:
                out.write(json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS) + "\n")
            n += len(docs)
            progress(name, n)
            if len(docs) < BATCH:
                return n
            last = docs[-1]["_id"]
