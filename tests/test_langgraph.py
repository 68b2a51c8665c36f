"""LangGraph on agentstore (issue 27): `AgentstoreSaver` passes LangGraph's own conformance
suite for checkpointers (`langgraph-checkpoint-conformance`), every capability including the
optional ones, against the real artifacts service (PostgreSQL, MinIO) over NATS."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypedDict

import asyncpg
import msgspec
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from agentstore import AgentClient, contract
from agentstore.client import http_put
from agentstore.errors import BadRequest, Unavailable
from agentstore.langgraph import AgentstoreSaver
from agentstore.schemas.checkpoints import (
    ChannelValue,
    DeltaHistoryQuery,
    GetCheckpoint,
    ListCheckpoints,
    PutCheckpoint,
    ThreadsQuery,
    Value,
)
from agentstore_server.artifacts.checkpoints import Checkpoints
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.stores.objects import ObjectStore
from agentstore_server.stores.postgres import PostgresStore
from tests import helpers
from tests import langgraph_graph as lg
from tests.helpers import new_agent
from tests.upstream_conformance import conformance as upstream
from tests.upstream_conformance.conformance import capabilities as upstream_capabilities

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def client(nats_server: Server, artifacts_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("lg")) as c:
        yield c


SUITES = {
    # The released package (what `pip install langgraph-checkpoint-conformance` gives).
    "released": (checkpointer_test, validate, ALL_CAPABILITIES),
    # LangGraph's main branch, vendored (tests/upstream_conformance/SOURCE names the commit):
    # it adds capabilities the release lacks (delta_channel_history).
    "upstream": (upstream.checkpointer_test, upstream.validate, upstream_capabilities.ALL_CAPABILITIES),
}


@pytest.mark.parametrize("suite", sorted(SUITES))
async def test_the_saver_passes_langgraphs_conformance_suite_with_every_capability(
    client: AgentClient, suite: str
) -> None:
    register, run, capabilities = SUITES[suite]

    @register(name="AgentstoreSaver")
    async def saver() -> AsyncIterator[AgentstoreSaver]:
        yield AgentstoreSaver(client)

    report = await run(saver)
    detected = {name for name, result in report.results.items() if result.detected}
    assert detected == {c.value for c in capabilities}, f"not detected: {set(capabilities) - detected}"
    failures = {name: result.failures for name, result in report.results.items() if not result.passed}
    assert not failures, failures
    assert all(r.tests_passed > 0 and r.tests_failed == 0 for r in report.results.values())
    print(suite, {name: r.tests_passed for name, r in report.results.items()})


async def pg_rows(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    return await helpers.pg_rows(settings.postgres_url, sql, *args)


async def test_a_graph_interrupts_resumes_forks_and_a_new_process_reads_it_back(
    client: AgentClient, nats_server: Server, settings: Settings
) -> None:
    graph = lg.build().compile(checkpointer=AgentstoreSaver(client))
    config: RunnableConfig = {"configurable": {"thread_id": "ticket-42"}}
    # Runs until the review asks for approval.
    await graph.ainvoke({"steps": [], "doc": lg.DOC, "count": 0}, config)
    paused = await graph.aget_state(config)
    assert paused.next == ("review",)
    assert [i.value for t in paused.tasks for i in t.interrupts] == [{"question": "approve?", "count": 1}]
    # Resumes with the answer.
    done = await graph.ainvoke(Command(resume="yes"), config)
    assert done["steps"] == ["plan", "review", "act:yes"] and done["count"] == 11 and done["doc"] == lg.DOC
    history = [s async for s in graph.aget_state_history(config)]
    assert [h.next for h in history][:3] == [(), ("act",), ("review",)]
    # Time travel: fork from the checkpoint that waited for review, with another count, and
    # run the fork to its own end (the original thread's end stays as it was).
    before_review = next(h for h in history if h.next == ("review",))
    forked = await graph.aupdate_state(before_review.config, {"count": 100})
    assert forked["configurable"]["checkpoint_id"] != before_review.config["configurable"]["checkpoint_id"]
    await graph.ainvoke(None, forked)  # to the interrupt again
    fork_end = await graph.ainvoke(Command(resume="no"), forked)
    assert fork_end["count"] == 110 and fork_end["steps"][-1] == "act:no"
    fork_state = await graph.aget_state(config)  # the thread's head is the fork's end now
    assert fork_state.values["count"] == 110
    fork_parent = [s async for s in graph.aget_state_history(config)]
    assert before_review.config["configurable"]["checkpoint_id"] in {
        h.parent_config["configurable"]["checkpoint_id"] for h in fork_parent if h.parent_config
    }
    # A new process with a fresh client reads the same thread: state, history, the document.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.langgraph_graph", nats_server.url, client.agent, "ticket-42",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out)
    assert seen["doc_intact"] and seen["values"]["count"] == 110 and seen["next"] == []
    assert seen["history"] == [h.config["configurable"]["checkpoint_id"] for h in fork_parent]
    assert seen["steps"] == [h.values.get("steps") for h in fork_parent]
    # The 200 KB document, handed on by every node (a write and a new channel version each
    # step), is one object: every value of it names the same digest, stored once.
    rows = await pg_rows(
        settings,
        "SELECT count(*) AS refs, count(DISTINCT digest) AS digests FROM ("
        " SELECT digest FROM checkpoint_blobs WHERE agent_id = $1 AND channel = 'doc'"
        " UNION ALL SELECT digest FROM checkpoint_writes WHERE agent_id = $1 AND channel = 'doc') v",
        client.agent,
    )  # fmt: skip
    assert rows[0]["refs"] >= 10 and rows[0]["digests"] == 1
    sizes = await pg_rows(settings, "SELECT size FROM checkpoint_objects WHERE agent_id = $1", client.agent)
    # That one, and the graph's input (a map holding the document), chunked by content
    # (v1.10): they share all but the chunks at the map's edges, one pack of ~200 KB in all.
    assert 200_000 < sum(r["size"] for r in sizes) < 300_000, sizes


async def test_threads_are_the_agents_own_and_deleting_one_removes_its_objects(
    client: AgentClient, nats_server: Server, settings: Settings
) -> None:
    graph = lg.build().compile(checkpointer=AgentstoreSaver(client))
    config: RunnableConfig = {"configurable": {"thread_id": "shared-name"}}
    await graph.ainvoke({"steps": [], "doc": lg.DOC + "unique", "count": 0}, config)
    async with await AgentClient.connect(nats_server.url, new_agent("other")) as other:
        assert await AgentstoreSaver(other).aget_tuple(config) is None
        assert [t async for t in AgentstoreSaver(other).alist(None)] == []
        await AgentstoreSaver(other).adelete_thread("shared-name")  # touches only its own
    assert await AgentstoreSaver(client).aget_tuple(config) is not None
    store = ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=False)
    async with store:
        held = [o async for o in store.list("checkpoints", f"{client.agent}/")]
        assert len(held) == 2  # the document, and the input holding it
        await AgentstoreSaver(client).adelete_thread("shared-name")
        assert [o async for o in store.list("checkpoints", f"{client.agent}/")] == []
    assert await pg_rows(settings, "SELECT 1 FROM checkpoint_objects WHERE agent_id = $1", client.agent) == []


def _extend(state: list[int], writes: Sequence[list[int]]) -> list[int]:
    return [*state, *(x for w in writes for x in w)]


class Counted(TypedDict):
    items: Annotated[list[int], DeltaChannel(_extend, snapshot_frequency=5)]
    n: int


async def test_keep_latest_keeps_what_a_delta_channel_needs(client: AgentClient) -> None:
    def step(state: Counted) -> dict[str, Any]:
        return {"items": [state["n"]], "n": state["n"] + 1}

    g = StateGraph(Counted)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["n"] >= 8 else "step")
    saver = AgentstoreSaver(client)
    graph = g.compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "delta"}}
    await graph.ainvoke({"items": [], "n": 0}, config)
    before = (await graph.aget_state(config)).values
    assert before["items"] == list(range(8))
    # The service's one-request walk answers as LangGraph's own (a get_tuple per ancestor), at
    # every checkpoint of the thread, for the delta channel, a plain one and an unknown one.
    from langgraph.checkpoint.base import BaseCheckpointSaver

    history = [t async for t in saver.alist(config)]
    for t in history:
        for channels in (["items"], ["items", "n", "nothing"]):
            ours = await saver.aget_delta_channel_history(config=t.config, channels=channels)
            theirs = await BaseCheckpointSaver.aget_delta_channel_history(
                saver, config=t.config, channels=channels
            )
            assert ours == theirs, (t.metadata.get("step"), channels)
    assert any(e["items"].get("seed") is not None and e["items"]["writes"]
               for e in [await saver.aget_delta_channel_history(config=t.config, channels=["items"]) for t in history])  # fmt: skip
    count = len(history)
    head = await saver.aget_tuple(config)
    assert head is not None and head.metadata["counters_since_delta_snapshot"]["items"] == [4, 4]
    await saver.aprune(["delta"], strategy="keep_latest")
    left = len([t async for t in saver.alist(config)])
    assert 1 < left < count  # the head and its ancestors back to the last snapshot, no more
    assert left <= 6
    after = (await graph.aget_state(config)).values
    assert after == before


async def test_a_pruned_delta_thread_reads_back_byte_identical_to_langgraphs_postgres_saver(
    client: AgentClient, postgres_server: Server
) -> None:
    """The same DeltaChannel graph on `AsyncPostgresSaver` (langgraph-checkpoint-postgres,
    which refuses keep_latest for such threads) and on ours, then pruned to keep_latest:
    the head's state and its delta history, serialized by LangGraph's own serde, are the
    same bytes."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    def step(state: Counted) -> dict[str, Any]:
        return {"items": [state["n"] * 7], "n": state["n"] + 1}

    g = StateGraph(Counted)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["n"] >= 23 else "step")
    serde = JsonPlusSerializer()
    config: RunnableConfig = {"configurable": {"thread_id": "pruned-delta"}}

    async def read(saver: Any) -> tuple[bytes, bytes]:
        graph = g.compile(checkpointer=saver)
        state = await graph.aget_state(config)
        head = await saver.aget_tuple(config)
        history = await saver.aget_delta_channel_history(config=head.config, channels=["items", "n"])
        # What a delta channel is rebuilt from: its seed, then the values written after it
        # (the writes' task ids are random per run, so they are left out).
        rebuilt = {ch: (h.get("seed"), [(w[1], w[2]) for w in h["writes"]]) for ch, h in history.items()}
        return serde.dumps_typed(state.values)[1], serde.dumps_typed(rebuilt)[1]

    url = servers.create_database(postgres_server.address, f"lgpg{uuid.uuid4().hex[:8]}")
    async with AsyncPostgresSaver.from_conn_string(url) as theirs:
        await theirs.setup()
        await g.compile(checkpointer=theirs).ainvoke({"items": [], "n": 0}, config)
        with pytest.raises(NotImplementedError):
            await theirs.aprune(["pruned-delta"], strategy="keep_latest")
        expected = await read(theirs)
    ours = AgentstoreSaver(client)
    await g.compile(checkpointer=ours).ainvoke({"items": [], "n": 0}, config)
    assert await read(ours) == expected
    before = len([t async for t in ours.alist(config)])
    await ours.aprune(["pruned-delta"], strategy="keep_latest")
    assert len([t async for t in ours.alist(config)]) < before
    assert await read(ours) == expected


