"""Metrics: ingest with rollups, and bucketed queries over many points, in one run.

Part 1 prints points/s of the metrics service (rollups included) next to the
raw JetStream consume rate of the same messages and a direct COPY of the
same rows (target >= 0.8 of raw consume). Part 2 loads --points (default
10,000,000: one metric, 100 agents, 30 days) with COPY and builds the
rollups as ingest would, then prints p50/p99 of `query.metrics` bucketed
hourly over the 30 days, next to the same aggregate computed over the raw
table in the same run.

    python -m bench.ingest_metrics [--events 100000] [--points 10000000] [--queries 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import nats

from agentstore.contract import STREAMS
from agentstore_server.devstack import servers
from agentstore_server.metrics.db import MIGRATIONS, Q
from agentstore_server.stores.postgres import PostgresStore
from bench.common import BenchStack, bench_stack, raw_consume, report, service_drain

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30


async def migrated(url: str) -> None:
    async with PostgresStore(url) as pg:
        await pg.migrate("metrics", MIGRATIONS)


async def ingest_part(stack: BenchStack, n: int, db: str) -> tuple[float, float, float, float]:
    rng = random.Random(5)
    points = [(f"agent{i % 100:03d}", {"id": uuid.uuid4().hex, "name": "reward",
               "value": rng.random(), "ts": (START + timedelta(seconds=i)).isoformat()})
              for i in range(n)]  # fmt: skip
    items = [(f"agents.{a}.metrics", msgspec.json.encode(p), {"Nats-Msg-Id": f"{a}:{p['id']}"})
             for a, p in points]  # fmt: skip
    raw = await raw_consume(stack, items)
    raw_ours = await raw_consume(stack, items, agentstore_fetch=True)
    copy_url = servers.create_database(stack.postgres.address, f"m{uuid.uuid4().hex[:8]}")
    await migrated(copy_url)
    conn = await asyncpg.connect(copy_url)
    records = [(a, p["id"], "reward", START + timedelta(seconds=i), p["value"])
               for i, (a, p) in enumerate(points)]  # fmt: skip
    started = time.perf_counter()
    for i in range(0, len(records), 5000):
        await conn.copy_records_to_table(
            "metric_points", records=records[i : i + 5000],
            columns=["agent_id", "id", "name", "ts", "value"],
        )  # fmt: skip
    copy = len(records) / (time.perf_counter() - started)
    await conn.close()
    settings = stack.settings(postgres_url=db, ingest_workers=2)
    service = await service_drain(stack, "metrics", STREAMS["METRICS"], items, settings)
    return service, raw, raw_ours, copy


async def load_many(url: str, points: int) -> float:
    """COPY `points` over DAYS for 100 agents, then build rollups the way ingest does."""
    await migrated(url)
    conn = await asyncpg.connect(url)
    step = DAYS * 86400 / (points / 100)
    started = time.perf_counter()
    batch = 200_000
    for offset in range(0, points, batch):
        count = min(batch, points - offset)
        await conn.execute(
            """INSERT INTO metric_points (agent_id, id, name, ts, value)
               SELECT 'agent' || lpad((g % 100)::text, 3, '0'), 'p' || g, 'reward',
                      $1::timestamptz + make_interval(secs => (g / 100) * $2::float8), random()
               FROM generate_series($3::bigint, $4::bigint) g""",
            START, step, offset, offset + count - 1,
        )  # fmt: skip
    for tier in (60, 3600):
        await conn.execute(
            """INSERT INTO metric_rollups
               SELECT $1::int, name, agent_id, coalesce(experiment_id, ''),
                      date_bin(make_interval(secs => $1::int), ts, 'epoch'), count(*), sum(value),
                      min(value), max(value),
                      (array_agg(value ORDER BY ts DESC, id DESC))[1], max(ts),
                      (array_agg(id ORDER BY ts DESC, id DESC))[1]
               FROM metric_points GROUP BY 2, 3, 4, 5""",
            tier,
        )
    await conn.execute("ANALYZE")
    await conn.close()
    return points / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def query_part(stack: BenchStack, url: str, queries: int) -> tuple[list[float], list[float]]:
    settings = stack.settings(postgres_url=url)
    service = servers.start_service(
        "metrics", stack.service_env(settings), stack.root / "metrics-q.log", servers.free_port()
    )
    nc = await nats.connect(stack.nats.url)
    conn = await asyncpg.connect(url)
    # All 100 agents x 720 hourly buckets = 72,000 points: more than one message holds, so
    # the reply comes in pages (limit 20,000); the time is that of every page.
    agents = [f"agent{i:03d}" for i in range(100)]
    body = {"name": "reward", "since": START.isoformat(), "agent_ids": agents, "limit": 20_000,
            "until": (START + timedelta(days=DAYS)).isoformat(), "bucket_seconds": 3600, "agg": "avg"}  # fmt: skip
    via, raw = [], []
    try:
        for _ in range(queries):
            t = time.perf_counter()
            cursor, points = None, 0
            while True:
                reply = await nc.request(
                    "query.metrics", msgspec.json.encode({**body, "cursor": cursor}), timeout=120
                )
                answer = msgspec.json.decode(reply.data)
                assert answer.get("tier_seconds") == 3600, (reply.headers, answer)
                points += sum(len(s["points"]) for s in answer["series"])
                cursor = answer["next_cursor"]
                if cursor is None:
                    break
            via.append(time.perf_counter() - t)
            assert points == 100 * DAYS * 24, points
            t = time.perf_counter()
            raw_buckets = Q["raw_buckets"]
            await conn.fetch(raw_buckets.text, *raw_buckets.args({
                "name": "reward", "agent_ids": agents, "experiment_id": None, "since": START,
                "until": START + timedelta(days=DAYS), "bucket_seconds": 3600, "agg": "avg",
                "after_agent": None, "after_bucket": None, "limit": 1_000_000}))  # fmt: skip
            raw.append(time.perf_counter() - t)
    finally:
        await conn.close()
        await nc.close()
        service.stop()
    return via, raw


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    with bench_stack() as stack:
        ingest_db = servers.create_database(stack.postgres.address, "ingest")
        service, raw, raw_ours, copy = await ingest_part(stack, args.events, ingest_db)
        report(
            f"metrics ingest, {args.events:,} points (rollups kept at ingest)",
            [("metrics service", service), ("raw JetStream consume", raw),
             ("raw consume, agentstore's fetch", raw_ours), ("direct COPY", copy)],
            "points/s",
            [
                ("service / raw consume", "metrics service", "raw JetStream consume", 0.8),
                ("service / raw consume with the services' fetch", "metrics service",
                 "raw consume, agentstore's fetch", 0.0),
                ("service / direct COPY", "metrics service", "direct COPY", 0.0),
            ],
        )  # fmt: skip
        query_db = servers.create_database(stack.postgres.address, "query")
        rate = await load_many(query_db, args.points)
        print(f"\nloaded {args.points:,} points (100 agents, {DAYS} days) at {rate:,.0f}/s")
        via, raw_sql = await query_part(stack, query_db, args.queries)
    print(
        f"== query.metrics, hourly avg over {DAYS} days, all 100 agents in pages of 20,000 points ({args.queries} queries)"
    )
    print(
        f"  query.metrics (1h rollups)  p50 {percentile(via, 0.5):8.1f} ms  p99 {percentile(via, 0.99):8.1f} ms"
    )
    print(
        f"  raw-table aggregate (SQL)   p50 {percentile(raw_sql, 0.5):8.1f} ms  p99 {percentile(raw_sql, 0.99):8.1f} ms"
    )
    print(f"  raw / rollup p99: {percentile(raw_sql, 0.99) / percentile(via, 0.99):.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
