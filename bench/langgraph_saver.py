"""LangGraph checkpoints: a 20-step graph carrying a 1 MB channel, on AgentstoreSaver (over
NATS to the artifacts service: PostgreSQL rows, large values in MinIO once per content) vs
LangGraph's own AsyncPostgresSaver, in the same run on the same PostgreSQL server (a database
each). Figures: graph steps/s and bytes stored (tables' growth, plus objects' bytes for
agentstore). Goals: >= 0.5x AsyncPostgresSaver's steps/s, <= 0.2x its bytes.

Two shapes: the channel handed on unchanged by every step (an agent's context, documents it
carries), and changed a little at every step (where content addressing cannot help; shown
for honesty).

    python -m bench.langgraph_saver [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import operator
import os
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import asyncpg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph

from agentstore import AgentClient
from agentstore.langgraph import AgentstoreSaver
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.devstack import servers
from agentstore_server.lifecycle.runner import running
from agentstore_server.stores.objects import ObjectStore
from bench.common import bench_stack

STEPS = 20
OURS = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_objects")
THEIRS = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations")


class State(TypedDict):
    doc: str
    n: int
    log: Annotated[list[str], operator.add]


def graph_of(step: Callable[[State], dict[str, Any]]) -> StateGraph[State]:
    g = StateGraph(State)
    g.add_node("step", step)  # type: ignore[call-overload]
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["n"] >= STEPS else "step")
    return g


def unchanged(state: State) -> dict[str, Any]:
    return {"doc": state["doc"], "n": state["n"] + 1, "log": [f"step {state['n']}"]}


def changed(state: State) -> dict[str, Any]:
    # A new tail every step of every run: no two versions alike, in a thread or across them.
    doc = state["doc"]
    return {"doc": f"{doc[:-16]}{os.urandom(8).hex()}", "n": state["n"] + 1, "log": [f"step {state['n']}"]}


async def table_bytes(url: str, tables: tuple[str, ...]) -> int:
    conn = await asyncpg.connect(url)
    try:
        total = 0
        for t in tables:
            total += await conn.fetchval("SELECT coalesce(pg_total_relation_size(to_regclass($1)), 0)", t)
        return int(total)
    finally:
        await conn.close()


async def steps_per_s(saver: BaseCheckpointSaver[Any], step: Callable[[State], dict[str, Any]], runs: int,
                      doc: str) -> float:  # fmt: skip
    graph = graph_of(step).compile(checkpointer=saver)
    started = time.perf_counter()
    for _ in range(runs):
        config: RunnableConfig = {
            "configurable": {"thread_id": uuid.uuid4().hex},
            "recursion_limit": STEPS * 3,
        }
        out = await graph.ainvoke({"doc": doc, "n": 0, "log": []}, config)
        assert out["n"] == STEPS and len(out["doc"]) == len(doc)
    return runs * STEPS / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="graph runs (threads) per saver and shape")
    args = parser.parse_args()
    doc = base64.b64encode(os.urandom(768 * 1024)).decode()  # 1 MiB of text that does not compress
    with bench_stack() as stack:
        minio = servers.start_minio(stack.root / "minio", servers.free_port(), servers.free_port())
        try:
            rows: list[tuple[str, str, float, int]] = []
            for name, step in (("unchanged", unchanged), ("changed", changed)):
                theirs_db = servers.create_database(stack.postgres.address, f"lgpg{uuid.uuid4().hex[:8]}")
                ours_db = servers.create_database(stack.postgres.address, f"lgas{uuid.uuid4().hex[:8]}")
                async with AsyncPostgresSaver.from_conn_string(theirs_db) as pg_saver:
                    await pg_saver.setup()
                    before = await table_bytes(theirs_db, THEIRS)
                    pg_rate = await steps_per_s(pg_saver, step, args.runs, doc)
                    pg_bytes = await table_bytes(theirs_db, THEIRS) - before
                settings = stack.settings(postgres_url=ours_db, s3_endpoint=minio.address)
                async with running(ARTIFACTS, settings):
                    agent = f"bench{uuid.uuid4().hex[:6]}"
                    async with await AgentClient.connect(stack.nats.url, agent, timeout=60) as client:
                        before = await table_bytes(ours_db, OURS)
                        ours_rate = await steps_per_s(AgentstoreSaver(client), step, args.runs, doc)
                        ours_rows = await table_bytes(ours_db, OURS) - before
                    async with ObjectStore(minio.address, servers.S3_ACCESS_KEY, servers.S3_SECRET_KEY,
                                           secure=False) as s3:  # fmt: skip
                        ours_objects = sum([o.size async for o in s3.list("checkpoints", f"{agent}/")])
                rows.append((name, "AsyncPostgresSaver", pg_rate, pg_bytes))
                rows.append((name, "AgentstoreSaver", ours_rate, ours_rows + ours_objects))
                print(f"  ({name}: agentstore rows {ours_rows:,} B + objects {ours_objects:,} B)")
        finally:
            minio.stop()
    print(f"\n== LangGraph, {STEPS}-step graph with a 1 MiB channel, {args.runs} runs per saver and shape")
    for name, saver, rate, size in rows:
        print(f"  {name:<9} {saver:<18} {rate:>8.1f} steps/s  {size / 1e6:>9.1f} MB stored")
    for name in ("unchanged", "changed"):
        (_, _, pg_rate, pg_bytes), (_, _, rate, size) = [r for r in rows if r[0] == name]
        speed, space = rate / pg_rate, size / pg_bytes
        print(f"  {name}: steps/s {speed:.2f}x (target >= 0.5: {'meets' if speed >= 0.5 else 'BELOW'}), "
              f"bytes {space:.3f}x (target <= 0.2: {'meets' if space <= 0.2 else 'ABOVE'})")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
