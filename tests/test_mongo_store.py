"""MongoStore against the session's MongoDB-wire server (FerretDB 1.24 on PostgreSQL
unless a real mongod is on PATH): what its commands must never do to the server."""

from __future__ import annotations

import asyncio
import uuid

from agentstore_server.devstack.servers import Server
from agentstore_server.stores.mongo import MongoStore


async def test_upserting_many_existing_documents_leaves_the_server_serving(mongo_server: Server) -> None:
    """FerretDB 1.24 holds a PostgreSQL connection, from a pool of 50, for each statement of
    an `update` command that matched a document, until the whole command ends. One command
    of 100 such upserts (the agents one ingest batch marks seen, bench.ingest_logs) never
    ended, and FerretDB served nobody after it. MongoStore sends a few statements a command."""
    store = MongoStore(mongo_server.url, f"many{uuid.uuid4().hex[:8]}")
    try:
        assert await store.insert_new("agents", [{"_id": f"a{i:03d}", "n": 0} for i in range(120)]) == {}
        updates = [({"_id": f"a{i:03d}", "n": {"$lt": 1}}, {"$set": {"n": 1}}) for i in range(120)]
        assert await asyncio.wait_for(store.upsert_many("agents", updates), timeout=60) == {}
        assert await store.count("agents", {"n": 1}) == 120
        assert await store.insert_new("agents", [{"_id": "after", "n": 2}]) == {}
        assert await store.find_one("agents", {"_id": "after"}) == {"_id": "after", "n": 2}
    finally:
        await store.drop_database()
        await store.close()