async def test_reads_racing_a_delete_of_a_chunked_thread_find_it_whole_or_not_at_all(
    client: AgentClient,
) -> None:
    """A read is one snapshot: one racing the delete of a thread whose values are chunked
    finds the checkpoint with every chunk placed, or no checkpoint; never a chunk without
    its location (the sweep drops those between the read's statements otherwise)."""
    saver = AgentstoreSaver(client)
    graph = lg.build().compile(checkpointer=saver)
    outcomes: list[str] = []
    for round_ in range(12):
        config: RunnableConfig = {"configurable": {"thread_id": f"racing-{round_}"}}
        await graph.ainvoke({"steps": [], "doc": lg.DOC + str(round_), "count": 0}, config)
        stop = asyncio.Event()

        async def read(config: RunnableConfig = config, stop: asyncio.Event = stop) -> None:
            while not stop.is_set():
                found = await saver.aget_tuple(config)
                outcomes.append("gone" if found is None else "whole")
                if found is not None:
                    assert found.checkpoint["channel_values"]["doc"].startswith(lg.DOC)

        readers = [asyncio.create_task(read()) for _ in range(3)]
        await saver.adelete_thread(f"racing-{round_}")
        await helpers.eventually(lambda c=config: _gone(saver, c), timeout=30, what="the thread deleted")
        stop.set()
        await asyncio.gather(*readers)  # a reader that hit a lost chunk raises here
    assert "gone" in outcomes and "whole" in outcomes


