"""The artifacts service's one door to PostgreSQL: a typed method per named query.

The SQL is in `queries.sql` (named parameters); nothing else in the service
writes SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agentstore_server.stores.postgres import Gateway, Record, load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))
MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class FileRow:
    file_id: str
    bucket: str
    key: str
    agent: str
    task_id: str | None
    name: str
    content_type: str
    size: int
    sha256: str | None
    etag: str | None
    source: str
    data: bytes | None = None  # inline uploads: the bytes to put


@dataclass(frozen=True)
class Pending:
    """A presigned upload not confirmed yet."""

    bucket: str
    key: str
    agent: str
    task_id: str | None
    name: str
    content_type: str
    expires_at: datetime


class ArtifactsDb(Gateway):
    """File metadata and pending presigned uploads."""

    async def register_files(self, rows: Sequence[FileRow]) -> None:
        await self.run.execute(
            Q["register_files"],
            file_ids=[r.file_id for r in rows],
            buckets=[r.bucket for r in rows],
            object_keys=[r.key for r in rows],
            agent_ids=[r.agent for r in rows],
            task_ids=[r.task_id for r in rows],
            names=[r.name for r in rows],
            content_types=[r.content_type for r in rows],
            sizes=[r.size for r in rows],
            sha256s=[r.sha256 for r in rows],
            etags=[r.etag for r in rows],
            sources=[r.source for r in rows],
        )

    async def add_pending(self, p: Pending) -> None:
        await self.run.execute(
            Q["add_pending"], bucket=p.bucket, object_key=p.key, agent_id=p.agent, task_id=p.task_id,
            name=p.name, content_type=p.content_type, expires_at=p.expires_at,
        )  # fmt: skip

    async def confirm_pending(self, rows: Sequence[FileRow]) -> None:
        await self.run.execute(
            Q["confirm_pending"], buckets=[r.bucket for r in rows], object_keys=[r.key for r in rows]
        )

    async def get_pending(self, bucket: str, key: str) -> Record | None:
        return await self.run.fetchrow(Q["get_pending"], bucket=bucket, object_key=key)

    async def expired_pending(self) -> list[Record]:
        return await self.run.fetch(Q["expired_pending"])

    async def all_pending(self) -> list[Record]:
        return await self.run.fetch(Q["all_pending"])

    async def drop_pending(self, bucket: str, key: str) -> None:
        await self.run.execute(Q["drop_pending"], bucket=bucket, object_key=key)

    async def get_file(self, file_id: str) -> Record | None:
        return await self.run.fetchrow(Q["get_file"], file_id=file_id)

    async def delete_prefix(self, agent_id: str, key_prefix: str) -> list[Record]:
        return await self.run.fetch(Q["delete_prefix"], agent_id=agent_id, key_prefix=key_prefix)

    async def list_files(
        self,
        agent_ids: list[str] | None,
        task_id: str | None,
        bucket: str | None,
        content_type: str | None,
        after: tuple[datetime | None, list[str]],
        limit: int,
    ) -> list[Record]:
        at, (file_id,) = after
        return await self.run.fetch(
            Q["list_files"], agent_ids=agent_ids, task_id=task_id, bucket=bucket, content_type=content_type,
            after_ts=at, after_file=file_id, limit=limit,
        )  # fmt: skip

    async def bucket_keys(self, bucket: str) -> list[Record]:
        return await self.run.fetch(Q["bucket_keys"], bucket=bucket)

    async def delete_file(self, file_id: str) -> None:
        await self.run.execute(Q["delete_file"], file_id=file_id)
