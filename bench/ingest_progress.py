"""Task progress ingest, next to its baselines, against the same servers in one run.

Prints per second: the tasks service storing `agents.{agent}.progress`
(fetch -> msgspec -> one unnest INSERT per batch -> ack), the raw JetStream
consume rate of the same messages (fetch + ack, no storage), a direct COPY
of the same rows, and one awaited INSERT per event (the seeds' way).
Targets: >= 0.7 of the raw consume rate, >= 5x the seeds' way.

    python -m bench.ingest_progress [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import nats

from agentstore.contract import STREAMS
from agentstore_server.stores.postgres import PostgresStore
from agentstore_server.tasks.db import MIGRATIONS
from bench.common import bench_stack, raw_consume, report, service_drain


def events(n: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (f"agent{i % 200:03d}", {"id": uuid.uuid4().hex, "task_id": f"task-{i % 5000}",
                                 "step": i % 50, "status": "ok", "percent": float(i % 100),
                                 "detail": {"tool": "browser", "i": i}})
        for i in range(n)
    ]  # fmt: skip


async def fresh_db(url: str) -> PostgresStore:
    store = PostgresStore(url)
    await store.__aenter__()
    await store.migrate("tasks", MIGRATIONS)
    return store


async def direct_copy(url: str, rows: list[tuple[str, dict[str, object]]]) -> float:
    pg = await fresh_db(url)
    now = datetime.now(UTC)
    records = [(a, e["id"], e["task_id"], now, e["step"], e["status"], e["percent"],
                msgspec.json.encode(e["detail"]).decode()) for a, e in rows]  # fmt: skip
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    for i in range(0, len(records), 5000):
        await conn.copy_records_to_table(
            "task_progress", records=records[i : i + 5000],
            columns=["agent_id", "id", "task_id", "ts", "step", "status", "percent", "detail"],
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    await conn.close()
    await pg.__aexit__()
    return len(records) / elapsed


async def seeds_way(url: str, rows: list[tuple[str, dict[str, object]]], seconds: float) -> float:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    done = 0
    now = datetime.now(UTC)
    for agent, e in rows:
        await conn.execute(
            "INSERT INTO task_progress (agent_id, id, task_id, ts, step, status, percent, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
            agent, f"s-{e['id']}", e["task_id"], now, e["step"], e["status"], e["percent"],
            msgspec.json.encode(e["detail"]).decode(),
        )  # fmt: skip
        done += 1
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    await conn.close()
    return done / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    rows = events(args.events)
    items = [(f"agents.{a}.progress", msgspec.json.encode(e), {"Nats-Msg-Id": f"{a}:{e['id']}"})
             for a, e in rows]  # fmt: skip
    with bench_stack() as stack:
        from agentstore_server.devstack import servers

        def db() -> str:
            return servers.create_database(stack.postgres.address, f"b{uuid.uuid4().hex[:8]}")

        raw = await raw_consume(stack, items)
        copy = await direct_copy(db(), rows)
        seeds_url = db()
        await (await fresh_db(seeds_url)).__aexit__()
        seeds = await seeds_way(seeds_url, rows, seconds=10)
        settings = stack.settings(postgres_url=db(), ingest_workers=2, ingest_batch=500)
        service = await service_drain(stack, "tasks", STREAMS["TASKS"], items, settings)
        # A second run with two processes (as two replicas would be): Python uses one core each.
        await _reset_stream(stack)
        settings = stack.settings(postgres_url=db(), ingest_workers=2, service_processes=2)
        service2 = await service_drain(stack, "tasks", STREAMS["TASKS"], items, settings)
    report(
        f"task progress ingest, {args.events:,} events",
        [
            ("tasks service", service),
            ("tasks service, 2 processes", service2),
            ("raw JetStream consume", raw),
            ("direct COPY", copy),
            ("seeds' way (INSERT each)", seeds),
        ],
        "events/s",
        [
            ("service / raw consume", "tasks service", "raw JetStream consume", 0.7),
            ("2 processes / raw consume", "tasks service, 2 processes", "raw JetStream consume", 0.7),
            ("service / seeds' way", "tasks service", "seeds' way (INSERT each)", 5.0),
            ("service / direct COPY", "tasks service", "direct COPY", 0.0),
        ],
    )


async def _reset_stream(stack: Any) -> None:
    """Drop the TASKS stream so the next service run starts from an empty one."""
    nc = await nats.connect(stack.nats.url)
    await nc.jetstream().delete_stream("TASKS")
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
