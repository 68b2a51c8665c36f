"""`agentstore export` / `agentstore import`: folders or s3://bucket/prefix, with progress bars."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.progress import Progress as Bar

from agentstore.errors import AgentstoreError
from agentstore_server.config import Settings
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.stores.objects import ObjectStore


def _split_s3(target: str) -> tuple[str, str] | None:
    if not target.startswith("s3://"):
        return None
    bucket, _, prefix = target[5:].partition("/")
    return bucket, prefix.strip("/")


def _objects(settings: Settings) -> ObjectStore:
    return ObjectStore(
        settings.s3_endpoint,
        settings.s3_access_key,
        settings.s3_secret_key,
        secure=settings.s3_secure,
    )


async def _with_bar(work: Callable[[Any], Awaitable[dict[str, int]]]) -> dict[str, int]:
    with Bar(transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(collection: str, done: int) -> None:
            if collection not in tasks:
                tasks[collection] = bar.add_task(collection, total=None)
            bar.update(tasks[collection], completed=done)

        return await work(progress)


async def export_to(target: str, agent: str | None, settings: Settings | None = None) -> dict[str, int]:
    from agentstore_server.logs.portability import COLLECTIONS, export

    settings = settings or Settings()
    async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
        s3 = _split_s3(target)
        if s3 is None:
            return await _with_bar(lambda p: export(mongo, Path(target), agent, p))
        bucket, prefix = s3
        with tempfile.TemporaryDirectory() as tmp:
            counts = await _with_bar(lambda p: export(mongo, Path(tmp), agent, p))
            async with _objects(settings) as objects:
                await objects.ensure_bucket(bucket)
                for name in COLLECTIONS:
                    data = (Path(tmp) / f"{name}.jsonl").read_bytes()
                    key = f"{prefix}/{name}.jsonl" if prefix else f"{name}.jsonl"
                    await objects.put(bucket, key, data, "application/x-ndjson")
        return counts


async def import_from(source: str, settings: Settings | None = None) -> dict[str, int]:
    from agentstore_server.logs.portability import COLLECTIONS, import_folder

    settings = settings or Settings()
    async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
        s3 = _split_s3(source)
        if s3 is None:
            return await _with_bar(lambda p: import_folder(mongo, Path(source), p))
        bucket, prefix = s3
        with tempfile.TemporaryDirectory() as tmp:
            async with _objects(settings) as objects:
                for name in COLLECTIONS:
                    key = f"{prefix}/{name}.jsonl" if prefix else f"{name}.jsonl"
                    if await objects.stat(bucket, key) is not None:
                        (Path(tmp) / f"{name}.jsonl").write_bytes(await objects.get(bucket, key))
            return await _with_bar(lambda p: import_folder(mongo, Path(tmp), p))


async def import_seed(files: list[Path], agent: str, settings: Settings | None = None) -> dict[str, int]:
    from agentstore_server.logs.portability import import_seed_files

    settings = settings or Settings()
    async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
        return await _with_bar(lambda p: import_seed_files(mongo, files, agent, p))


def seed_files_by_agent(paths: list[Path], agent: str | None) -> dict[str, list[Path]]:
    """Seed-001 files to load, by agent: files and folders for `agent`; without one, a
    folder of agents' folders (`DIR/<agent>/*.json`, the way a fleet's backups sit)."""
    found: dict[str, list[Path]] = {}
    for path in paths:
        if path.is_file():
            if agent is None:
                raise AgentstoreError(
                    f"{path} is a file: say whose with --agent (or give DIR/<agent>/*.json)"
                )
            found.setdefault(agent, []).append(path)
        elif path.is_dir() and agent is not None:
            found.setdefault(agent, []).extend(_conversation_files(path))
        elif path.is_dir():
            for folder in sorted(p for p in path.iterdir() if p.is_dir()):
                found.setdefault(folder.name, []).extend(_conversation_files(folder))
        else:
            raise AgentstoreError(f"{path}: no such file or folder")
    return found


def _conversation_files(folder: Path) -> list[Path]:
    """Seed 001's `*.json` files and `agentstore mirror`'s `*.jsonl` files."""
    return sorted([*folder.rglob("*.json"), *folder.rglob("*.jsonl")])


async def import_seed_tree(
    paths: list[Path], agent: str | None, settings: Settings | None = None
) -> dict[str, int]:
    """Many agents' seed-001 files at once; idempotent like `import_seed`."""
    totals: dict[str, int] = {"agents": 0}
    for name, files in seed_files_by_agent(paths, agent).items():
        totals["agents"] += 1
        for key, n in (await import_seed(files, name, settings)).items():
            totals[key] = totals.get(key, 0) + n
    return totals


async def reconcile_artifacts(repair: bool, settings: Settings | None = None) -> dict[str, Any]:
    from agentstore_server.artifacts.reconcile import reconcile
    from agentstore_server.stores.postgres import PostgresStore

    settings = settings or Settings()
    async with PostgresStore(settings.postgres_url) as pg, _objects(settings) as objects:
        with Bar(transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(bucket: str, done: int) -> None:
                if bucket not in tasks:
                    tasks[bucket] = bar.add_task(f"listing {bucket}", total=None)
                bar.update(tasks[bucket], completed=done)

            report = await reconcile(pg, objects, settings.s3_buckets, repair=repair, progress=progress)
    return report.__dict__
