"""`query.logs` latency over a loaded logs collection, next to the same query sent directly.

Loads N logs from A agents spread over a day (default 1,000,000 from 1,000),
starts the logs service, then measures `query.logs` (one agent, one hour,
limit 100) p50/p99 through NATS and the same find() issued directly with
PyMongo's async client, first idle and then while ingest runs at full speed. Targets: p99
within 2x of direct, and under 25 ms idle.

    python -m bench.query_logs [--logs 1000000] [--agents 1000] [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
from pymongo import AsyncMongoClient

from agentstore.devstack import servers
from agentstore.schemas.common import LEVEL_NUMBERS
from agentstore.stores.mongo import MongoStore
from agentstore_services.logs.logs import COLLECTION, INDEXES
from bench.common import bench_stack

DAY = timedelta(days=1)
START = datetime(2026, 11, 1, tzinfo=UTC)


async def load(mongo: MongoStore, n: int, agents: int) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    batch = []
    for i in range(n):
        agent = f"agent{i % agents:04d}"
        level = rng.choice(("debug", "info", "info", "warning", "error"))
        batch.append(
            {
                "_id": f"{agent}:{uuid.uuid4().hex}",
                "agent_id": agent,
                "id": uuid.uuid4().hex,
                "ts": START + DAY * rng.random(),
                "level": level,
                "level_no": LEVEL_NUMBERS[level],
                "message": f"step {i} of the plan went as expected",
                "task_id": f"task-{rng.randrange(100)}",
            }
        )
        if len(batch) == 2000:
            await mongo.insert_new(COLLECTION, batch)
            batch = []
    if batch:
        await mongo.insert_new(COLLECTION, batch)
    return n / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def measure(nc: Any, coll: Any, agents: int, queries: int) -> dict[str, list[float]]:
    rng = random.Random(11)
    via_nats, direct = [], []
    for _ in range(queries):
        agent = f"agent{rng.randrange(agents):04d}"
        since = START + timedelta(hours=rng.randrange(23))
        until = since + timedelta(hours=1)
        body = {"agent_ids": [agent], "since": since.isoformat(), "until": until.isoformat()}
        t = time.perf_counter()
        reply = await nc.request("query.logs", msgspec.json.encode(body), timeout=30)
        via_nats.append(time.perf_counter() - t)
        assert not (reply.headers or {}).get("Nats-Service-Error-Code"), reply.data
        t = time.perf_counter()
        cursor = coll.find({"agent_id": agent, "ts": {"$gte": since, "$lt": until}})
        [d async for d in cursor.sort([("ts", -1), ("_id", -1)]).limit(101)]
        direct.append(time.perf_counter() - t)
    return {"query.logs": via_nats, "direct pymongo": direct}


async def ingest_forever(url: str, stop: asyncio.Event) -> int:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=2000)
    sent = 0
    body = msgspec.json.encode({"id": "x", "level": "info", "message": "background ingest"})
    while not stop.is_set():
        futures = []
        for _ in range(1000):
            event_id = uuid.uuid4().hex
            data = body.replace(b'"x"', f'"{event_id}"'.encode())
            futures.append(await js.publish_async(f"agents.load{sent % 50}.logs", data))
            sent += 1
        await asyncio.gather(*futures)
    await nc.close()
    return sent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    with bench_stack() as stack:
        settings = stack.settings()
        mongo = MongoStore(stack.mongo.url, settings.mongodb_db)
        for name, spec in INDEXES.items():
            await mongo.ensure_indexes(COLLECTION, {name: spec})
        rate = await load(mongo, args.logs, args.agents)
        print(f"loaded {args.logs:,} logs from {args.agents:,} agents at {rate:,.0f}/s")
        service = servers.start_service(
            "logs", stack.service_env(settings), stack.root / "logs.log", servers.free_port()
        )
        client: AsyncMongoClient[Any] = AsyncMongoClient(stack.mongo.url)
        coll = client[settings.mongodb_db][COLLECTION]
        nc = await nats.connect(stack.nats.url)
        try:
            await measure(nc, coll, args.agents, 10)  # warm up
            idle = await measure(nc, coll, args.agents, args.queries)
            stop = asyncio.Event()
            loader = asyncio.create_task(ingest_forever(stack.nats.url, stop))
            busy = await measure(nc, coll, args.agents, args.queries)
            stop.set()
            sent = await loader
        finally:
            await nc.close()
            await client.close()
            await mongo.close()
            service.stop()
    print(f"\n== query.logs, one agent, one hour, limit 100 ({args.queries} queries each)")
    for label, runs in (("idle", idle), (f"under ingest ({sent:,} published)", busy)):
        for name, values in runs.items():
            print(
                f"  {label:<32} {name:<12} p50 {percentile(values, 0.5):7.1f} ms"
                f"   p99 {percentile(values, 0.99):7.1f} ms"
            )
    for label, runs in (("idle", idle), ("under ingest", busy)):
        ratio = percentile(runs["query.logs"], 0.99) / percentile(runs["direct pymongo"], 0.99)
        print(f"  {label}: p99 query.logs / direct = {ratio:.2f} (target <= 2)")
    p99 = percentile(idle["query.logs"], 0.99)
    print(f"  idle p99 {p99:.1f} ms (target < 25 ms: {'meets' if p99 < 25 else 'ABOVE'})")


if __name__ == "__main__":
    asyncio.run(main())
