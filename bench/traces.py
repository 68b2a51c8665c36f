"""Traces, end to end, against the same servers in one run (issue #36).

Span ingest: a backlog of spans (200-span traces from 10 agents, ~600 bytes each with GenAI
attributes) drained by the logs service (published -> stored with the traces' summaries ->
acked), against the raw JetStream consume rate of the same messages (fetch + ack, no
storage). The trace page: the console's page of a 1,000-span trace (a tree four levels
deep) fetched over HTTP from the web service, asking the logs service over NATS, p50/p99.

    python -m bench.traces [--spans 20000] [--runs 3] [--page-requests 100] [--big-trace 100000] [--json]

Then one trace of `--big-trace` spans: stored, paged back whole, its console page served.

Targets: span ingest >= 0.8x raw consume (the median of `--runs`, each raw then service, back to
back); the 1,000-span trace page p99 < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from agentstore.client import EvaluatorClient
from agentstore.contract import STREAMS
from agentstore.schemas.traces import SpanIn, span_msg_id
from agentstore_server.devstack import servers
from agentstore_server.stores.postgres import PostgresStore
from bench.common import BenchStack, Item, bench_stack, emit_json, publish, raw_consume, service_drain

AGENTS = 10
SPANS_PER_TRACE = 200


def span_items(n: int, run: int = 0) -> list[Item]:
    """`n` spans in traces of SPANS_PER_TRACE, each trace one agent's: a root and its calls
    (`run` numbers the traces on, so that each run's spans are new to JetStream's dedupe)."""
    items: list[Item] = []
    t0 = datetime.now(UTC) - timedelta(hours=1)
    first = run * (n // SPANS_PER_TRACE + 1) * SPANS_PER_TRACE
    for i in range(first, first + n):
        trace, step = divmod(i, SPANS_PER_TRACE)
        agent = f"bench{trace % AGENTS:02d}"
        trace_id = uuid.UUID(int=(trace << 64) | 0xABC).hex
        span_id = f"{i + 1:016x}"
        start = t0 + timedelta(seconds=trace, milliseconds=step * 3)
        span = SpanIn(
            trace_id=trace_id, span_id=span_id, name="invoke_agent planner" if step == 0 else f"chat step {step}",
            start=start, end=start + timedelta(milliseconds=2 if step else SPANS_PER_TRACE * 3),
            parent_span_id=None if step == 0 else f"{trace * SPANS_PER_TRACE + 1:016x}",
            kind="client" if step else "internal", status="error" if step % 97 == 0 and step else "ok",
            attributes={"gen_ai": {"operation": {"name": "chat"}, "request": {"model": "gpt-4o-mini",
                                   "temperature": 0.2}, "usage": {"input_tokens": 800 + step,
                                   "output_tokens": 120}}, "prompt": "summarise the ticket " * 12},
        )  # fmt: skip
        items.append((f"agents.{agent}.spans", msgspec.json.encode(span),
                      {"Nats-Msg-Id": f"{agent}:{span_msg_id(trace_id, span_id)}"}))  # fmt: skip
    return items


def page_trace() -> tuple[str, str, list[Item]]:
    """A 1,000-span trace of one agent: a root, 9 nodes, each with 10 model calls and tools,
    each of those with ~10 steps (four levels)."""
    agent, trace_id = "pageagent", uuid.uuid4().hex
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    rows: list[tuple[str, str | None, int]] = [("root", None, 0)]
    for a in range(9):
        rows.append((f"n{a}", "root", 1))
        for b in range(10):
            rows.append((f"n{a}.{b}", f"n{a}", 2))
            for c in range(10):
                if len(rows) < 1000:
                    rows.append((f"n{a}.{b}.{c}", f"n{a}.{b}", 3))
    ids = {name: f"{i + 1:016x}" for i, (name, _, _) in enumerate(rows)}
    items: list[Item] = []
    for i, (name, parent, depth) in enumerate(rows):
        start = t0 + timedelta(milliseconds=i * 5)
        span = SpanIn(
            trace_id=trace_id, span_id=ids[name], parent_span_id=ids[parent] if parent else None,
            name=f"step {name}", start=start, end=start + timedelta(milliseconds=5000 if depth == 0 else 4),
            model="gpt-4o-mini" if depth == 3 else None, input_tokens=900 if depth == 3 else None,
            output_tokens=150 if depth == 3 else None, attributes={"depth": depth, "input": "question " * 20},
        )  # fmt: skip
        items.append((f"agents.{agent}.spans", msgspec.json.encode(span),
                      {"Nats-Msg-Id": f"{agent}:{span_msg_id(trace_id, ids[name])}"}))  # fmt: skip
    return agent, trace_id, items


def fetch_page(url: str) -> tuple[float, bytes]:
    """A console page over HTTP: how long it took (ms) and its body."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, body


