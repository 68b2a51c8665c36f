"""A full backup round trip: a demo fleet's data exported, imported into an empty stack
(fresh databases, another MinIO), exported again: byte for byte the same."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import pytest

from agentstore import AgentClient, contract
from agentstore.schemas.sessions import AddSessionItems
from agentstore.schemas.store import PathVector, PutItem, StoreBatch
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import running
from agentstore_server.logs.collections import BACKED_UP
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.metrics.service import SPEC as METRICS
from agentstore_server.ops.backup import backup, restore
from agentstore_server.ops.demo import run_demo
from agentstore_server.tasks.service import SPEC as TASKS
from tests.conftest import Stack, make_settings
from tests.helpers import eventually

pytestmark = pytest.mark.slow
SPECS = (LOGS, TASKS, METRICS, ARTIFACTS)


async def caught_up(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for stream, durable in (("LOGS", "logs"), ("TASKS", "tasks"), ("METRICS", "metrics"),
                                ("ARTIFACTS", "artifacts")):  # fmt: skip
            info = await js.consumer_info(stream, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True
    finally:
        await nc.close()


async def framework_state(url: str) -> None:
    """What the demo fleet does not write: a structured output (seed 004), a framework session
    (OpenAI Agents / ADK items), the memory store with vectors (LangGraph's store), a graph's
    checkpoints and a trace: the last two have summary tables kept by triggers, which a
    restore must not count twice."""
    from agentstore.langgraph import AgentstoreSaver
    from tests import langgraph_graph as lg

    async with await AgentClient.connect(url, "backup-agent") as agent:
        graph = lg.build().compile(checkpointer=AgentstoreSaver(agent))
        await graph.ainvoke({"steps": [], "doc": "notes", "count": 0}, {"configurable": {"thread_id": "t-1"}})
        async with agent.span("answer") as root:
            root.usage("gpt-4o-mini", input_tokens=10, output_tokens=2)
            async with agent.span("tool"):
                pass
        await agent.output("summary", 1, {"score": 0.9})
        await agent.call(contract.SESSION_ADD, AddSessionItems(session_id="s1", items=[{"role": "user", "content": "hi"}],
                                                               batch_id="b1"))  # fmt: skip
        await agent.call(contract.STORE_BATCH, StoreBatch(ops=[
            PutItem(namespace=["mem"], key="k", value={"text": "apple"},
                    vectors=[PathVector(path="text", vector=[1.0, 0.5, 0.25])])]))  # fmt: skip


async def test_export_wipe_import_export_of_a_demo_fleet_is_identical(
    nats_server: Server, stack_servers: Stack, tmp_path: Path
) -> None:
    source = make_settings(nats_server, stack_servers.mongo, stack_servers)
    async with AsyncExitStack() as services:
        for spec in SPECS:
            await services.enter_async_context(running(spec, source))
        stop = asyncio.Event()
        demo = asyncio.create_task(run_demo(nats_server.url, stop))
        await asyncio.sleep(6)  # the demo fleet works for a while
        stop.set()
        await demo
        await framework_state(nats_server.url)
        await eventually(lambda: caught_up(nats_server.url), timeout=60, what="every service caught up")
    first = await backup(source, tmp_path / "first", objects=True)
    # Every collection and table with data in it: a backup that leaves one out fails here.
    for name in BACKED_UP:
        assert first[f"mongo.{name}"] > 0, name
    for table in ("store_items", "store_vectors", "store_namespaces", "store_dims", "checkpoints",
                  "checkpoint_namespaces", "spans", "traces"):  # fmt: skip
        assert first[f"postgres.{table}"] > 0, table
    assert first["mongo.logs"] > 100 and first["postgres.tasks"] > 10 and first["postgres.runs"] > 0
    assert first["postgres.metric_points"] > 100 and first["objects.screenshots"] > 5
    assert first["postgres.agent_metrics"] > 0 and first["mongo.messages"] > 0

    # An empty stack: fresh databases and another MinIO; its services make their tables once.
    other_minio = servers.start_minio(tmp_path / "minio-b", servers.free_port(), servers.free_port())
    try:
        empty: Settings = make_settings(nats_server, stack_servers.mongo, stack_servers,
                                        s3_endpoint=other_minio.address)  # fmt: skip
        for spec in SPECS:
            async with running(spec, empty):
                pass
        restored = await restore(empty, tmp_path / "first")
        assert {k: v for k, v in restored.items()} == first
        second = await backup(empty, tmp_path / "second", objects=True)
    finally:
        other_minio.stop()
    assert second == first
    files = sorted(p.relative_to(tmp_path / "first") for p in (tmp_path / "first").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "second") for p in (tmp_path / "second").rglob("*")
                           if p.is_file())  # fmt: skip
    different = [
        f for f in files if (tmp_path / "first" / f).read_bytes() != (tmp_path / "second" / f).read_bytes()
    ]
    assert not different, different
