"""Acknowledged publishes per second with `sync_interval: always` (a PubAck means fsynced),
three ways, in the same run, on the same stream:

- per-message `publish_async` with `Nats-Msg-Id` (window 1,000): one PubAck per message;
- raw atomic batches (ADR-50): 1,000 messages, one PubAck each, 8 batches in flight,
  the bodies encoded beforehand: the ceiling of the protocol from Python;
- `AgentClient.log()`: what an agent author writes, batched by the client.

Targets: AgentClient >= 8x per-message, >= 0.8x raw atomic batches. Afterwards every
message must be stored exactly once (the stream's count per subject).

    python -m bench.client_publish [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import msgspec
import nats
from nats.aio.client import Client

from agentstore.client import AgentClient
from agentstore.contract import STREAMS
from agentstore.ids import new_id
from agentstore_server.bus.provision import ensure_stream
from bench.common import bench_stack, report

BATCH, IN_FLIGHT = 1000, 8


def bodies(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        event_id = new_id()
        out.append((event_id, msgspec.json.encode({"id": event_id, "level": "info", "message": f"step {i}"})))
    return out


async def per_message(nc: Client, agent: str, n: int) -> float:
    js = nc.jetstream(publish_async_max_pending=1000)
    items = bodies(n)
    started = time.perf_counter()
    futures = [
        await js.publish_async(f"agents.{agent}.logs", body, headers={"Nats-Msg-Id": f"{agent}:{event_id}"})
        for event_id, body in items
    ]
    await asyncio.gather(*futures)
    return n / (time.perf_counter() - started)


async def raw_batches(nc: Client, agent: str, n: int) -> float:
    items = bodies(n)
    subject = f"agents.{agent}.logs"
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def batch(chunk: list[tuple[str, bytes]]) -> None:
        async with slots:
            batch_id = new_id()
            for seq, (event_id, body) in enumerate(chunk, 1):
                headers = {"Nats-Msg-Id": f"{agent}:{event_id}", "Nats-Batch-Id": batch_id,
                           "Nats-Batch-Sequence": str(seq)}  # fmt: skip
                if seq < len(chunk):
                    await nc.publish(subject, body, headers=headers)
                else:
                    headers["Nats-Batch-Commit"] = "1"
                    reply = await nc.request(subject, body, headers=headers, timeout=30)
                    assert b'"error"' not in reply.data, reply.data

    started = time.perf_counter()
    await asyncio.gather(*(batch(items[i : i + BATCH]) for i in range(0, n, BATCH)))
    return n / (time.perf_counter() - started)


async def client(url: str, agent: str, n: int) -> float:
    client = await AgentClient.connect(url, agent)
    started = time.perf_counter()
    async with client:
        for i in range(n):
            await client.log("info", f"step {i}")
        await client.flush()
        elapsed = time.perf_counter() - started
    return n / elapsed


async def stored(nc: Client, agent: str) -> int:
    subject = f"agents.{agent}.logs"
    info = await nc.jetstream().stream_info("LOGS", subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    n = args.events
    with bench_stack() as stack:
        nc = await nats.connect(stack.nats.url)
        await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
        single = await per_message(nc, "permsg", n)
        raw = await raw_batches(nc, "rawbatch", n)
        mine = await client(stack.nats.url, "client", n)
        counts = {agent: await stored(nc, agent) for agent in ("permsg", "rawbatch", "client")}
        await nc.close()
    report(
        f"acknowledged publishes (fsynced), {n:,} logs each",
        [("AgentClient.log()", mine), ("raw atomic batches", raw), ("per-message publish_async", single)],
        "publishes/s",
        [
            ("client / per-message", "AgentClient.log()", "per-message publish_async", 8.0),
            ("client / raw atomic batches", "AgentClient.log()", "raw atomic batches", 0.8),
        ],
    )
    print(f"  stored once each: {counts} (expected {n:,} each)")
    assert all(count == n for count in counts.values()), counts


if __name__ == "__main__":
    asyncio.run(main())
