"""One agent cannot starve the others: the fleet's stored rate and PubAck -> stored latency,
without and then with a poisoner, against one logs service in one run.

100 agents log at a paced rate (default 10,000 events/s in all) for `--seconds`; in the
second phase one more agent publishes a poison every 10 ms (an integer past int64 in
`fields`, a NUL in a key, a body that is not JSON, in turn: the findings of issue 24).
A log is stored when the durable consumer's ack floor passes its stream sequence (the
service acks only after the write committed, so it is then queryable); the latency is
from its PubAck to the first poll of the floor (every 2 ms) that shows it.

    python -m bench.poison [--rate 10000 | --rates 1000,2000,5000] [--seconds 10] [--json]

With `--json` the last line is one JSON object: per rate the figures, `freshness_p99_ms`
(rate -> p99 without the poisoner, ms) and the highest rate held under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
from nats.js.api import PubAck

from agentstore.contract import DEADLETTER, STREAMS
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.devstack import servers
from bench.common import BenchStack, bench_stack, emit_json, stage_profile

AGENTS = 100
TICK = 0.01  # the publishers' pace, and the poisoner's period
POISONS = [
    b'{"id": "%s", "level": "info", "message": "m", "fields": {"v": 18446744073709551616}}',
    b'{"id": "%s", "level": "info", "message": "m", "fields": {"k\\u0000": 1}}',
    b'{"id": "%s", "level": "info", "message": "m", "fields": {"v": NaN}',
]


@dataclass
class Phase:
    name: str
    published: list[tuple[int, float]] = field(default_factory=list)  # (seq, PubAck time)
    poisons: int = 0
    started: float = 0.0
    finished: float = 0.0


def log_body(n: int) -> bytes:
    return msgspec.json.encode({
        "id": f"e{n}-{uuid.uuid4().hex[:8]}", "level": "info",
        "message": f"step {n} finished with a result the agent found noteworthy enough to log",
        "fields": {"n": n, "tool": "browser", "ok": True},
    })  # fmt: skip


async def run_phase(js: object, phase: Phase, rate: int, seconds: float, poisoner: bool) -> None:
    per_tick = max(rate * TICK, 1)
    pending: list[asyncio.Future[PubAck]] = []
    credit = 0.0
    n = 0
    phase.started = time.perf_counter()
    next_tick = phase.started
    while time.perf_counter() - phase.started < seconds:
        credit += per_tick
        while credit >= 1:
            agent = f"fleet{n % AGENTS:03d}"
            future = await js.publish_async(f"agents.{agent}.logs", log_body(n))  # type: ignore[attr-defined]
            future.add_done_callback(lambda f: _acked(f, phase))
            pending.append(future)
            n += 1
            credit -= 1
        if poisoner:
            body = POISONS[phase.poisons % len(POISONS)].replace(b"%s", f"p{phase.poisons}".encode())
            pending.append(await js.publish_async("agents.poisoner.logs", body))  # type: ignore[attr-defined]
            phase.poisons += 1
        next_tick += TICK
        await asyncio.sleep(max(next_tick - time.perf_counter(), 0))  # the publishers' pace
    await asyncio.gather(*pending)


def _acked(future: asyncio.Future[PubAck], phase: Phase) -> None:
    if not future.cancelled() and future.exception() is None:
        phase.published.append((future.result().seq, time.perf_counter()))


async def watch_floor(js: object, durable: str, floors: list[tuple[float, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            info = await js.consumer_info("LOGS", durable)  # type: ignore[attr-defined]
        except nats.errors.TimeoutError:
            continue
        floors.append((time.perf_counter(), info.ack_floor.stream_seq if info.ack_floor else 0))
        await asyncio.sleep(0.002)  # the floor's polling period (the latency's resolution)


def latencies(phase: Phase, floors: list[tuple[float, int]]) -> list[float]:
    out = []
    i = 0
    for seq, acked in sorted(phase.published):
        while i < len(floors) and floors[i][1] < seq:
            i += 1
        if i == len(floors):
            break
        out.append(max(floors[i][0] - acked, 0.0))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000 if ordered else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=10_000, help="the fleet's events/s")
    parser.add_argument("--rates", help="comma-separated rates, each measured in turn (overrides --rate)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")] if args.rates else [args.rate]
    figures: dict[str, dict[str, Any]] = {}
    with bench_stack() as stack:
        for rate in rates:
            figures[str(rate)] = await measure(stack, rate, args.seconds)
    held = [r for r in rates if figures[str(r)]["freshness_p99_ms"] < 50]
    print(
        f"\n  highest rate held with p99 PubAck -> stored < 50 ms: {max(held) if held else 'none'} of {rates}"
    )
    if args.json:
        emit_json({
            "rates": figures, "seconds": args.seconds,
            "freshness_p99_ms": {r: f["freshness_p99_ms"] for r, f in figures.items()},
            "highest_rate_under_50ms": max(held) if held else None,
        })  # fmt: skip


async def measure(stack: BenchStack, rate: int, seconds: float) -> dict[str, Any]:
    settings = stack.settings(ingest_workers=2, ingest_batch=500)
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream(publish_async_max_pending=20_000)
    await ensure_stream(js, STREAMS["LOGS"])
    await ensure_stream(js, DEADLETTER)
    service = servers.start_service(
        "logs", stack.service_env(settings), stack.root / "logs.log", servers.free_port()
    )
    floors: list[tuple[float, int]] = []
    stop = asyncio.Event()
    watcher = None
    try:
        while True:  # the service is consuming once its durable exists
            try:
                await js.consumer_info("LOGS", "logs")
                break
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.1)  # waiting for the service's start-up
        # Its own connection: the publishers' pipeline would queue the floor's polls behind it.
        watch_nc = await nats.connect(stack.nats.url)
        watcher = asyncio.create_task(watch_floor(watch_nc.jetstream(), "logs", floors, stop))
        dead_before = (await js.stream_info(DEADLETTER.name)).state.messages  # earlier rates' poisons
        phases = [Phase("without the poisoner"), Phase("with a poison every 10 ms")]
        for phase, poisoner in zip(phases, (False, True), strict=True):
            await run_phase(js, phase, rate, seconds, poisoner)
            last = (await js.stream_info("LOGS")).state.last_seq  # poisons included
            while not floors or floors[-1][1] < last:  # noqa: ASYNC110 (a poll of the watcher's list)
                await asyncio.sleep(0.01)  # until the phase's last message is settled
            phase.finished = next(t for t, floor in floors if floor >= max(s for s, _ in phase.published))
        dead = (await js.stream_info(DEADLETTER.name)).state.messages - dead_before
        profile = stage_profile(f"{service.url}/metrics")
    finally:
        stop.set()
        if watcher is not None:
            await watcher
            await watch_nc.close()
        service.stop()
        await nc.close()
    print(
        f"\n== one agent cannot starve the others: {AGENTS} agents at {rate:,} events/s for {seconds:g} s, logs service"
    )
    rates = {}
    for phase in phases:
        lat = latencies(phase, floors)
        rates[phase.name] = len(phase.published) / (phase.finished - phase.started)
        print(f"  {phase.name:<28} stored {len(phase.published):>7,} at {rates[phase.name]:>8,.0f} events/s;"
              f" PubAck -> stored p50 {pct(lat, 0.5):6.1f} ms, p99 {pct(lat, 0.99):6.1f} ms;"
              f" poisons {phase.poisons:,}")  # fmt: skip
    print(f"  dead letters: {dead:,} (the poisons: {phases[1].poisons:,})")
    ratio = rates[phases[1].name] / rates[phases[0].name]
    print(
        f"  fleet rate with / without the poisoner: {ratio:.2f} (target >= 0.9: {'meets' if ratio >= 0.9 else 'BELOW'})"
    )
    p99 = pct(latencies(phases[1], floors), 0.99)
    print(
        f"  p99 PubAck -> stored with the poisoner: {p99:.1f} ms (target < 50: {'meets' if p99 < 50 else 'ABOVE'})"
    )
    print("  where a batch's time went (the service's agentstore_ingest_stage_seconds):")
    for stage, figures in profile.items():
        print(f"    {stage:<10} {figures['batches']:>7,.0f} batches, mean {figures['mean_ms']:6.2f} ms,"
              f" p99 <= {figures['p99_le_ms']:g} ms")  # fmt: skip
    clean = latencies(phases[0], floors)
    return {
        "stages": profile,
        "freshness_p50_ms": round(pct(clean, 0.5), 1), "freshness_p99_ms": round(pct(clean, 0.99), 1),
        "poisoned_p99_ms": round(p99, 1), "stored_per_s": round(rates[phases[0].name]),
        "rate_ratio_with_poisoner": round(ratio, 3), "dead_letters": dead, "poisons": phases[1].poisons,
    }  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