async def _gone(saver: AgentstoreSaver, config: RunnableConfig) -> bool:
    return await saver.aget_tuple(config) is None


async def test_a_thread_past_its_ttl_is_deleted_with_its_values_and_a_read_refreshes_it(
    client: AgentClient, settings: Settings
) -> None:
    """Checkpoint TTL as LangGraph's store configures it: a thread written with
    `default_ttl` is deleted by the artifacts service's sweeper once it passes (checkpoints,
    writes, and the stored objects no other thread names); a thread without one stays; a
    read with `refresh_on_read` moves the expiry on."""
    fast = settings.model_copy(update={"checkpoint_ttl_sweep_seconds": 0.2})
    async with running(ARTIFACTS, fast):
        short = AgentstoreSaver(client, ttl={"default_ttl": 0.05, "refresh_on_read": False})  # 3 s
        keep = AgentstoreSaver(client)
        graph_short = lg.build().compile(checkpointer=short)
        gone: RunnableConfig = {"configurable": {"thread_id": "expires"}}
        kept: RunnableConfig = {"configurable": {"thread_id": "stays"}}
        await graph_short.ainvoke({"steps": [], "doc": lg.DOC, "count": 0}, gone)  # 200 KB: an object
        await lg.build().compile(checkpointer=keep).ainvoke({"steps": [], "doc": "small", "count": 0}, kept)
        rows = await pg_rows(settings, "SELECT ttl_minutes FROM checkpoint_thread_ttl WHERE agent_id = $1",
                             client.agent)  # fmt: skip
        assert [r["ttl_minutes"] for r in rows] == [0.05]  # only the thread written with a TTL
        assert await pg_rows(settings, "SELECT 1 FROM checkpoint_objects WHERE agent_id = $1", client.agent)

        async def expired() -> bool:
            return await short.aget_tuple(gone) is None

        await helpers.eventually(expired, timeout=30, what="the thread past its TTL to be deleted")
        assert await keep.aget_tuple(kept) is not None
        assert [t async for t in keep.alist(gone)] == []
        for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoint_thread_ttl", "checkpoint_objects"):
            left = await pg_rows(settings, f"SELECT 1 FROM {table} WHERE agent_id = $1 AND "
                                 + ("true" if table == "checkpoint_objects" else "thread_id = 'expires'"),
                                 client.agent)  # fmt: skip
            assert left == [], table
        # refresh_on_read: each read starts the TTL again.
        fresh = AgentstoreSaver(client, ttl={"default_ttl": 60})
        read: RunnableConfig = {"configurable": {"thread_id": "read-often"}}
        await lg.build().compile(checkpointer=fresh).ainvoke({"steps": [], "doc": "x", "count": 0}, read)

        async def expiry() -> Any:
            found = await pg_rows(settings, "SELECT expires_at FROM checkpoint_thread_ttl WHERE agent_id = $1 "
                                  "AND thread_id = 'read-often'", client.agent)  # fmt: skip
            return found[0]["expires_at"]

        before = await expiry()
        assert await fresh.aget_tuple(read) is not None
        assert await expiry() > before
        after_get = await expiry()
        assert len([t async for t in fresh.alist(read)]) > 1
        assert await expiry() > after_get
        # A copy is written now: it carries the source's TTL (and a thread without one, none).
        await fresh.acopy_thread("read-often", "read-often-copy")
        await keep.acopy_thread("stays", "stays-copy")
        copies = await pg_rows(settings, "SELECT thread_id, ttl_minutes, expires_at > now() AS live FROM "
                               "checkpoint_thread_ttl WHERE agent_id = $1 AND thread_id LIKE '%-copy'",
                               client.agent)  # fmt: skip
        assert [(r["thread_id"], r["ttl_minutes"], r["live"]) for r in copies] == [
            ("read-often-copy", 60, True)
        ]
        assert await fresh.aget_tuple({"configurable": {"thread_id": "read-often-copy"}}) is not None
    for bad in (
        {"default_ttl": 0},
        {"default_ttl": "10"},
        {"ttl": 5},
        {"default_ttl": 5, "sweep_interval_minutes": 1},
    ):
        with pytest.raises(ValueError, match="ttl"):
            AgentstoreSaver(client, ttl=bad)
    with pytest.raises(BadRequest):  # the wire refuses what the saver would (another client)
        await client.call(contract.CHECKPOINT_PUT, PutCheckpoint(
            thread_id="t", checkpoint_id="c", checkpoint=Value(type="empty", data=b""),
            metadata=Value(type="empty", data=b""), ttl_minutes=-1.0))  # fmt: skip


