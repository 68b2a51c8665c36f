"""Retention: FerretDB has no TTL indexes, so a periodic sweep deletes what has aged out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.logs.collections import AGE_FIELD
from agentstore_server.stores.mongo import MongoStore


async def sweep_once(mongo: MongoStore, days: Mapping[str, float]) -> dict[str, int]:
    """Delete documents older than their collection's retention; returns counts."""
    now = datetime.now(UTC)
    deleted = {}
    for collection, keep_days in days.items():
        cutoff = now - timedelta(days=keep_days)
        deleted[collection] = await mongo.delete_many(collection, {AGE_FIELD[collection]: {"$lt": cutoff}})
    return deleted


def sweeper(mongo: MongoStore, days: Mapping[str, float], every_seconds: float) -> Periodic:
    async def sweep() -> dict[str, int]:
        deleted = await sweep_once(mongo, days)
        return {c: n for c, n in deleted.items() if n}

    return Periodic("logs retention sweep", every_seconds, sweep)
