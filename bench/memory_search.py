"""Memory search at fleet scale: `AgentstoreStore` (through NATS, the logs service, pgvector
HNSW) against LangGraph's own `AsyncPostgresStore` (pgvector) on the same PostgreSQL server
in the same run (a database each), and against the exact answer.

N items of `--dims` dimensions (random directions, plus a clustered fifth so that a query
has real near neighbours), in 10 namespaces; `--queries` searches near the clusters, each
under one namespace (a tenth of the items) for the 10 nearest. Recall@10 is against the
exact answer (the same store scanning every vector, `exact`), over `--exact-queries` of the
queries. Targets at 100,000 items: p99 < 20 ms, recall@10 >= 0.95, p99 <= 1.0x
PostgresStore's, puts >= 0.8x PostgresStore's.

    python -m bench.memory_search --items 100000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from array import array
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph.store.base import BaseStore, PutOp
from langgraph.store.postgres.aio import AsyncPostgresStore

from agentstore import AgentClient
from agentstore.langgraph import AgentstoreStore
from agentstore_server.devstack import servers
from agentstore_server.lifecycle.runner import running
from agentstore_server.logs.service import SPEC as LOGS
from bench.common import bench_stack

SPACES = 10
CLUSTERS = 200
PUT_BATCH = 50  # items per batch, both stores (a batch of 384-d vectors stays under NATS's 1 MiB)


class Vectors:
    """Every item's and query's vector, made once (int8 components: cheap to make, and
    cosine does not care about scale), handed to both stores by one embed function."""

    def __init__(self, items: int, queries: int, dims: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.dims = dims
        self.centers = [array("b", rng.randbytes(dims)) for _ in range(CLUSTERS)]
        self.items = array("b", rng.randbytes(items * dims))
        for i in range(0, items, 5):  # a fifth of the items: a cluster center plus noise
            self._near(self.items, i, rng.choice(self.centers), rng)
        self.queries = array("b", bytes(queries * dims))
        for q in range(queries):
            self._near(self.queries, q, rng.choice(self.centers), rng)

    def _near(self, into: array[int], n: int, center: array[int], rng: random.Random) -> None:
        d = self.dims
        into[n * d : (n + 1) * d] = array(
            "b", (max(-128, min(127, c + rng.randint(-20, 20))) for c in center)
        )

    def of(self, text: str) -> list[float]:
        kind, _, n = text.partition(":")
        source = self.items if kind == "i" else self.queries
        i = int(n)
        return [float(x) for x in source[i * self.dims : (i + 1) * self.dims]]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.of(t) for t in texts]


def space_of(i: int) -> str:
    """Item i's namespace: clustered items (every fifth) spread over all of them, so each
    namespace holds near neighbours of every cluster (~10 per cluster at 100k)."""
    return f"ns{(i // 5) % SPACES}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def put_all(store: BaseStore, items: int) -> float:
    started = time.perf_counter()
    for start in range(0, items, PUT_BATCH):
        await store.abatch([
            PutOp(("mem", space_of(i)), f"k{i}", {"text": f"i:{i}", "n": i})
            for i in range(start, min(items, start + PUT_BATCH))
        ])  # fmt: skip
    return items / (time.perf_counter() - started)


async def timed(
    search: Callable[[int], Awaitable[list[str]]], queries: int
) -> tuple[list[float], list[list[str]]]:
    times, answers = [], []
    for q in range(queries):
        started = time.perf_counter()
        answers.append(await search(q))
        times.append((time.perf_counter() - started) * 1000)
    return times, answers


def searcher(store: BaseStore) -> Callable[[int], Awaitable[list[str]]]:
    async def search(q: int) -> list[str]:
        found = await store.asearch(("mem", f"ns{q % SPACES}"), query=f"q:{q}", limit=10)
        return [i.key for i in found]

    return search


def missing(store: BaseStore) -> Callable[[int], Awaitable[list[str]]]:
    async def get(q: int) -> list[str]:
        assert await store.aget(("mem", f"ns{q % SPACES}"), f"missing-{q}") is None
        return []

    return get


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--exact-queries", type=int, default=100, help="queries answered exactly too (recall)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    made = time.perf_counter()
    vectors = Vectors(args.items, args.queries, args.dims)
    index: Any = {"dims": args.dims, "embed": vectors.embed, "fields": ["text"]}
    say = print if not args.json else (lambda *a, **k: print(*a, **k, flush=True))
    say(f"vectors made in {time.perf_counter() - made:.1f} s")
    with bench_stack() as stack:
        theirs_db = servers.create_database(stack.postgres.address, f"pgst{uuid.uuid4().hex[:8]}")
        ours_db = servers.create_database(stack.postgres.address, f"asst{uuid.uuid4().hex[:8]}")
        async with AsyncPostgresStore.from_conn_string(theirs_db, index=index) as theirs:
            await theirs.setup()
            their_puts = await put_all(theirs, args.items)
            say(f"PostgresStore: {args.items:,} puts, {their_puts:,.0f}/s")
            their_times, their_answers = await timed(searcher(theirs), args.queries)
            say(f"PostgresStore: p99 {percentile(their_times, 99):.1f} ms")
        settings = stack.settings(postgres_url=ours_db)
        async with running(LOGS, settings):
            agent = f"bench{uuid.uuid4().hex[:6]}"
            async with await AgentClient.connect(stack.nats.url, agent, timeout=120) as client:
                ours = AgentstoreStore(client, index=index)
                our_puts = await put_all(ours, args.items)
                say(f"agentstore: {args.items:,} puts, {our_puts:,.0f}/s")
                await timed(searcher(ours), min(50, args.queries))  # warm the index's pages
                our_times, our_answers = await timed(searcher(ours), args.queries)
                say(f"agentstore: p99 {percentile(our_times, 99):.1f} ms")
                # The floor under every search: a request that finds nothing (an `aget` of a
                # missing key), through the same NATS hop and service, no index involved.
                hop_times, _ = await timed(missing(ours), args.queries)
                say(f"agentstore: the hop alone p99 {percentile(hop_times, 99):.1f} ms")
                exact = AgentstoreStore(client, index=index, exact_search=True)
                n_exact = min(args.exact_queries, args.queries)
                exact_times, truth = await timed(searcher(exact), n_exact)
    hits = sum(len(set(a) & set(t)) for a, t in zip(our_answers, truth, strict=False))
    recall = hits / max(1, sum(len(t) for t in truth))
    their_hits = sum(len(set(a) & set(t)) for a, t in zip(their_answers, truth, strict=False))
    their_recall = their_hits / max(1, sum(len(t) for t in truth))
    figures = {
        "items": args.items, "dims": args.dims, "queries": args.queries, "exact_queries": n_exact,
        "p50_ms": round(statistics.median(our_times), 2), "p99_ms": round(percentile(our_times, 99), 2),
        "recall_at_10": round(recall, 4), "exact_p99_ms": round(percentile(exact_times, 99), 2),
        "postgresstore_p50_ms": round(statistics.median(their_times), 2),
        "postgresstore_p99_ms": round(percentile(their_times, 99), 2),
        "postgresstore_recall_at_10": round(their_recall, 4),
        "put_per_s": round(our_puts, 1), "postgresstore_put_per_s": round(their_puts, 1),
        "p99_ratio": round(percentile(our_times, 99) / percentile(their_times, 99), 3),
        "put_ratio": round(our_puts / their_puts, 3),
        # What of p99 is the request-reply hop (NATS, the service, a key lookup), not the search.
        "hop_p50_ms": round(statistics.median(hop_times), 2), "hop_p99_ms": round(percentile(hop_times, 99), 2),
        "p99_ratio_less_hop": round((percentile(our_times, 99) - percentile(hop_times, 99))
                                    / percentile(their_times, 99), 3),
    }  # fmt: skip
    targets = {
        "p99_ms < 20": figures["p99_ms"] < 20, "recall_at_10 >= 0.95": recall >= 0.95,
        "p99_ratio <= 1.0": figures["p99_ratio"] <= 1.0, "put_ratio >= 0.8": figures["put_ratio"] >= 0.8,
    }  # fmt: skip
    figures["targets_met"] = targets
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"\n== memory search, {args.items:,} items of {args.dims} dims, {args.queries:,} queries in one namespace"
    )
    for k, v in figures.items():
        if k != "targets_met":
            print(f"  {k:<28} {v}")
    for k, ok in targets.items():
        print(f"  {k}: {'meets' if ok else 'MISSES'}")


if __name__ == "__main__":
    asyncio.run(main())