async def test_the_cli_lists_threads_largest_first_and_prunes_them(
    client: AgentClient,
    nats_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agentstore.cli import main

    saver = AgentstoreSaver(client)
    for thread, doc in (("small", "x"), ("big", lg.DOC), ("middle", "y" * 5000)):
        cfg: RunnableConfig = {"configurable": {"thread_id": thread}}
        await lg.build().compile(checkpointer=saver).ainvoke({"steps": [], "doc": doc, "count": 0}, cfg)
    monkeypatch.setenv("NATS_URL", nats_server.url)  # the evaluator's connection, as stack.env gives it

    async def cli(*argv: str) -> Any:
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["--json", *argv]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    listed = await cli("threads", "list", client.agent)
    assert [t["thread_id"] for t in listed["items"]] == ["big", "middle", "small"]
    sizes = [t["bytes"] for t in listed["items"]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > len(lg.DOC)
    # Paged by size: the cursor continues where the first page ended.
    first = await client_request_threads(nats_server, client, limit=2)
    assert [t.thread_id for t in first.items] == ["big", "middle"] and first.next_cursor
    rest = await client_request_threads(nats_server, client, limit=2, cursor=first.next_cursor)
    assert [t.thread_id for t in rest.items] == ["small"] and rest.next_cursor is None
    before = len([t async for t in saver.alist({"configurable": {"thread_id": "big"}})])
    pruned = await cli("threads", "prune", client.agent, "big", "--server", nats_server.url)
    assert pruned["checkpoints"] == before - 1
    assert len([t async for t in saver.alist({"configurable": {"thread_id": "big"}})]) == 1
    assert (await cli("threads", "prune", client.agent, "small", "--strategy", "delete",
                      "--server", nats_server.url))["checkpoints"] > 0  # fmt: skip
    assert [t["thread_id"] for t in (await cli("threads", "list", client.agent))["items"]] == [
        "big",
        "middle",
    ]


async def test_the_thread_listing_agrees_with_the_checkpoints_through_every_write_and_delete(
    client: AgentClient, nats_server: Server, settings: Settings
) -> None:
    """`query.threads` reads a summary the database keeps beside the checkpoints (migration
    005): after puts (concurrent ones, an overwrite, a second namespace), a copy, a prune, a
    delete by run and a thread deleted, it says what grouping the checkpoints themselves says."""
    from agentstore import EvaluatorClient

    saver = AgentstoreSaver(client)

    async def put(thread: str, i: int, ns: str = "", run: str | None = None) -> None:
        config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        await saver.aput(config, _checkpoint(i), {"run_id": run} if run else {}, {})  # type: ignore[typeddict-item]

    async def listed(evaluator: EvaluatorClient) -> list[tuple[str, int, int, str]]:
        items, cursor = [], None
        while True:  # every page, 2 at a time, so the cursor over the summary is walked too
            page = await evaluator.call(contract.QUERY_THREADS,
                                        ThreadsQuery(agent_id=client.agent, limit=2, cursor=cursor))  # fmt: skip
            items += [(t.thread_id, t.checkpoints, t.namespaces, t.newest_checkpoint_id) for t in page.items]
            if (cursor := page.next_cursor) is None:
                return sorted(items)

    async def grouped() -> list[tuple[str, int, int, str]]:
        rows = await pg_rows(settings, "SELECT thread_id, count(*) AS n, count(DISTINCT checkpoint_ns) AS ns,"
                             " max(checkpoint_id) AS newest FROM checkpoints WHERE agent_id = $1"
                             " GROUP BY thread_id", client.agent)  # fmt: skip
        return sorted((r["thread_id"], r["n"], r["ns"], r["newest"]) for r in rows)

    async with await EvaluatorClient.connect(nats_server.url) as evaluator:
        await asyncio.gather(*(put("busy", i) for i in range(30)))  # one namespace's row, raced for
        await asyncio.gather(*(put("busy", i, ns="child") for i in range(5)), put("runs", 1, run="r1"),
                             put("runs", 2, run="r2"), put("runs", 3, run="r1"))  # fmt: skip
        await put("busy", 7)  # an overwrite counts once
        assert await listed(evaluator) == await grouped()
        assert dict((t, n) for t, n, _, _ in await listed(evaluator)) == {"busy": 35, "runs": 3}
        await saver.acopy_thread("busy", "copy")
        await saver.adelete_for_runs(["r1"])
        assert ("runs", 1, 1, _checkpoint(2)["id"]) in await listed(evaluator)
        await asyncio.gather(saver.aprune(["busy"]), put("copy", 99), put("copy", 98, ns="child"))
        assert await listed(evaluator) == await grouped()
        await saver.adelete_thread("runs")
        await saver.adelete_for_runs(["r2"])  # nothing left of it: a no-op
        assert [t for t, _, _, _ in await listed(evaluator)] == ["busy", "copy"]
        assert await listed(evaluator) == await grouped()
        # Nothing is left behind for the deleted thread, and no namespace row counts zero.
        assert await pg_rows(settings, "SELECT 1 FROM checkpoint_namespaces WHERE agent_id = $1"
                             " AND (thread_id = 'runs' OR checkpoints < 1)", client.agent) == []  # fmt: skip


async def client_request_threads(nats_server: Server, client: AgentClient, **fields: Any) -> Any:
    from agentstore import EvaluatorClient

    async with await EvaluatorClient.connect(nats_server.url) as evaluator:
        return await evaluator.call(contract.QUERY_THREADS,
                                    ThreadsQuery(agent_id=client.agent, order="bytes", **fields))  # fmt: skip


async def test_the_sync_interface_runs_from_another_thread_and_says_what_to_do_on_the_loop(
    client: AgentClient,
) -> None:
    saver = AgentstoreSaver(client)
    graph = lg.build().compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "sync"}}
    # LangGraph's sync API (invoke, get_state) from a worker thread, the client's loop running.
    await asyncio.to_thread(graph.invoke, {"steps": [], "doc": "short", "count": 0}, config)
    state = await asyncio.to_thread(graph.get_state, config)
    assert state.next == ("review",) and state.values["count"] == 1
    with pytest.raises(asyncio.InvalidStateError, match="use the async interface"):
        saver.get_tuple(config)


