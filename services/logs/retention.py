"""Retention: FerretDB has no TTL indexes, so a periodic sweep deletes what has aged out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstore.errors import StoreError
from agentstore.stores.mongo import MongoStore

log = logging.getLogger("agentstore.retention")

# The timestamp each collection ages by.
AGE_FIELD = {
    "logs": "ts",
    "memories": "ts",
    "conversations": "updated_at",
    "messages": "ts",
    "events": "ts",
    "agent_outputs": "ts",
}


async def sweep_once(mongo: MongoStore, days: Mapping[str, float]) -> dict[str, int]:
    """Delete documents older than their collection's retention; returns counts."""
    now = datetime.now(UTC)
    deleted = {}
    for collection, keep_days in days.items():
        cutoff = now - timedelta(days=keep_days)
        deleted[collection] = await mongo.delete_many(collection, {AGE_FIELD[collection]: {"$lt": cutoff}})
    return deleted


def sweeper(mongo: MongoStore, days: Mapping[str, float], every_seconds: float) -> Callable[[], Any]:
    async def loop() -> None:
        while True:
            try:
                deleted = await sweep_once(mongo, days)
                if any(deleted.values()):
                    log.info("retention sweep deleted %s", deleted)
            except StoreError as exc:
                log.warning("retention sweep failed, will retry: %s", exc)
            await asyncio.sleep(every_seconds)  # the sweep's period

    return loop