async def trace_page(stack: BenchStack, requests: int) -> tuple[float, float, float]:
    """p50 and p99 of the console's page of a 1,000-span trace, and of `query.trace` alone (ms)."""
    import nats

    web_port = servers.free_port()
    settings = stack.settings(web_port=web_port)
    env = stack.service_env(settings)
    logs = servers.start_service("logs", env, stack.root / "page-logs.log", servers.free_port())
    web = servers.start_service("web", env, stack.root / "page-web.log", servers.free_port())
    try:
        agent, trace_id, items = page_trace()
        nc = await nats.connect(stack.nats.url)
        await publish(nc, items)
        await nc.close()
        async with await EvaluatorClient.connect(stack.nats.url) as evaluator:
            deadline = time.monotonic() + 60
            while True:
                try:
                    found = await evaluator.query("trace", trace_id=trace_id, limit=1)
                    if found.trace.spans == len(items):
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the 1,000-span trace was not stored within 60 s")
                await asyncio.sleep(0.1)  # a condition polled with a deadline
            query_ms = []
            for _ in range(requests):
                started = time.perf_counter()
                await evaluator.query("trace", trace_id=trace_id, agent_id=agent, limit=1000)
                query_ms.append((time.perf_counter() - started) * 1000)
        url = f"http://127.0.0.1:{web_port}/traces/{trace_id}?agent={agent}"

        def get() -> tuple[float, int]:
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as response:
                body = response.read()
            return (time.perf_counter() - started) * 1000, body.count(b'class="span-bar')

        _, bars = await asyncio.to_thread(get)  # warm (templates compiled)
        assert bars == len(items), f"the page shows {bars} of {len(items)} spans"
        page_ms = [(await asyncio.to_thread(get))[0] for _ in range(requests)]
    finally:
        web.stop()
        logs.stop()
    q = statistics.quantiles
    return q(page_ms, n=100)[49], q(page_ms, n=100)[98], q(query_ms, n=100)[98]


async def big_trace(stack: BenchStack, n: int) -> dict[str, float]:
    """`n` spans in one trace (a root and its steps): stored, its summary right, the console's
    first page served, and every span read back once by paging `query.trace`."""
    import nats

    web_port = servers.free_port()
    settings = stack.settings(web_port=web_port, ingest_batch=500)
    env = stack.service_env(settings)
    logs = servers.start_service("logs", env, stack.root / "big-logs.log", servers.free_port())
    web = servers.start_service("web", env, stack.root / "big-web.log", servers.free_port())
    agent, trace_id = "bigagent", uuid.uuid4().hex
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    items: list[Item] = []
    for i in range(n):
        start = t0 + timedelta(microseconds=i * 10)
        span = SpanIn(trace_id=trace_id, span_id=f"{i + 1:016x}", parent_span_id=None if i == 0 else f"{1:016x}",
                      name="root" if i == 0 else f"step {i}", start=start,
                      end=start + timedelta(seconds=30 if i == 0 else 0.000005))  # fmt: skip
        items.append((f"agents.{agent}.spans", msgspec.json.encode(span),
                      {"Nats-Msg-Id": f"{agent}:{span_msg_id(trace_id, span.span_id)}"}))  # fmt: skip
    try:
        nc = await nats.connect(stack.nats.url)
        started = time.perf_counter()
        await publish(nc, items)
        await nc.close()
        async with await EvaluatorClient.connect(stack.nats.url) as evaluator:
            while True:
                try:
                    found = await evaluator.query("trace", trace_id=trace_id, limit=1)
                    if found.trace.spans == n:
                        break
                except Exception:
                    pass
                if time.perf_counter() - started > 600:
                    raise TimeoutError(f"{n:,} spans not stored within 600 s")
                await asyncio.sleep(0.2)  # a condition polled with a deadline
            stored_s = time.perf_counter() - started
            seen: set[str] = set()
            cursor, paging = None, time.perf_counter()
            while True:
                page = await evaluator.query("trace", trace_id=trace_id, limit=2000, cursor=cursor)
                seen.update(s.span_id for s in page.spans)
                cursor = page.next_cursor
                if cursor is None:
                    break
            paged_s = time.perf_counter() - paging
        assert len(seen) == n, f"paged {len(seen):,} of {n:,} spans"
        url = f"http://127.0.0.1:{web_port}/traces/{trace_id}?agent={agent}"
        page_ms, body = await asyncio.to_thread(fetch_page, url)
        assert body.count(b'class="span-bar') == 1000 and b"next page" in body
    finally:
        web.stop()
        logs.stop()
    return {"big_trace_spans": n, "big_trace_stored_s": round(stored_s, 1),
            "big_trace_paged_s": round(paged_s, 1), "big_trace_first_page_ms": round(page_ms, 1)}  # fmt: skip