def _checkpoint(i: int) -> Any:
    from langgraph.checkpoint.base import empty_checkpoint

    c = empty_checkpoint()
    c["id"] = f"1ef00000-0000-6000-8000-{i:012d}"
    return c


async def test_a_reply_past_its_size_budget_defers_values_and_the_client_fetches_them(
    client: AgentClient,
) -> None:
    """Many values just under the inline size, over more than one put: the reading reply
    carries what fits (512 KiB) and defers the rest, which the saver asks for apart."""
    saver = AgentstoreSaver(client)
    blob = [bytes([i]) * 15_000 for i in range(40)]  # each inline (<= 16 KiB), 600 KB in all
    config: RunnableConfig = {"configurable": {"thread_id": "budget", "checkpoint_ns": ""}}
    c = _checkpoint(1)
    c["channel_values"] = {f"ch{i}": blob[i] for i in range(20)}
    versions = {f"ch{i}": saver.get_next_version(None, None) for i in range(20)}
    c["channel_versions"] = versions
    stored = await saver.aput(config, c, {"source": "loop", "step": 0}, versions)
    for start in (20, 30):
        await saver.aput_writes(
            stored, [(f"w{i}", blob[i]) for i in range(start, start + 10)], f"task-{start}"
        )
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {f"ch{i}": blob[i] for i in range(20)}
    assert sorted((w[1], w[2]) for w in tup.pending_writes or []) == sorted(
        (f"w{i}", blob[i]) for i in range(20, 40)
    )
    # The service did defer: its reply alone does not hold every value.
    raw = await client.call(contract.CHECKPOINT_GET, GetCheckpoint(thread_id="budget"))
    assert raw.checkpoint is not None
    assert any(v.value.deferred for v in raw.checkpoint.values) or any(
        w.value.deferred for w in raw.checkpoint.writes
    )


