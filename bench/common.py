"""Shared bench plumbing: a throwaway stack of real servers and a result table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, StreamConfig

from agentstore.contract import StreamSpec
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server


@dataclass
class BenchStack:
    root: Path
    nats: Server
    mongo: Server
    postgres: Server

    def settings(self, **extra: object) -> Settings:
        values: dict[str, object] = {
            "nats_url": self.nats.url,
            "mongodb_url": self.mongo.url,
            "mongodb_db": f"bench{uuid.uuid4().hex[:8]}",
            "mongodb_sql_url": self.mongo.sql_url,
            "postgres_url": self.postgres.url,
            **extra,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]

    def service_env(self, settings: Settings) -> dict[str, str]:
        return {**os.environ, **servers.service_env(settings)}


@contextlib.contextmanager
def bench_stack() -> Iterator[BenchStack]:
    """NATS, PostgreSQL, and FerretDB on that PostgreSQL: the stack `make up` runs."""
    with tempfile.TemporaryDirectory(prefix="agentstore-bench-") as tmp, servers.running(Path(tmp)) as up:
        yield BenchStack(up.root, up.nats, up.mongo, up.postgres)


def report(
    title: str, rows: list[tuple[str, float]], unit: str, ratios: list[tuple[str, str, str, float]]
) -> dict[str, float]:
    """Print figures, then each ratio a/b next to its target; returns the ratios by label."""
    print(f"\n== {title}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>12,.0f} {unit}")
    values = dict(rows)
    out = {}
    for label, a, b, target in ratios:
        ratio = values[a] / values[b] if values[b] else float("inf")
        verdict = "meets" if ratio >= target else "BELOW"
        print(f"  {label}: {ratio:.2f} (target >= {target:g}: {verdict})")
        out[label] = ratio
    return out


def emit_json(figures: dict[str, Any]) -> None:
    """The figures as one JSON object on the last line of stdout (`--json`), for scripts that
    hold the project to its targets."""
    print(json.dumps(figures, sort_keys=True), flush=True)


# (subject, body, headers)
Item = tuple[str, bytes, dict[str, str] | None]


async def publish(nc: Any, items: Sequence[Item]) -> None:
    """Pipelined JetStream publishes (every PubAck awaited at the end)."""
    js = nc.jetstream(publish_async_max_pending=4000)
    futures = [await js.publish_async(s, d, headers=h) for s, d, h in items]
    await asyncio.gather(*futures)


async def raw_consume(stack: BenchStack, items: Sequence[Item], *, agentstore_fetch: bool = False) -> float:
    """Messages/s of fetch(500) + ack of the same messages, no storage: the ceiling.
    With `agentstore_fetch`, fetched the way the services fetch (`agentstore_server.bus.fetch`)."""
    from agentstore_server.bus.fetch import fetch

    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    name = f"RAW{uuid.uuid4().hex[:6]}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
    await publish(nc, [(f"{name}.{i}", d, h) for i, (_, d, h) in enumerate(items)])
    await js.add_consumer(name, ConsumerConfig(durable_name="raw", max_ack_pending=20_000))
    sub = await js.pull_subscribe_bind("raw", stream=name)
    got = 0
    started = time.perf_counter()
    while got < len(items):
        for msg in await (fetch(sub, 500, 5) if agentstore_fetch else sub.fetch(500, timeout=5)):
            await msg.ack()
            got += 1
    elapsed = time.perf_counter() - started
    await js.delete_stream(name)
    await nc.close()
    return len(items) / elapsed


async def service_drain(
    stack: BenchStack,
    service: str,
    stream: StreamSpec,
    items: Sequence[Item],
    settings: Settings,
) -> float:
    """Messages/s a service process stores and acks, from a backlog published first.

    The backlog is published before the service starts so the publisher does
    not compete with it for this machine's two cores; the clock starts at the
    first ack and stops when the durable consumer has nothing pending.
    """
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    await ensure_stream(js, stream)
    base = (await js.stream_info(stream.name)).state.last_seq  # a stream an earlier drain used
    await publish(nc, items)
    process = servers.start_service(
        service, stack.service_env(settings), stack.root / f"{service}.log", servers.free_port()
    )
    durable = service
    try:
        started, acked_at_start = 0.0, 0
        while True:
            info = await js.consumer_info(stream.name, durable)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            if not started and floor > base:
                started, acked_at_start = time.perf_counter(), floor - base
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.005)  # polling the consumer until the backlog is acked
        elapsed = time.perf_counter() - started
    finally:
        process.stop()
        await nc.close()
    return (len(items) - acked_at_start) / elapsed


def stage_profile(metrics_url: str) -> dict[str, dict[str, float]]:
    """Where a service's ingest time went, from its own /metrics: per stage of a fetched
    batch (decode, write, follow_up, ack) the batches timed, their mean and the upper bound
    of the bucket holding the 99th percentile (ms)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "agentstore_ingest_stage_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels["stage"]
            if sample.name.endswith("_bucket"):
                buckets.setdefault(stage, []).append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                sums[stage] = sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = sample.value
    profile = {}
    for stage, count in counts.items():
        if not count:
            continue
        p99 = next(le for le, n in sorted(buckets[stage]) if n >= 0.99 * count)
        profile[stage] = {"batches": count, "mean_ms": round(sums[stage] / count * 1000, 2),
                          "p99_le_ms": p99 * 1000}  # fmt: skip
    return profile