async def end_to_end(stack: BenchStack, items: list[Item], workers: int) -> float:
    settings = stack.settings(ingest_workers=workers, ingest_batch=500)
    rate = await service_drain(stack, "logs", STREAMS["LOGS"], items, settings)
    async with PostgresStore(settings.postgres_url) as pg:
        row = await pg.pool.fetchrow(
            "SELECT count(*) AS spans, (SELECT sum(spans) FROM traces) AS summed FROM spans"
        )
        await pg.pool.execute("TRUNCATE spans, traces")
    assert row is not None and row["spans"] == row["summed"] == len(items), f"stored {dict(row or {})}"
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--runs", type=int, default=3, help="ingest runs (raw, then service, each); the median holds"
    )
    parser.add_argument("--page-requests", type=int, default=100)
    parser.add_argument("--big-trace", type=int, default=100_000, help="spans in one trace (0: skip)")
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    args = parser.parse_args()
    big: dict[str, float] = {}
    with bench_stack() as stack:
        runs: list[tuple[float, float]] = []  # (service, raw) per run, measured back to back
        for run in range(args.runs):
            items = span_items(args.spans, run)
            raw = await raw_consume(stack, items)
            runs.append((await end_to_end(stack, items, args.workers), raw))
        ratios = sorted(e / r for e, r in runs)
        ratio = statistics.median(ratios)
        e2e, raw = statistics.median(e for e, _ in runs), statistics.median(r for _, r in runs)
        print(f"\n== span ingest, {args.spans:,} spans in {args.spans // SPANS_PER_TRACE} traces, {AGENTS} agents, "
              f"{args.runs} runs")  # fmt: skip
        for i, (e, r) in enumerate(runs, 1):
            print(f"  run {i}: logs service {e:,.0f} spans/s, raw JetStream consume {r:,.0f}: {e / r:.2f}")
        print(
            f"  median service / raw consume: {ratio:.2f} (target >= 0.8: {'meets' if ratio >= 0.8 else 'BELOW'})"
        )
        p50, p99, query_p99 = await trace_page(stack, args.page_requests)
        if args.big_trace:
            big = await big_trace(stack, args.big_trace)
            print(f"\n== one trace of {args.big_trace:,} spans: stored in {big['big_trace_stored_s']} s, "
                  f"every span paged back once in {big['big_trace_paged_s']} s, "
                  f"the console's first page {big['big_trace_first_page_ms']} ms")  # fmt: skip
    print(f"\n== the console's page of a 1,000-span trace, {args.page_requests} requests")
    print(f"  p50 {p50:.1f} ms, p99 {p99:.1f} ms (target < 300: {'meets' if p99 < 300 else 'ABOVE'}); "
          f"query.trace alone p99 {query_p99:.1f} ms")  # fmt: skip
    if args.json:
        emit_json({"spans": args.spans, "runs": args.runs, "spans_per_s": round(e2e), "raw_consume_per_s": round(raw),
                   "ratio": round(ratio, 3), "ratios": [round(r, 3) for r in ratios], "trace_page_p50_ms": round(p50, 1),
                   "trace_page_p99_ms": round(p99, 1), "query_trace_p99_ms": round(query_p99, 1), **big})  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