async def test_bad_values_are_refused_and_a_tampered_object_is_not_used(
    client: AgentClient, settings: Settings
) -> None:
    digest = "ab" * 32
    put = PutCheckpoint(
        thread_id="bad",
        checkpoint_id="c1",
        checkpoint=Value(type="msgpack", digest=digest, size=10),
        metadata=Value(type="msgpack", data=b"\x80"),
    )
    # A digest never uploaded: nothing stored, a presigned PUT for it.
    reply = await client.call(contract.CHECKPOINT_PUT, put)
    assert reply.stored is False and [m.digest for m in reply.missing] == [digest]
    assert (await client.call(contract.CHECKPOINT_GET, GetCheckpoint(thread_id="bad"))).checkpoint is None
    # Both data and a digest, or neither: 400 naming it.
    for value in (Value(type="msgpack", data=b"x", digest=digest, size=1), Value(type="msgpack")):
        with pytest.raises(BadRequest, match="either data or a digest"):
            await client.call(contract.CHECKPOINT_PUT, msgspec.structs.replace(put, checkpoint=value))
    with pytest.raises(BadRequest, match="metadata_json"):
        await client.call(contract.CHECKPOINT_PUT, msgspec.structs.replace(
            put, checkpoint=Value(type="msgpack", data=b"\x80"), metadata_json="[1]"))  # fmt: skip
    with pytest.raises(BadRequest, match="cursor"):
        await client.call(contract.CHECKPOINT_LIST, ListCheckpoints(cursor="nope"))
    # Bytes put under a digest they do not hash to are refused when read back.
    saver = AgentstoreSaver(client)
    graph = lg.build().compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": "tampered"}}
    await graph.ainvoke({"steps": [], "doc": lg.DOC + "tampered", "count": 0}, config)
    rows = await pg_rows(
        settings, "SELECT digest, size FROM checkpoint_objects WHERE agent_id = $1", client.agent
    )
    store = ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=False)
    async with store:
        for r in rows:
            await store.put(
                "checkpoints", f"{client.agent}/{r['digest']}", b"x" * r["size"], "application/octet-stream"
            )
    with pytest.raises(Unavailable, match="other content"):
        await AgentstoreSaver(client).aget_tuple(config)  # a fresh saver: nothing cached


