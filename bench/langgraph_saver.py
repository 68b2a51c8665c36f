"""LangGraph checkpoints: a 20-step graph carrying a 1 MB channel, on AgentstoreSaver (over
NATS to the artifacts service: PostgreSQL rows, large values in MinIO once per content) vs
LangGraph's own AsyncPostgresSaver, in the same run on the same PostgreSQL server (a database
each). Figures: graph steps/s and bytes stored (tables' growth, plus objects' bytes for
agentstore). Goals: >= 0.5x AsyncPostgresSaver's steps/s, <= 0.2x its bytes; for a value
that grows or is edited (chunked by content, CONTRACT v1.10): >= 1.0x its steps/s.

Shapes: the channel handed on unchanged by every step (an agent's context, documents it
carries); its last 16 characters changed every step; 1-4 KiB appended every step (a messages
list gaining a message); 1-4 KiB edited in place at a random spot (a document being worked
on); and new random content every step (where nothing can be shared; shown for honesty).

    python -m bench.langgraph_saver [--runs 5] [--json]

With `--json` the last line of stdout is one JSON object: per shape `steps_ratio` and
`bytes_ratio` (ours over AsyncPostgresSaver's), and at the top the worst of the growing and
edited shapes under the same keys, and `random_vs_whole_steps`: random content chunked over
the same stored whole (`random_whole`; what chunking costs where nothing can be shared), each
as its ratio to AsyncPostgresSaver in its own phase, since the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import operator
import os
import random
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
from agentstore.schemas.checkpoints import CHUNKED_MIN
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.devstack import servers
from agentstore_server.lifecycle.runner import running
from agentstore_server.stores.objects import ObjectStore
from bench.common import bench_stack

STEPS = 20
OURS = (
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_objects",
    "checkpoint_chunks",
    "checkpoint_namespaces",
    "checkpoint_thread_ttl",
)
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


def _text(n: int) -> str:
    return base64.b64encode(os.urandom(n * 3 // 4 + 3)).decode()[:n]


def growing(state: State) -> dict[str, Any]:
    return {"doc": state["doc"] + _text(random.randint(1024, 4096)), "n": state["n"] + 1,
            "log": [f"step {state['n']}"]}  # fmt: skip


def edited(state: State) -> dict[str, Any]:
    doc, size = state["doc"], random.randint(1024, 4096)
    at = random.randrange(len(doc) - size)
    return {"doc": doc[:at] + _text(size) + doc[at + size :], "n": state["n"] + 1,
            "log": [f"step {state['n']}"]}  # fmt: skip


def fresh(state: State) -> dict[str, Any]:
    return {"doc": _text(len(state["doc"])), "n": state["n"] + 1, "log": [f"step {state['n']}"]}


SHAPES: dict[str, Callable[[State], dict[str, Any]]] = {
    "unchanged": unchanged, "changed": changed, "growing": growing, "edited": edited, "random": fresh,
    # The same, with AgentstoreSaver storing values whole (`chunk_from=None`, v1.8's way): what
    # chunking costs where nothing can be shared, in the same run.
    "random_whole": fresh,
}  # fmt: skip


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
        assert out["n"] == STEPS and len(out["doc"]) >= len(doc)
    return runs * STEPS / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="graph runs (threads) per saver and shape")
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES)
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON object of the figures")
    args = parser.parse_args()
    shapes = list(dict.fromkeys(s for s in args.shapes.split(",") if s))
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}: choose from {', '.join(SHAPES)}")
    doc = base64.b64encode(os.urandom(768 * 1024)).decode()  # 1 MiB of text that does not compress
    with bench_stack() as stack:
        minio = servers.start_minio(stack.root / "minio", servers.free_port(), servers.free_port())
        try:
            rows: list[tuple[str, str, float, int]] = []
            for name in shapes:
                step = SHAPES[name]
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
                        agentstore_saver = AgentstoreSaver(
                            client, chunk_from=None if name.endswith("_whole") else CHUNKED_MIN
                        )
                        ours_rate = await steps_per_s(agentstore_saver, step, args.runs, doc)
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
    figures: dict[str, Any] = {"steps": STEPS, "runs": args.runs, "shapes": {}}
    for name in shapes:
        (_, _, pg_rate, pg_bytes), (_, _, rate, size) = [r for r in rows if r[0] == name]
        speed, space = rate / pg_rate, size / pg_bytes
        goal = 1.0 if name in ("growing", "edited") else 0.5
        print(f"  {name}: steps/s {speed:.2f}x (target >= {goal}: {'meets' if speed >= goal else 'BELOW'}), "
              f"bytes {space:.3f}x (target <= 0.2: {'meets' if space <= 0.2 else 'ABOVE'})")  # fmt: skip
        figures["shapes"][name] = {
            "steps_per_s": round(rate, 1), "postgres_saver_steps_per_s": round(pg_rate, 1),
            "bytes": size, "postgres_saver_bytes": pg_bytes,
            "steps_ratio": round(speed, 3), "bytes_ratio": round(space, 4),
        }  # fmt: skip
    changing = [figures["shapes"][n] for n in ("growing", "edited") if n in figures["shapes"]]
    if changing:
        figures["steps_ratio"] = min(f["steps_ratio"] for f in changing)
        figures["bytes_ratio"] = max(f["bytes_ratio"] for f in changing)
    if "random" in figures["shapes"] and "random_whole" in figures["shapes"]:
        # Each against the baseline of its own phase: this machine's speed drifts between phases.
        whole = figures["shapes"]["random_whole"]["steps_ratio"]
        figures["random_vs_whole_steps"] = round(figures["shapes"]["random"]["steps_ratio"] / whole, 3)
        print(f"  random content, chunked vs whole: steps/s {figures['random_vs_whole_steps']:.2f}x")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
