"""Run claiming: claims per second with 8 workers through NATS, next to direct SQL
claiming (the same claim statement, 8 connections) in the same run.

    python -m bench.claims [--runs 5000] [--workers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg
import msgspec
import nats

from agentstore.contract import STREAMS
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.devstack import servers
from agentstore_server.stores.postgres import PostgresStore
from agentstore_server.tasks.db import MIGRATIONS, Q
from bench.common import BenchStack, bench_stack, emit_json, report


async def fill(url: str, runs: int) -> None:
    pg = PostgresStore(url)
    async with pg:
        await pg.migrate("tasks", MIGRATIONS)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO studies (spec_hash, spec) VALUES ('h', '{}')")
        await conn.execute(
            "INSERT INTO runs (run_id, spec_hash) SELECT 'r' || g, 'h' FROM generate_series(1, $1) g",
            runs,
        )
        await conn.execute("ANALYZE")  # the steady state: autovacuum analyzes a table this size
    finally:
        await conn.close()


async def direct(url: str, workers: int) -> float:
    claimed = 0

    async def worker(name: str) -> None:
        nonlocal claimed
        conn = await asyncpg.connect(url)
        while True:
            claim = Q["claim_run"]
            row = await conn.fetchrow(
                claim.text, *claim.args({"agent_id": name, "kinds": None, "lease_seconds": 60.0})
            )
            if row is None:
                break
            claimed += 1
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(f"w{i}") for i in range(workers)))
    return claimed / (time.perf_counter() - started)


async def double_claims(url: str) -> int:
    """Runs claimed by more than one worker (a lease of 60 s never expires here)."""
    conn = await asyncpg.connect(url)
    try:
        unclaimed = await conn.fetchval("SELECT count(*) FROM runs WHERE status <> 'running'")
        assert unclaimed == 0, f"{unclaimed} runs never claimed"
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM (SELECT run_id FROM run_events WHERE type = 'claimed' "
                "GROUP BY run_id HAVING count(*) > 1) d"
            )
        )
    finally:
        await conn.close()


async def through_nats(stack: BenchStack, url: str, workers: int, processes: int = 1) -> float:
    settings = stack.settings(postgres_url=url, service_processes=processes)
    service = servers.start_service(
        "tasks", stack.service_env(settings), stack.root / "tasks.log", servers.free_port()
    )
    nc = await nats.connect(stack.nats.url)
    # The audit copies of each claim land in LOGS, as in a real deployment.
    await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
    claimed = 0

    async def worker(name: str) -> None:
        nonlocal claimed
        while True:
            reply = await nc.request(f"agents.{name}.rpc.claim", b'{"lease_seconds": 60}', timeout=30)
            if msgspec.json.decode(reply.data)["run"] is None:
                break
            claimed += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(f"w{i}") for i in range(workers)))
        return claimed / (time.perf_counter() - started)
    finally:
        await nc.close()
        service.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--processes", type=int, default=1, help="SERVICE_PROCESSES of the tasks service")
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure this many times; the ratio is their median"
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    args = parser.parse_args()
    ratios: list[float] = []
    doubles: list[int] = []
    with bench_stack() as stack:
        for _ in range(args.repeat):
            urls = [
                servers.create_database(stack.postgres.address, f"c{uuid.uuid4().hex[:8]}") for _ in range(2)
            ]
            for url in urls:
                await fill(url, args.runs)
            sql = await direct(urls[0], args.workers)
            via = await through_nats(stack, urls[1], args.workers, args.processes)
            doubles += [await double_claims(url) for url in urls]
            got = report(
                f"claims, {args.runs:,} runs, {args.workers} workers",
                [("through NATS (rpc.claim)", via), ("direct SQL claim", sql)],
                "claims/s",
                [("NATS / direct SQL", "through NATS (rpc.claim)", "direct SQL claim", 0.8)],
            )
            ratios.append(got["NATS / direct SQL"])
    median = statistics.median(ratios)
    print(f"\n  NATS / direct SQL over {len(ratios)} runs: median {median:.2f} "
          f"({', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.8: {'meets' if median >= 0.8 else 'BELOW'})")  # fmt: skip
    print(f"  runs claimed more than once, per database: {doubles} (must all be 0)")
    if args.json:
        emit_json({"runs": args.runs, "workers": args.workers, "repeat": len(ratios), "ratio": round(median, 3),
                   "ratios": [round(r, 3) for r in ratios], "double_claims": sum(doubles),
                   "nats_claims_per_s": round(via), "direct_claims_per_s": round(sql)})  # fmt: skip
    assert not any(doubles)


if __name__ == "__main__":
    asyncio.run(main())