async def test_the_sweep_removes_objects_uploaded_and_never_registered(
    client: AgentClient, settings: Settings
) -> None:
    """An agent that uploaded a value and stopped before sending its put again leaves an
    object nothing names: the agent's next sweep removes it once it is old enough."""
    data = b"abandoned" * 5000
    digest = hashlib.sha256(data).hexdigest()
    put = PutCheckpoint(thread_id="gone", checkpoint_id="c1", metadata=Value(type="msgpack", data=b"\x80"),
                        checkpoint=Value(type="bytes", digest=digest, size=len(data)))  # fmt: skip
    reply = await client.call(contract.CHECKPOINT_PUT, put)
    await asyncio.to_thread(http_put, reply.missing[0].url, data, "application/octet-stream")
    async with (
        PostgresStore(settings.postgres_url) as pg,
        ObjectStore(
            settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=False
        ) as store,
    ):
        checkpoints = Checkpoints(pg, store)
        assert await checkpoints.sweep(client.agent) == 0  # young: maybe a put is on its way
        checkpoints.abandoned_after = timedelta(0)
        assert await checkpoints.sweep(client.agent) == 1
        assert await store.stat("checkpoints", f"{client.agent}/{digest}") is None


async def test_a_sweep_between_a_puts_check_and_its_commit_never_leaves_a_dangling_digest(
    client: AgentClient, settings: Settings
) -> None:
    """The interleaving made to happen: a put finds its value's digest registered; before its
    transaction takes the agent's lock, a delete's sweep removes that digest (nothing named it
    yet). The put must then ask for the upload again, not store a row naming a gone object."""
    from agentstore_server.bus.rpc import RequestContext

    data = b"shared value" * 4000
    digest = hashlib.sha256(data).hexdigest()
    saver = AgentstoreSaver(client)
    graph = lg.build().compile(checkpointer=saver)
    first: RunnableConfig = {"configurable": {"thread_id": "first"}}
    await graph.ainvoke({"steps": [], "doc": data.decode(), "count": 0}, first)  # registers the value
    stored = await pg_rows(
        settings, "SELECT digest FROM checkpoint_objects WHERE agent_id = $1", client.agent
    )
    value_digest = next(r["digest"] for r in stored if r["digest"] != digest)
    tuple_ = await saver.aget_tuple(first)
    assert tuple_ is not None
    async with (
        PostgresStore(settings.postgres_url) as pg,
        ObjectStore(
            settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=False
        ) as store,
    ):
        checkpoints = Checkpoints(pg, store)
        ctx = RequestContext(subject=f"agents.{client.agent}.rpc.checkpoint.put", agent=client.agent)
        missing = checkpoints._missing

        async def check_then_sweep(agent: str, values: Any) -> Any:
            answer = await missing(agent, values)  # registered: nothing to upload
            await saver.adelete_thread("first")  # ...and now swept, object and row
            return answer

        checkpoints._missing = check_then_sweep  # type: ignore[method-assign]
        put = PutCheckpoint(
            thread_id="second", checkpoint_id="c1", metadata=Value(type="msgpack", data=b"\x80"),
            checkpoint=Value(type="msgpack", data=b"\x80"),
            values=[ChannelValue(channel="doc", version="1", value=Value(type="msgpack", digest=value_digest,
                                                                        size=int(1e5)))],
        )  # fmt: skip
        reply = await checkpoints.put(ctx, put)
    assert reply.stored is False and [m.digest for m in reply.missing] == [value_digest]
    assert await pg_rows(settings, "SELECT 1 FROM checkpoint_blobs WHERE agent_id = $1 AND thread_id = 'second'",
                         client.agent) == []  # fmt: skip


