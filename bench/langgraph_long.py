"""Long-running graphs: a 200-turn messages thread, with and without `DeltaChannel`, on
`AgentstoreSaver` (NATS → artifacts service → PostgreSQL + MinIO) and on LangGraph's own
`AsyncPostgresSaver` on the same PostgreSQL server in the same run (a database each); then
200,000 checkpoints across 2,000 threads of one agent from 200 concurrent writers, and the
reads a console or an operator makes at that size.

Turn shape: each turn is one `ainvoke` on the thread; it adds a user message, a tool call and
an answer (~2 KiB together) to a `messages` list. Without DeltaChannel the list is a plain
`operator.add` channel, which every checkpoint stores whole (what makes long threads grow
O(N²)); with it, LangGraph stores the writes and a snapshot every few steps.

Targets (issue 38): 200 turns <= 129 MB; with DeltaChannel <= 0.5x what DeltaChannel on
AsyncPostgresSaver stores; the state read at turn 200 p95 < 50 ms; at 200k checkpoints a
20-item history page p95 <= 20 ms, the thread listing < 50 ms (p95), >= 1,000 checkpoint
writes/s from 200 concurrent clients.

    python -m bench.langgraph_long [--turns 200] [--threads 2000] [--per-thread 100] [--clients 200] --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import operator
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph

from agentstore import AgentClient, EvaluatorClient, contract
from agentstore.langgraph import AgentstoreSaver
from agentstore.schemas.checkpoints import ThreadsQuery
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.devstack import servers
from agentstore_server.lifecycle.runner import running
from agentstore_server.stores.objects import ObjectStore
from bench.common import bench_stack, emit_json
from bench.langgraph_saver import OURS, THEIRS, table_bytes

READS = 100  # timed reads per figure


def _extend(state: list[Any], writes: Sequence[list[Any]]) -> list[Any]:
    return [*state, *(m for w in writes for m in w)]


class Plain(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]


class Delta(TypedDict):
    messages: Annotated[list[dict[str, Any]], DeltaChannel(_extend)]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(("the", "tool", "answer", "agent", "file", "search", "result", "step"))
                    + str(rng.randrange(1000)) for _ in range(n))  # fmt: skip


def graph_of(state: type[Any]) -> Any:
    def agent(s: Any) -> dict[str, Any]:
        rng = random.Random(len(s["messages"]))
        call_id = f"call_{len(s['messages'])}"
        call = {"role": "assistant", "content": "",
                "tool_calls": [{"name": "search", "args": {"q": _words(rng, 20)}, "id": call_id}]}  # fmt: skip
        result = {"role": "tool", "content": _words(rng, 60), "tool_call_id": call_id}
        return {"messages": [call, result, {"role": "assistant", "content": _words(rng, 110)}]}

    g = StateGraph(state)
    g.add_node("agent", agent)  # type: ignore[call-overload]
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    return g


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def timed(call: Callable[[], Awaitable[Any]], times: int = READS) -> float:
    """p95 in ms of `times` calls, one after another."""
    out = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return round(p95(out), 2)


async def long_thread(saver: BaseCheckpointSaver[Any], state: type[Any], turns: int) -> dict[str, float]:
    graph = graph_of(state).compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": f"long-{uuid.uuid4().hex[:8]}"}}
    rng = random.Random(1)
    started = time.perf_counter()
    for turn in range(turns):
        await graph.ainvoke(
            {"messages": [{"role": "user", "content": _words(rng, 40), "turn": turn}]}, config
        )
    elapsed = time.perf_counter() - started
    state_now = await graph.aget_state(config)
    assert len(state_now.values["messages"]) == 4 * turns

    async def read_state() -> None:
        await graph.aget_state(config)

    async def history_page() -> None:
        assert [s async for s in graph.aget_state_history(config, limit=20)]

    return {"turns_per_s": round(turns / elapsed, 1), "state_read_p95_ms": await timed(read_state),
            "history_page_p95_ms": await timed(history_page)}  # fmt: skip


async def many_threads(
    nats_url: str, agent: str, threads: int, per_thread: int, clients: int
) -> dict[str, Any]:
    """`threads` x `per_thread` small checkpoints, each a chain, from `clients` connections
    writing at once; then the reads at that size."""
    async with contextlib.AsyncExitStack() as opened:
        connections = [
            await opened.enter_async_context(await AgentClient.connect(nats_url, agent, timeout=60))
            for _ in range(clients)
        ]
        savers = [AgentstoreSaver(c) for c in connections]
        todo = list(range(threads))

        async def writer(saver: AgentstoreSaver) -> int:
            written = 0
            while todo:
                t = todo.pop()
                config: RunnableConfig = {"configurable": {"thread_id": f"t{t:05d}", "checkpoint_ns": ""}}
                version: str | None = None
                for step in range(per_thread):
                    c = empty_checkpoint()
                    version = saver.get_next_version(version, None)
                    c["channel_versions"] = {"messages": version}
                    c["channel_values"] = {"messages": [{"role": "user", "content": f"step {step}" * 8}]}
                    config = await saver.aput(
                        config, c, {"source": "loop", "step": step}, {"messages": version}
                    )
                    written += 1
            return written

        started = time.perf_counter()
        written = sum(await asyncio.gather(*(writer(s) for s in savers)))
        rate = written / (time.perf_counter() - started)
        reader = savers[0]
        rng = random.Random(2)

        async def history_page() -> None:
            config: RunnableConfig = {"configurable": {"thread_id": f"t{rng.randrange(threads):05d}"}}
            assert [t async for t in reader.alist(config, limit=20)]

        async def state_read() -> None:
            config: RunnableConfig = {"configurable": {"thread_id": f"t{rng.randrange(threads):05d}"}}
            assert await reader.aget_tuple(config) is not None

        async with await EvaluatorClient.connect(nats_url) as evaluator:

            async def list_threads() -> None:
                page = await evaluator.call(contract.QUERY_THREADS, ThreadsQuery(agent_id=agent, limit=20))
                assert page.items

            listing = await timed(list_threads, 30)
        return {"checkpoints": written, "threads": threads, "clients": clients,
                "writes_per_s": round(rate, 1), "history_page_p95_ms": await timed(history_page),
                "state_read_p95_ms": await timed(state_read), "list_threads_p95_ms": listing}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2000)
    parser.add_argument("--per-thread", type=int, default=100)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    args = parser.parse_args()
    figures: dict[str, Any] = {"turns": args.turns}
    with bench_stack() as stack:
        minio = servers.start_minio(stack.root / "minio", servers.free_port(), servers.free_port())
        try:
            for name, state in (("plain", Plain), ("delta", Delta)):
                theirs_db = servers.create_database(stack.postgres.address, f"lgpg{uuid.uuid4().hex[:8]}")
                async with AsyncPostgresSaver.from_conn_string(theirs_db) as pg_saver:
                    await pg_saver.setup()
                    before = await table_bytes(theirs_db, THEIRS)
                    theirs = await long_thread(pg_saver, state, args.turns)
                    theirs["bytes"] = await table_bytes(theirs_db, THEIRS) - before
                ours_db = servers.create_database(stack.postgres.address, f"lgas{uuid.uuid4().hex[:8]}")
                settings = stack.settings(postgres_url=ours_db, s3_endpoint=minio.address)
                async with running(ARTIFACTS, settings):
                    agent = f"long{uuid.uuid4().hex[:6]}"
                    async with await AgentClient.connect(stack.nats.url, agent, timeout=60) as client:
                        before = await table_bytes(ours_db, OURS)
                        ours = await long_thread(AgentstoreSaver(client), state, args.turns)
                        rows = await table_bytes(ours_db, OURS) - before
                    async with ObjectStore(minio.address, servers.S3_ACCESS_KEY, servers.S3_SECRET_KEY,
                                           secure=False) as s3:  # fmt: skip
                        objects = sum([o.size async for o in s3.list("checkpoints", f"{agent}/")])
                    ours["bytes"] = rows + objects
                figures[name] = {**ours, "postgres_saver": theirs,
                                 "bytes_ratio": round(ours["bytes"] / theirs["bytes"], 4)}  # fmt: skip
                print(f"  {args.turns} turns, {name}: agentstore {ours['bytes'] / 1e6:.1f} MB "
                      f"({ours['turns_per_s']} turns/s, state p95 {ours['state_read_p95_ms']} ms, "
                      f"history p95 {ours['history_page_p95_ms']} ms); AsyncPostgresSaver "
                      f"{theirs['bytes'] / 1e6:.1f} MB ({theirs['turns_per_s']} turns/s, state p95 "
                      f"{theirs['state_read_p95_ms']} ms)", flush=True)  # fmt: skip
            db = servers.create_database(stack.postgres.address, f"lgmany{uuid.uuid4().hex[:8]}")
            async with running(ARTIFACTS, stack.settings(postgres_url=db, s3_endpoint=minio.address)):
                at_scale = await many_threads(stack.nats.url, f"fleet{uuid.uuid4().hex[:6]}", args.threads,
                                              args.per_thread, args.clients)  # fmt: skip
            figures["at_scale"] = at_scale
            print(f"  {at_scale['checkpoints']:,} checkpoints in {args.threads:,} threads: "
                  f"{at_scale['writes_per_s']:,} writes/s from {args.clients} clients; history page p95 "
                  f"{at_scale['history_page_p95_ms']} ms, state read p95 {at_scale['state_read_p95_ms']} ms, "
                  f"thread listing p95 {at_scale['list_threads_p95_ms']} ms", flush=True)  # fmt: skip
        finally:
            minio.stop()
    plain, delta = figures["plain"], figures["delta"]
    figures.update(
        bytes=plain["bytes"], postgres_saver_bytes=plain["postgres_saver"]["bytes"],
        bytes_ratio=plain["bytes_ratio"], delta_bytes=delta["bytes"],
        delta_postgres_saver_bytes=delta["postgres_saver"]["bytes"], delta_bytes_ratio=delta["bytes_ratio"],
        state_read_p95_ms=max(plain["state_read_p95_ms"], delta["state_read_p95_ms"]),
        history_page_p95_ms=figures["at_scale"]["history_page_p95_ms"],
        list_threads_p95_ms=figures["at_scale"]["list_threads_p95_ms"],
        writes_per_s=figures["at_scale"]["writes_per_s"], clients=args.clients,
    )  # fmt: skip
    figures["targets_met"] = {
        "bytes <= 129 MB": plain["bytes"] <= 129e6 and delta["bytes"] <= 129e6,
        "delta_bytes_ratio <= 0.5": delta["bytes_ratio"] <= 0.5,
        "state_read_p95_ms < 50": figures["state_read_p95_ms"] < 50,
        "history_page_p95_ms <= 20": figures["history_page_p95_ms"] <= 20,
        "list_threads_p95_ms < 50": figures["list_threads_p95_ms"] < 50,
        "writes_per_s >= 1000": figures["writes_per_s"] >= 1000,
    }
    print(f"\n== long graphs: {figures['targets_met']}")
    if args.json:
        emit_json(figures)


if __name__ == "__main__":
    asyncio.run(main())
