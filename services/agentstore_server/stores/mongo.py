"""The one MongoDB adapter. Nothing else imports pymongo.

It speaks only what both MongoDB and FerretDB 1.24 support: no transactions,
no TTL indexes, no change streams. It uses PyMongo's async API
(`AsyncMongoClient`), motor's successor (motor reached end of life in May
2026); the FerretDB workarounds below (one index per createIndexes, raw
`update` commands, converge) are re-tested on it by the whole suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import bson
from bson import json_util
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from agentstore.errors import StoreMisconfigured, StoreRejected, StoreUnavailable

log = logging.getLogger("agentstore.mongo")

DUPLICATE_KEY = 11000

Document = dict[str, Any]
# Index keys: [("agent_id", 1), ("ts", -1)]
IndexKeys = Sequence[tuple[str, int]]


# Keep each command well under MongoDB's 16 MiB message limit.
_CHUNK_BYTES = 8 * 1024 * 1024
# And to a few statements: FerretDB 1.24 holds a PostgreSQL connection, from a pool of
# 50, for each statement of an `update` that matched a document until the whole command
# ends (its handler defers each statement's cursor close to the end), and the write needs
# one more. A command of 100 matched upserts never ended and FerretDB served nobody after
# (tests/test_mongo_store.py). 8 a command leaves room for the other collections' upserts
# running at the same time; real MongoDB pays only the extra round trips.
_CHUNK_STATEMENTS = 8


def _chunks(indexes: list[int], updates: list[tuple[Document, Document]]) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    size = 0
    for index, (f, u) in zip(indexes, updates, strict=True):
        n = len(bson.encode(f)) + len(bson.encode(u))
        if chunks[-1] and (size + n > _CHUNK_BYTES or len(chunks[-1]) == _CHUNK_STATEMENTS):
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += n
    return chunks


# Server error codes (MongoDB's error_codes.yml; FerretDB answers with the same codes).
# Unauthorized, AuthenticationFailed: the deployment's login or roles are wrong.
_DEPLOYMENT_CODES = frozenset({13, 18})
# A server shutting down, stepping down or timing out: the same write succeeds later.
_TRANSIENT_CODES = frozenset({
    6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
})  # fmt: skip
# The data: bad value, type mismatch, failed to parse, `$`- or dot-named fields, a document
# or a key too large, an index key too long, duplicates where they are not success.
_DATA_CODES = frozenset({2, 9, 14, 17, 52, 56, 57, 10334, 17280, 16755, DUPLICATE_KEY})
# FerretDB answers InternalError (code 1) when its own PostgreSQL backend is away: by the
# words of its driver, a connection failure is the backend's outage, not the document.
_INTERNAL_ERROR = 1
_BACKEND_DOWN = re.compile(
    r"failed to connect|dial error|connection refused|connection reset|broken pipe|"
    r"the database system is (starting up|shutting down|not yet accepting)|conn closed|unexpected EOF",
    re.IGNORECASE,
)


def _backend_down(code: object, message: str) -> bool:
    return code == _INTERNAL_ERROR and _BACKEND_DOWN.search(message) is not None


# Raised by pymongo's BSON encoder before anything is sent: the document cannot be encoded
# (an int past int64, a str with an unpaired surrogate, a key BSON refuses).
_ENCODING_ERRORS = (bson.errors.BSONError, OverflowError, UnicodeEncodeError)


def convert(exc: BaseException, url: str) -> Exception | None:
    """The one table from pymongo's and bson's errors to ours, most specific first: server
    codes before classes. None: not an error of the store (a bug in the caller, such as an
    `InvalidOperation`), left to the ingest loop's isolation."""
    if isinstance(exc, OperationFailure) and not isinstance(exc, BulkWriteError | WriteConcernError):
        if exc.code in _DEPLOYMENT_CODES:
            return StoreMisconfigured(
                f"MongoDB at {url} refused: {exc}; check the deployment's user and roles"
            )
        if (exc.code in _TRANSIENT_CODES or exc.has_error_label("RetryableWriteError")
                or _backend_down(exc.code, str(exc))):  # fmt: skip
            return StoreUnavailable(f"MongoDB at {url} is unavailable ({exc}); retrying")
        if exc.code in _DATA_CODES:
            return StoreRejected(f"MongoDB refused it: {exc}")
        if isinstance(exc, ExecutionTimeout):
            return StoreUnavailable(f"MongoDB at {url} timed out ({exc}); retrying")
        # A code not listed: the server refused this operation; other operations go on.
        return StoreRejected(f"MongoDB refused it (code {exc.code}): {exc}")
    if isinstance(exc, ConnectionFailure | WriteConcernError):
        return StoreUnavailable(f"MongoDB at {url} is unreachable ({exc}); is `make up` running?")
    if isinstance(exc, ConfigurationError):
        return StoreMisconfigured(f"MongoDB at {url}: {exc}; check MONGODB_URL")
    if isinstance(exc, _ENCODING_ERRORS):
        return StoreRejected(f"the document cannot be encoded as BSON ({type(exc).__name__}: {exc})")
    return None


