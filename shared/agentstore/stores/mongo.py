"""The one MongoDB adapter. Nothing else imports motor or pymongo.

It speaks only what both MongoDB and FerretDB 1.24 support: no transactions,
no TTL indexes, no change streams. Moving from motor to PyMongo's async API
changes this file alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import IndexModel, UpdateOne
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

from agentstore.errors import StoreRejected, StoreUnavailable

log = logging.getLogger("agentstore.mongo")

DUPLICATE_KEY = 11000
_TRANSIENT = (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

Document = dict[str, Any]
# Index keys: [("agent_id", 1), ("ts", -1)]
IndexKeys = Sequence[tuple[str, int]]


def _convert(exc: PyMongoError, url: str) -> Exception:
    if isinstance(exc, _TRANSIENT):
        return StoreUnavailable(f"MongoDB at {url} is unreachable ({exc}); is `make up` running?")
    return StoreRejected(str(exc))


class MongoStore:
    """A database of the MongoDB-wire server, with the few operations services need."""

    def __init__(self, url: str, database: str, *, timeout_ms: int = 3000) -> None:
        self.url = url
        self._client: AsyncIOMotorClient[Document] = AsyncIOMotorClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms * 5, 15000),
            retryWrites=False,  # FerretDB 1.x has no retryable writes
            tz_aware=True,
        )
        self._db: AsyncIOMotorDatabase[Document] = self._client[database]

    async def __aenter__(self) -> MongoStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    async def ping(self) -> None:
        try:
            await self._db.command("ping")
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc

    async def ensure_indexes(
        self, collection: str, indexes: Mapping[str, tuple[IndexKeys, bool]]
    ) -> None:
        """Create named indexes (keys, unique) idempotently.

        Only missing indexes are created, one per command: FerretDB 1.24.2
        panics ("slice bounds out of range") on a multi-index createIndexes
        whose indexes already exist.
        """
        try:
            existing = await self._db[collection].index_information()
            for name, (keys, unique) in indexes.items():
                if name not in existing:
                    await self._db[collection].create_indexes(
                        [IndexModel(list(keys), name=name, unique=unique)]
                    )
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc

    async def insert_new(self, collection: str, docs: Sequence[Document]) -> dict[int, str]:
        """Insert documents keyed by `_id`; ones already there are left as they are.

        Returns {index: reason} for documents the server refused for good
        (duplicates are success: that is how redelivery stays harmless).
        """
        if not docs:
            return {}
        try:
            await self._db[collection].insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            return self._refused(exc)
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc
        return {}

    async def upsert_many(
        self, collection: str, updates: Sequence[tuple[Document, Document]]
    ) -> dict[int, str]:
        """Apply (filter, update) pairs as unordered upserts in one round trip.

        A duplicate-key error on an upsert means a guarded filter did not
        match an existing newer document: the write is stale and is dropped.
        """
        if not updates:
            return {}
        ops = [UpdateOne(f, u, upsert=True) for f, u in updates]
        try:
            await self._db[collection].bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            return self._refused(exc)
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc
        return {}

    def _refused(self, exc: BulkWriteError) -> dict[int, str]:
        details = exc.details or {}
        if details.get("writeConcernErrors"):
            raise StoreUnavailable(f"MongoDB write concern failed: {details['writeConcernErrors']}")
        return {
            err["index"]: str(err.get("errmsg", "refused"))
            for err in details.get("writeErrors", [])
            if err.get("code") != DUPLICATE_KEY
        }

    async def find(
        self,
        collection: str,
        filter: Document,
        *,
        sort: IndexKeys = (),
        limit: int = 0,
        projection: Document | None = None,
    ) -> list[Document]:
        try:
            cursor = self._db[collection].find(filter, projection)
            if sort:
                cursor = cursor.sort(list(sort))
            if limit:
                cursor = cursor.limit(limit)
            return [doc async for doc in cursor]
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc

    async def find_one(self, collection: str, filter: Document) -> Document | None:
        try:
            return await self._db[collection].find_one(filter)
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc

    async def count(self, collection: str, filter: Document) -> int:
        try:
            return int(await self._db[collection].count_documents(filter))
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc

    async def delete_many(self, collection: str, filter: Document) -> int:
        try:
            result = await self._db[collection].delete_many(filter)
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc
        return int(result.deleted_count)

    async def explain(
        self, collection: str, filter: Document, sort: IndexKeys, limit: int
    ) -> Document:
        """The server's query plan, to check that a query uses an index."""
        try:
            cursor = self._db[collection].find(filter).sort(list(sort)).limit(limit)
            plan: Document = await cursor.explain()
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc
        return plan

    async def drop_database(self) -> None:
        try:
            await self._client.drop_database(self._db.name)
        except PyMongoError as exc:
            raise _convert(exc, self.url) from exc
