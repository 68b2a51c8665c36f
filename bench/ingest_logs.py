"""Logs ingest, end to end, against the same servers in one run.

Prints, per second: the service's end-to-end rate (published -> stored ->
acked), a direct insert_many into the same MongoDB, the raw JetStream consume
rate of the same messages (fetch + ack, no storage), and the seeds' way (one
awaited insert per event); then the ratios against the targets
(>= 0.6 of direct insert_many, >= 5x the seeds' way).

    python -m bench.ingest_logs [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import msgspec

from agentstore.contract import STREAMS
from agentstore_server.logs.logs import COLLECTION, INDEXES
from agentstore_server.stores.mongo import MongoStore
from bench.common import BenchStack, bench_stack, emit_json, raw_consume, report, service_drain

AGENTS = 100


def bodies(n: int) -> list[tuple[str, str, bytes]]:
    """~300-byte log events from AGENTS agents: (agent, id, body)."""
    out = []
    for i in range(n):
        agent = f"bench{i % AGENTS:03d}"
        event_id = f"{uuid.uuid4().hex}"
        body = {
            "id": event_id,
            "level": ("info", "warning", "error")[i % 3],
            "message": f"step {i} finished with a result the agent found noteworthy enough to log",
            "task_id": f"task-{i % 1000}",
            "fields": {"i": i, "tool": "browser", "ok": True},
        }
        out.append((agent, event_id, msgspec.json.encode(body)))
    return out


def docs(events: list[tuple[str, str, bytes]]) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    out = []
    for agent, event_id, body in events:
        d = msgspec.json.decode(body)
        out.append({"_id": f"{agent}:{event_id}", "agent_id": agent, "ts": now, "level_no": 20, **d})
    return out


async def direct_insert_many(stack: BenchStack, events: list[tuple[str, str, bytes]]) -> float:
    mongo = MongoStore(stack.mongo.url, f"direct{uuid.uuid4().hex[:6]}")
    await mongo.ensure_indexes(COLLECTION, INDEXES)
    all_docs = docs(events)
    started = time.perf_counter()
    for i in range(0, len(all_docs), 500):
        await mongo.insert_new(COLLECTION, all_docs[i : i + 500])
    elapsed = time.perf_counter() - started
    await mongo.close()
    return len(all_docs) / elapsed


async def seeds_way(stack: BenchStack, events: list[tuple[str, str, bytes]], seconds: float) -> float:
    """One awaited insert per event, as the seeds do; time-boxed."""
    mongo = MongoStore(stack.mongo.url, f"seeds{uuid.uuid4().hex[:6]}")
    await mongo.ensure_indexes(COLLECTION, INDEXES)
    started = time.perf_counter()
    done = 0
    for doc in docs(events):
        await mongo.insert_new(COLLECTION, [doc])
        done += 1
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    await mongo.close()
    return done / elapsed


async def end_to_end(stack: BenchStack, events: list[tuple[str, str, bytes]], workers: int) -> float:
    settings = stack.settings(ingest_workers=workers, ingest_batch=500)
    items = [(f"agents.{a}.logs", b, {"Nats-Msg-Id": f"{a}:{i}"}) for a, i, b in events]
    rate = await service_drain(stack, "logs", STREAMS["LOGS"], items, settings)
    mongo = MongoStore(stack.mongo.url, settings.mongodb_db)
    stored = await mongo.count(COLLECTION, {})
    await mongo.close()
    assert stored == len(events), f"stored {stored} of {len(events)}"
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure this many times; the ratio is their median"
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    args = parser.parse_args()
    events = bodies(args.events)
    ratios: list[float] = []
    with bench_stack() as stack:
        seeds = await seeds_way(stack, events, seconds=10)
        for n in range(args.repeat):
            if n:
                events = bodies(args.events)  # new ids: the LOGS stream dedupes by Nats-Msg-Id
            raw = await raw_consume(stack, [(a, b, None) for a, _, b in events])
            direct = await direct_insert_many(stack, events)
            e2e = await end_to_end(stack, events, args.workers)
            got = report(
                f"logs ingest, {args.events:,} events, {AGENTS} agents",
                [
                    ("end to end (service)", e2e),
                    ("direct insert_many", direct),
                    ("raw JetStream consume", raw),
                    ("seeds' way (insert each)", seeds),
                ],
                "events/s",
                [
                    ("service / direct insert_many", "end to end (service)", "direct insert_many", 0.9),
                    ("service / seeds' way", "end to end (service)", "seeds' way (insert each)", 5.0),
                    ("service / raw consume", "end to end (service)", "raw JetStream consume", 0.0),
                ],
            )
            ratios.append(got["service / direct insert_many"])
    median = statistics.median(ratios)
    print(f"\n  service / direct insert_many over {len(ratios)} runs: median {median:.2f} "
          f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.9: {'meets' if median >= 0.9 else 'BELOW'})")  # fmt: skip
    if args.json:
        emit_json({"events": args.events, "workers": args.workers, "runs": len(ratios), "ratio": round(median, 3),
                   "ratios": [round(r, 3) for r in ratios], "service_per_s": round(e2e), "insert_many_per_s": round(direct),
                   "raw_consume_per_s": round(raw), "seeds_way_per_s": round(seeds)})  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
