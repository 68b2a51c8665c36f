"""AgentClient.log() calls per second (each acknowledged by JetStream) next to raw nats-py
`publish_async` with `Nats-Msg-Id` and the same in-flight window, in the same run.
Target: >= 0.8 of raw.

    python -m bench.client_publish [--events 100000] [--window 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import msgspec
import nats

from agentstore.bus.provision import ensure_stream
from agentstore.client import AgentClient
from agentstore.contract import STREAMS
from bench.common import bench_stack, report


async def raw(url: str, n: int, window: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=window)
    started = time.perf_counter()
    futures = []
    for i in range(n):
        event_id = uuid.uuid4().hex
        body = msgspec.json.encode({"id": event_id, "level": "info", "message": f"step {i}"})
        futures.append(
            await js.publish_async("agents.raw.logs", body, headers={"Nats-Msg-Id": f"raw:{event_id}"})
        )
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await nc.close()
    return n / elapsed


async def client(url: str, n: int, window: int) -> float:
    agent = await AgentClient.connect(url, "client", window=window)
    started = time.perf_counter()
    async with agent:
        for i in range(n):
            await agent.log("info", f"step {i}")
    return n / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=2000)
    args = parser.parse_args()
    with bench_stack() as stack:
        nc = await nats.connect(stack.nats.url)
        await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
        await nc.close()
        base = await raw(stack.nats.url, args.events, args.window)
        mine = await client(stack.nats.url, args.events, args.window)
    report(
        f"acknowledged publishes, {args.events:,} logs, window {args.window}",
        [("AgentClient.log()", mine), ("raw publish_async", base)],
        "publishes/s",
        [("client / raw", "AgentClient.log()", "raw publish_async", 0.8)],
    )


if __name__ == "__main__":
    asyncio.run(main())
