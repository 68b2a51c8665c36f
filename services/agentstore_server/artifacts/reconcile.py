"""Reconcile MinIO with `binary_file_metadata`: objects without metadata, metadata
without objects, and presigned uploads never confirmed. Reports, and with
`repair` registers orphan objects, drops rows whose object is gone and
removes expired unconfirmed uploads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agentstore.schemas.artifacts import check_key
from agentstore_server.artifacts.db import ArtifactsDb, FileRow
from agentstore_server.artifacts.files import Artifacts
from agentstore_server.stores.objects import ObjectStore
from agentstore_server.stores.postgres import PostgresStore

# progress(bucket, objects listed so far)
Progress = Callable[[str, int], None]


@dataclass
class Report:
    orphan_objects: list[str] = field(default_factory=list)  # "bucket/key"
    missing_objects: list[str] = field(default_factory=list)  # file ids
    unconfirmed_uploads: list[str] = field(default_factory=list)  # "bucket/key", expired
    repaired: bool = False


async def reconcile(
    pg: PostgresStore,
    objects: ObjectStore,
    buckets: Sequence[str],
    *,
    repair: bool = False,
    progress: Progress = lambda bucket, n: None,
) -> Report:
    report = Report(repaired=repair)
    db = ArtifactsDb(pg)
    expired = {(r["bucket"], r["object_key"]) for r in await db.expired_pending()}
    pending = {(r["bucket"], r["object_key"]) for r in await db.all_pending()}
    artifacts = Artifacts(pg, objects, buckets)
    for bucket in buckets:
        rows = {r["object_key"]: r["file_id"] for r in await db.bucket_keys(bucket)}
        seen: set[str] = set()
        async for info in objects.list(bucket):
            seen.add(info.key)
            progress(bucket, len(seen))
            if info.key in rows:
                continue
            if (bucket, info.key) in expired:
                report.unconfirmed_uploads.append(f"{bucket}/{info.key}")
                if repair:
                    await objects.remove(bucket, info.key)
                    await db.drop_pending(bucket, info.key)
            elif (bucket, info.key) not in pending:
                report.orphan_objects.append(f"{bucket}/{info.key}")
                if repair:
                    await _register_orphan(artifacts, objects, bucket, info.key)
        for key, file_id in rows.items():
            if key not in seen:
                report.missing_objects.append(file_id)
                if repair:
                    await db.delete_file(file_id)
    if repair:
        for bucket, key in expired:
            await db.drop_pending(bucket, key)
    return report


async def _register_orphan(artifacts: Artifacts, objects: ObjectStore, bucket: str, key: str) -> None:
    """Register an object found without metadata, if its key is a well-formed agent key;
    objects outside any agent's prefix are reported only."""
    try:
        match = check_key(key.split("/", 1)[0], key)
    except ValueError:
        return
    info = await objects.stat(bucket, key)
    if info is None:
        return
    data = await objects.get(bucket, key)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    task = match["task"]
    row = FileRow(
        file_id=f"{match['agent']}:reconciled-{digest}", bucket=bucket, key=key,
        agent=match["agent"], task_id=None if task == "_" else task, name=match["rest"],
        content_type=info.content_type or "application/octet-stream", size=info.size,
        sha256=hashlib.sha256(data).hexdigest(), etag=info.etag, source="reconciled",
    )  # fmt: skip
    await artifacts.register([row])