@contextlib.contextmanager
def driver_errors(url: str) -> Iterator[None]:
    """The one place pymongo's and bson's errors become ours (see `convert`)."""
    try:
        yield
    except (PyMongoError, *_ENCODING_ERRORS) as exc:
        converted = convert(exc, url)
        if converted is None:
            raise
        raise converted from exc


class MongoStore:
    """A database of the MongoDB-wire server, with the few operations services need."""

    def __init__(self, url: str, database: str, *, timeout_ms: int = 3000) -> None:
        """Reads over the wire; `readers.reading` may put FerretDB's SQL tables in front."""
        self.url = url
        self._locks: dict[str, asyncio.Lock] = {}
        self._client: AsyncMongoClient[Document] = AsyncMongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms * 5, 15000),
            retryWrites=False,  # FerretDB 1.x has no retryable writes
            tz_aware=True,
        )
        self._db: AsyncDatabase[Document] = self._client[database]

    def lock(self, name: str) -> asyncio.Lock:
        """A lock of this process by name, for read-modify-write sequences FerretDB 1.x does
        not make atomic (`logs.documents.converge`)."""
        return self._locks.setdefault(name, asyncio.Lock())

    async def __aenter__(self) -> MongoStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    async def build_info(self) -> Document:
        """The server's buildInfo (FerretDB adds `ferretdbVersion`)."""
        with driver_errors(self.url):
            info: Document = await self._db.command("buildInfo")
        return info

    async def ping(self) -> None:
        with driver_errors(self.url):
            await self._db.command("ping")

    async def ensure_indexes(self, collection: str, indexes: Mapping[str, tuple[IndexKeys, bool]]) -> None:
        """Create named indexes (keys, unique) idempotently.

        Only missing indexes are created, one per command: FerretDB 1.24.2
        panics ("slice bounds out of range") on a multi-index createIndexes
        whose indexes already exist.
        """
        with driver_errors(self.url):
            existing = await self._db[collection].index_information()
            for name, (keys, unique) in indexes.items():
                if name not in existing:
                    await self._db[collection].create_indexes(
                        [IndexModel(list(keys), name=name, unique=unique)]
                    )

    async def drop_indexes(self, collection: str, names: Sequence[str]) -> None:
        """Drop these named indexes where they exist (ones a newer index replaced)."""
        with driver_errors(self.url):
            existing = await self._db[collection].index_information()
            for name in names:
                if name in existing:
                    await self._db[collection].drop_index(name)

    async def insert_new(self, collection: str, docs: Sequence[Document]) -> dict[int, str]:
        """Insert documents keyed by `_id`; ones already there are left as they are.

        Returns {index: reason} for documents the server refused for good
        (duplicates are success: that is how redelivery stays harmless).
        """
        if not docs:
            return {}
        with driver_errors(self.url):
            try:
                await self._db[collection].insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                return self._refused(exc)
        return {}

    async def upsert_many(
        self, collection: str, updates: Sequence[tuple[Document, Document]]
    ) -> dict[int, str]:
        """Apply (filter, update) pairs as unordered upserts.

        A guarded filter (`{"_id": k, "ts": {"$lte": new}}`) makes the write
        conditional: when a newer document exists the filter misses, the
        upsert collides on `_id`, and the stale write is dropped. A collision
        can also mean a concurrent insert won a race, so collided writes are
        retried once; a second collision is the stale case.

        Sent as raw `update` commands: pymongo's bulk_write cannot parse
        FerretDB's reply when it holds write errors (no `nModified`).
        """
        refused: dict[int, str] = {}
        pending = list(range(len(updates)))
        for _attempt in range(2):
            collided: list[int] = []
            with driver_errors(self.url):  # encoding each statement to size the chunks
                chunks = _chunks(pending, [updates[i] for i in pending])
            for chunk in chunks:
                errors = await self._update(collection, [updates[i] for i in chunk])
                for pos, (code, message) in errors.items():
                    index = chunk[pos]
                    if code == DUPLICATE_KEY:
                        collided.append(index)
                    else:
                        refused[index] = message
            pending = collided
            if not pending:
                break
        return refused

    async def _update(
        self, collection: str, updates: Sequence[tuple[Document, Document]]
    ) -> dict[int, tuple[int, str]]:
        command = {
            "update": collection,
            "updates": [{"q": f, "u": u, "upsert": True} for f, u in updates],
            "ordered": False,
        }
        with driver_errors(self.url):
            reply = await self._db.command(command)
        if reply.get("writeConcernError"):
            raise StoreUnavailable(f"MongoDB write concern failed: {reply['writeConcernError']}")
        return {
            err["index"]: (int(err.get("code", 0)), str(err.get("errmsg", "refused")))
            for err in reply.get("writeErrors", [])
        }

    @staticmethod
    def _refused(exc: BulkWriteError) -> dict[int, str]:
        details = exc.details or {}
        if details.get("writeConcernErrors"):
            raise StoreUnavailable(f"MongoDB write concern failed: {details['writeConcernErrors']}")
        down = [
            e
            for e in details.get("writeErrors", [])
            if _backend_down(e.get("code"), str(e.get("errmsg", "")))
        ]
        if down:
            raise StoreUnavailable(f"MongoDB's backend is unavailable: {down[0].get('errmsg')}")
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
        with driver_errors(self.url):
            cursor = self._db[collection].find(filter, projection)
            if sort:
                cursor = cursor.sort(list(sort))
            if limit:
                cursor = cursor.limit(limit)
            return [doc async for doc in cursor]

    async def aggregate(self, collection: str, pipeline: Sequence[Document]) -> list[Document]:
        with driver_errors(self.url):
            cursor = await self._db[collection].aggregate(list(pipeline))
            return [doc async for doc in cursor]

    async def count_by(self, collection: str, filter: Document, key: str) -> dict[Any, int]:
        """Matching documents per value of the text field `key` (None: documents without it)."""
        # FerretDB pushes down a first $match of plain equalities (only those): they go first.
        plain = {k: v for k, v in filter.items() if not k.startswith("$") and not isinstance(v, dict | list)}
        rest = {k: v for k, v in filter.items() if k not in plain}
        pipeline: list[Document] = [{"$match": m} for m in (plain, rest) if m]
        pipeline.append({"$group": {"_id": f"${key}", "n": {"$sum": 1}}})
        return {row["_id"]: int(row["n"]) for row in await self.aggregate(collection, pipeline)}

    async def find_one(self, collection: str, filter: Document) -> Document | None:
        with driver_errors(self.url):
            return await self._db[collection].find_one(filter)

    async def find_by_ids(self, collection: str, ids: Sequence[Any]) -> dict[Any, Document]:
        """The stored documents of these `_id`s (missing ones absent): one find_one each, since
        FerretDB 1.24 filters an `$in` itself, reading the whole collection."""
        found = {}
        for key in ids:
            doc = await self.find_one(collection, {"_id": key})
            if doc is not None:
                found[key] = doc
        return found

    async def count(self, collection: str, filter: Document) -> int:
        with driver_errors(self.url):
            return int(await self._db[collection].count_documents(filter))

    async def delete_many(self, collection: str, filter: Document) -> int:
        with driver_errors(self.url):
            result = await self._db[collection].delete_many(filter)
        return int(result.deleted_count)

    async def explain(self, collection: str, filter: Document, sort: IndexKeys, limit: int) -> Document:
        """The server's query plan, to check that a query uses an index."""
        with driver_errors(self.url):
            cursor = self._db[collection].find(filter).sort(list(sort)).limit(limit)
            plan: Document = await cursor.explain()
        return plan

    async def collection_names(self) -> list[str]:
        with driver_errors(self.url):
            return list(await self._db.list_collection_names())

    async def drop_collection(self, collection: str) -> None:
        with driver_errors(self.url):
            await self._db.drop_collection(collection)

    async def drop_database(self) -> None:
        with driver_errors(self.url):
            await self._client.drop_database(self._db.name)


def to_extended_json(doc: Document) -> str:
    """A document as one line of canonical Extended JSON (types kept: dates, ObjectIds, ...)."""
    return str(json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS))


def from_extended_json(line: bytes | str) -> Document:
    doc: Document = json_util.loads(line)
    return doc
