"""`agentstore export --full` / `agentstore import --full`: a backup of all the data.

Every MongoDB collection of the logs service (one canonical Extended JSON line per
document, by `_id`), every PostgreSQL table the services own (PostgreSQL's own
CSV, every row in full-row order; the migration bookkeeping stays the target's),
and optionally every object of the buckets. Restoring into an empty stack (its
services started once, so the tables exist) gives the same system back: a second
backup of it is byte-identical to the first, which the tests check.

The stores do the driver work: tables as CSV files in `stores/tables.py`, documents as
canonical Extended JSON in `stores/mongo.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from agentstore.errors import AgentstoreError
from agentstore_server.config import Settings
from agentstore_server.logs.collections import BACKED_UP
from agentstore_server.stores import tables
from agentstore_server.stores.mongo import MongoStore, from_extended_json, to_extended_json
from agentstore_server.stores.objects import ObjectStore

FORMAT = 1
# The logs service's collections, as it declares them (logs/collections.py).
MONGO_COLLECTIONS = BACKED_UP
BATCH = 1000
Progress = Callable[[str, int], None]


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
    dumped = await tables.dump_tables(settings.postgres_url, folder / "postgres", progress)
    counts |= {f"postgres.{t}": n for t, n in dumped.items()}
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
    loaded = await tables.load_tables(settings.postgres_url, folder / "postgres", progress)
    counts |= {f"postgres.{t}": n for t, n in loaded.items()}
    async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
        for path in sorted((folder / "mongo").glob("*.jsonl")):
            if await mongo.count(path.stem, {}):
                raise AgentstoreError(
                    f"collection {path.stem} is not empty: a full import needs an empty stack"
                )
            docs = [from_extended_json(line) for line in path.read_bytes().splitlines() if line]
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


async def _dump_collection(mongo: MongoStore, name: str, path: Path, progress: Progress) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    last: object = None
    with path.open("w") as out:
        while True:
            where = {} if last is None else {"_id": {"$gt": last}}
            docs = await mongo.find(name, where, sort=[("_id", 1)], limit=BATCH)
            for doc in docs:
                out.write(to_extended_json(doc) + "\n")
            n += len(docs)
            progress(name, n)
            if len(docs) < BATCH:
                return n
            last = docs[-1]["_id"]
