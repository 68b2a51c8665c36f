"""Artifacts (seed 003): objects in MinIO under the agent's prefix, metadata in PostgreSQL.

Inline uploads (`agents.{agent}.artifacts`, raw bytes) are put, then
registered, then acked; a crash between the steps ends with both done after
redelivery (the put overwrites the same bytes, the row is inserted once).
Large files go straight to MinIO with a presigned PUT and are registered by
`agents.{agent}.uploads` once the service has checked the object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstore.errors import AgentstoreError, BadRequest, Forbidden, InvalidMessage, NotFound, StoreRejected
from agentstore.ids import new_id
from agentstore.schemas.artifacts import (
    DEFAULT_BUCKET,
    DeleteFiles,
    FilesQuery,
    FileUrlQuery,
    PresignRequest,
    ScreenshotsQuery,
    UploadIn,
    check_key,
    check_name,
    object_key,
)
from agentstore.schemas.common import EVENT_ID_PATTERN, iso
from agentstore.schemas.logs import EventIn
from agentstore_server.artifacts.db import ArtifactsDb, FileRow, Pending
from agentstore_server.bus.handle import BusHandle
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.stores import pgwire
from agentstore_server.stores.objects import ObjectStore
from agentstore_server.stores.postgres import PostgresStore

MAX_HASHED_BYTES = 64 * 1024 * 1024
_ID = re.compile(EVENT_ID_PATTERN)
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,128}$(?!\n)")


class Artifacts:
    def __init__(
        self, pg: PostgresStore, objects: ObjectStore, buckets: Sequence[str], bus: BusHandle | None = None
    ) -> None:
        self.db = ArtifactsDb(pg)
        self.objects = objects
        self.buckets = tuple(buckets)
        self.bus = bus  # the audit copies of deletions

    async def setup(self) -> None:
        for bucket in self.buckets:
            await self.objects.ensure_bucket(bucket)

    def _bucket(self, bucket: str | None) -> str:
        bucket = bucket or DEFAULT_BUCKET
        if bucket not in self.buckets:
            raise ValueError(f"bucket {bucket!r} is not one of {list(self.buckets)}")
        return bucket

    # -- inline uploads ------------------------------------------------------------
    def decode_inline(self, envelope: Envelope) -> FileRow:
        h = envelope.headers
        msg_id = h.get("Nats-Msg-Id", "")
        prefix = f"{envelope.agent}:"
        artifact_id = msg_id[len(prefix) :] if msg_id.startswith(prefix) else ""
        if not _ID.match(artifact_id):
            raise InvalidMessage(f"header Nats-Msg-Id must be '{prefix}{{id}}', got {msg_id[:80]!r}")
        content_type = h.get("Content-Type", "")
        if not _CONTENT_TYPE.match(content_type):
            raise InvalidMessage(f"header Content-Type {content_type[:80]!r} is not a media type")
        task_id = h.get("Task-Id") or None
        if task_id is not None and not _ID.match(task_id):
            raise InvalidMessage(f"header Task-Id {task_id[:80]!r} is not a valid id")
        try:
            bucket = self._bucket(h.get("Artifact-Bucket"))
            key = object_key(envelope.agent, task_id, artifact_id, h.get("Artifact-Name", ""))
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
        return FileRow(
            file_id=f"{envelope.agent}:{artifact_id}", bucket=bucket, key=key,
            agent=envelope.agent, task_id=task_id, name=h["Artifact-Name"],
            content_type=content_type, size=len(envelope.data),
            sha256=hashlib.sha256(envelope.data).hexdigest(), etag=None, source="inline",
            data=envelope.data,
        )  # fmt: skip

    async def write_inline(self, rows: Sequence[FileRow]) -> Mapping[int, str]:
        async def put(row: FileRow) -> FileRow:
            assert row.data is not None
            etag = await self.objects.put(row.bucket, row.key, row.data, row.content_type)
            return FileRow(**{**row.__dict__, "etag": etag, "data": None})

        stored = await asyncio.gather(*(put(r) for r in rows))
        await self.register(stored)
        return {}

    # -- presigned uploads ---------------------------------------------------------
    async def presign(self, ctx: RequestContext, q: PresignRequest) -> dict[str, Any]:
        assert ctx.agent is not None
        try:
            bucket = self._bucket(q.bucket)
            key = object_key(ctx.agent, q.task_id, new_id(), check_name(q.name))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        expires = timedelta(seconds=q.expires_seconds)
        url = await self.objects.presign_put(bucket, key, expires)
        expires_at = datetime.now(UTC) + expires
        await self.db.add_pending(
            Pending(bucket, key, ctx.agent, q.task_id, q.name, q.content_type, expires_at)
        )
        return {
            "upload_url": url,
            "object_key": key,
            "bucket": bucket,
            "expires_at": iso(expires_at),
        }

    def decode_upload(self, envelope: Envelope) -> tuple[str, UploadIn, str]:
        upload = envelope.decode(UploadIn)
        try:
            bucket = self._bucket(upload.bucket)
            check_key(envelope.agent, upload.object_key)
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
        return envelope.agent, upload, bucket

    async def write_uploads(self, items: Sequence[tuple[str, UploadIn, str]]) -> Mapping[int, str]:
        refused: dict[int, str] = {}
        rows: list[FileRow] = []
        for index, (agent, upload, bucket) in enumerate(items):
            row = await self._checked(agent, upload, bucket)
            if row is None:
                refused[index] = f"no object {bucket}/{upload.object_key}; upload it first"
            else:
                rows.append(row)
        await self.register(rows)
        if rows:
            await self.db.confirm_pending(rows)
        return refused

    async def _checked(self, agent: str, upload: UploadIn, bucket: str) -> FileRow | None:
        """The metadata of an uploaded object, read from MinIO; None if it is not there."""
        info = await self.objects.stat(bucket, upload.object_key)
        if info is None:
            return None
        pending = await self.db.get_pending(bucket, upload.object_key)
        sha = None
        if info.size <= MAX_HASHED_BYTES:
            sha = hashlib.sha256(await self.objects.get(bucket, upload.object_key)).hexdigest()
        fallback_name = upload.object_key.rsplit("/", 1)[-1]
        fallback_type = info.content_type or "application/octet-stream"
        if pending is not None:
            fallback_name, fallback_type = pending["name"], pending["content_type"]
        return FileRow(
            file_id=f"{agent}:{upload.id}", bucket=bucket, key=upload.object_key, agent=agent,
            task_id=upload.task_id or (pending["task_id"] if pending else None),
            name=upload.name or fallback_name,
            content_type=upload.content_type or fallback_type,
            size=info.size, sha256=sha, etag=info.etag, source="presigned",
        )  # fmt: skip

    async def register(self, rows: Sequence[FileRow]) -> None:
        await self.db.register_files(rows)

    # -- queries -------------------------------------------------------------------
    async def query_files(self, ctx: RequestContext, q: FilesQuery) -> dict[str, Any]:
        after = pgwire.read_cursor(q.cursor, 1)
        rows = await self.db.list_files(
            ctx.scope(q.agent_ids), q.task_id, q.bucket, q.content_type, after, q.limit + 1
        )
        next_cursor = None
        if len(rows) > q.limit:
            last = rows[q.limit - 1]
            next_cursor = pgwire.page_cursor(last["created_at"], last["file_id"])
        items = [pgwire.to_wire(r, frozenset()) for r in rows[: q.limit]]
        return {"items": items, "next_cursor": next_cursor}

    async def query_screenshots(self, ctx: RequestContext, q: ScreenshotsQuery) -> dict[str, Any]:
        listed = await self.query_files(ctx, q)
        expires = timedelta(seconds=q.url_seconds)
        expires_at = iso(datetime.now(UTC) + expires)
        items = listed["items"]
        urls = await asyncio.gather(
            *(self.objects.presign_get(i["bucket"], i["object_key"], expires) for i in items)
        )
        for item, url in zip(items, urls, strict=True):
            item["url"], item["url_expires_at"] = url, expires_at
        return listed

    async def delete_files(self, ctx: RequestContext, q: DeleteFiles) -> dict[str, Any]:
        """Objects first, then the metadata: a crash between leaves metadata without an object,
        which `artifacts reconcile` reports, never an object nobody can find."""
        key_prefix = f"{q.agent_id}/{q.prefix}"
        objects = 0
        for bucket in self.buckets:
            async for info in self.objects.list(bucket, key_prefix):
                await self.objects.remove(bucket, info.key)
                objects += 1
        rows = await self.db.delete_prefix(q.agent_id, key_prefix)
        event = EventIn(id=new_id(), type="files_deleted",
                        payload={"prefix": q.prefix, "files": len(rows), "objects": objects})  # fmt: skip
        if self.bus is not None:
            with contextlib.suppress(AgentstoreError):  # the reply says what was deleted either way
                await self.bus.publish(
                    f"agents.{q.agent_id}.events", event, f"{q.agent_id}:{event.id}", copy=True
                )
        return {"agent_id": q.agent_id, "prefix": q.prefix, "files": len(rows), "objects": objects}

    async def file_url(self, ctx: RequestContext, q: FileUrlQuery) -> dict[str, Any]:
        row = await self.db.get_file(q.file_id)
        if row is None:
            raise NotFound(f"no file {q.file_id!r}")
        if ctx.agent is not None and row["agent_id"] != ctx.agent:
            raise Forbidden(f"agent {ctx.agent} may only fetch its own files")
        expires = timedelta(seconds=q.expires_seconds)
        try:
            url = await self.objects.presign_get(row["bucket"], row["object_key"], expires)
        except StoreRejected as exc:
            raise NotFound(str(exc)) from None
        return {"url": url, "expires_at": iso(datetime.now(UTC) + expires)}