class Chunks(TypedDict):
    chunks: Annotated[list[str], DeltaChannel(_extend, snapshot_frequency=100)]
    n: int


async def test_a_delta_history_past_a_replys_budget_is_fetched_whole(client: AgentClient) -> None:
    """40 steps each writing 15 KB to a delta channel: its history (600 KB of inline values)
    does not fit one reply; the deferred writes are fetched and the history is LangGraph's."""
    from langgraph.checkpoint.base import BaseCheckpointSaver

    def step(state: Chunks) -> dict[str, Any]:
        return {"chunks": [f"{state['n']:04d}" + "x" * 15_000], "n": state["n"] + 1}

    g = StateGraph(Chunks)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["n"] >= 40 else "step")
    saver = AgentstoreSaver(client)
    config: RunnableConfig = {"configurable": {"thread_id": "chunks"}, "recursion_limit": 100}
    await g.compile(checkpointer=saver).ainvoke({"chunks": [], "n": 0}, config)
    ours = await saver.aget_delta_channel_history(config=config, channels=["chunks"])
    theirs = await BaseCheckpointSaver.aget_delta_channel_history(saver, config=config, channels=["chunks"])
    assert ours == theirs and len(ours["chunks"]["writes"]) == 41  # the input's, then 40 steps'
    raw = await client.call(
        contract.CHECKPOINT_HISTORY, DeltaHistoryQuery(thread_id="chunks", channels=["chunks"])
    )
    assert any(w.write.value.deferred for w in raw.channels[0].writes)  # the reply did defer
