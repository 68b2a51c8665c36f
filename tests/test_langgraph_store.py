"""LangGraph's long-term memory on agentstore: `AgentstoreStore` answers as LangGraph's own
`InMemoryStore` does over generated operation sequences (gets, filtered and semantic
searches, puts, deletes, namespace lists, in batches), items expire by TTL (refreshed on
read), and one agent's store is not another's. Real logs service (FerretDB) over NATS."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, Op, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from agentstore import AgentClient
from agentstore.langgraph import AgentstoreStore
from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.logs import store_items
from agentstore_server.stores.postgres import PostgresStore
from tests.helpers import eventually, new_agent

SPACES = [("users", "u1"), ("users", "u2"), ("users", "u1", "prefs"), ("docs",), ("docs", "x", "u1")]
KEYS = ["a", "b", "c", "d"]
TAGS = ["red", "green", "blue"]
WORDS = ["apple", "banana", "cherry", "date", "elder"]


def embed(texts: list[str]) -> list[list[float]]:
    """The caller's embedding function (a deterministic one: letter counts), as LangGraph
    takes one; integer vectors keep both stores' cosine arithmetic exact."""
    return [[float(t.count(ch)) for ch in "aeiounrt"] for t in texts]


INDEX: Any = {"dims": 8, "embed": embed, "fields": ["text"]}


@pytest.fixture
async def client(nats_server: Server, logs_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("ls")) as c:
        yield c


def value(rng: random.Random) -> dict[str, Any]:
    return {"n": rng.randint(0, 6), "tag": rng.choice(TAGS), "nested": {"x": rng.randint(0, 2)},
            "text": " ".join(rng.sample(WORDS, rng.randint(1, 3)))}  # fmt: skip


def a_filter(rng: random.Random) -> dict[str, Any] | None:
    return rng.choice([
        None, {"tag": rng.choice(TAGS)}, {"n": {"$gt": rng.randint(0, 5)}}, {"n": {"$lte": rng.randint(0, 5)}},
        {"n": {"$ne": rng.randint(0, 6)}}, {"nested": {"x": rng.randint(0, 2)}},
        {"tag": {"$eq": rng.choice(TAGS)}, "n": {"$gte": 2, "$lt": 5}},
    ])  # fmt: skip


def an_op(rng: random.Random, written: list[tuple[str, ...]]) -> Op | None:
    kind = rng.choice(["put", "put", "put", "delete", "get", "search", "search", "list"])
    if kind == "put":
        return PutOp(rng.choice(SPACES), rng.choice(KEYS), value(rng))
    if kind == "delete":
        return PutOp(rng.choice(SPACES), rng.choice(KEYS), None)
    if kind == "get":
        # Only namespaces already written: InMemoryStore's dict remembers a namespace a get
        # looked up, which moves it in its search order (a quirk, not a semantic).
        return GetOp(rng.choice(written), rng.choice(KEYS)) if written else None
    if kind == "search":
        prefix = rng.choice([(), ("users",), ("users", "u1"), ("docs",)])
        query = rng.choice([None, None, " ".join(rng.sample(WORDS, 2))])
        return SearchOp(prefix, a_filter(rng), rng.randint(1, 5), rng.randint(0, 2), query)
    conditions = rng.choice([(), (MatchCondition("prefix", ("users",)),), (MatchCondition("suffix", ("u1",)),),
                             (MatchCondition("prefix", ("*", "u1")),)])  # fmt: skip
    return ListNamespacesOp(conditions, rng.choice([None, 1, 2]), rng.randint(1, 10), rng.randint(0, 1))


def comparable(op: Op, result: Any, reference: InMemoryStore | None = None) -> Any:
    if isinstance(op, GetOp):
        return None if result is None else (result.namespace, result.key, result.value)
    if isinstance(op, SearchOp):
        return [(i.namespace, i.key, i.value, None if i.score is None else round(i.score, 9)) for i in result]
    if isinstance(op, ListNamespacesOp):
        return [tuple(ns) for ns in result]
    return result


def listed_with_items(mem: InMemoryStore, op: ListNamespacesOp) -> list[tuple[str, ...]]:
    """InMemoryStore's answer, less the namespaces that hold no item: it keeps listing a
    namespace after its last item is deleted; agentstore lists namespaces that hold items
    (as LangGraph's PostgresStore does)."""
    everything = mem._handle_list_namespaces(op._replace(limit=10_000, offset=0, max_depth=None))
    held = {ns for ns in everything if mem._data.get(ns)}
    if op.max_depth is not None:
        held = {ns[: op.max_depth] for ns in held}
    return sorted(held)[op.offset : op.offset + op.limit]


@pytest.mark.parametrize("indexed", [False, True], ids=["plain", "semantic"])
async def test_it_answers_as_langgraphs_in_memory_store(client: AgentClient, indexed: bool) -> None:
    checked = 0
    for seed in range(12):
        rng = random.Random(seed)
        ours = AgentstoreStore(client, index=INDEX if indexed else None)
        mem = InMemoryStore(index=INDEX if indexed else None)
        run = f"s{seed}{'v' if indexed else ''}"
        written: list[tuple[str, ...]] = []
        for _ in range(20):
            ops = [op for op in (an_op(rng, written) for _ in range(rng.randint(1, 4))) if op is not None]
            # Each seed in its own top-level namespace of the one agent's store.
            ops = [_scoped(op, run) for op in ops]
            if not indexed:  # without an index agentstore's `query` is full-text search, which
                # LangGraph's stores ignore (tested on its own below): compared without it
                ops = [op._replace(query=None) if isinstance(op, SearchOp) else op for op in ops]
            if indexed:  # InMemoryStore fails a batch whose puts share a text (it embeds each text once)
                texts = [op.value["text"] for op in ops if isinstance(op, PutOp) and op.value]
                ops = [
                    op
                    for op in ops
                    if not (isinstance(op, PutOp) and op.value and texts.count(op.value["text"]) > 1)
                ]
            if not ops:
                continue
            # A batch's reads see the store before its puts, in both.
            listed = {
                i: listed_with_items(mem, op) for i, op in enumerate(ops) if isinstance(op, ListNamespacesOp)
            }
            expected = await mem.abatch(ops)
            got = await ours.abatch(ops)
            for i, (op, e, g) in enumerate(zip(ops, expected, got, strict=True)):
                e = listed.get(i, e)
                assert comparable(op, g) == comparable(op, e), (seed, op)
                checked += 1
            written += [op.namespace for op in ops if isinstance(op, PutOp) and op.value is not None]
    assert checked > 300


def _scoped(op: Op, run: str) -> Op:
    if isinstance(op, PutOp | GetOp):
        return op._replace(namespace=(run, *op.namespace))
    if isinstance(op, SearchOp):
        return op._replace(namespace_prefix=(run, *op.namespace_prefix))
    assert isinstance(op, ListNamespacesOp)
    return op._replace(match_conditions=(MatchCondition("prefix", (run,)), *op.match_conditions),
                       max_depth=op.max_depth + 1 if op.max_depth else None)  # fmt: skip


async def test_items_expire_by_ttl_and_a_read_with_refresh_extends_them(
    client: AgentClient, settings: Settings
) -> None:
    store = AgentstoreStore(client, ttl={"refresh_on_read": True})
    await store.aput(("mem",), "short", {"v": 1}, ttl=0.02)  # 1.2 s
    await store.aput(("mem",), "long", {"v": 2}, ttl=10)
    await store.aput(("mem",), "kept", {"v": 3})
    assert (await store.aget(("mem",), "short")) is not None
    async with PostgresStore(settings.postgres_url) as pg:

        async def expires(key: str) -> datetime:
            return await pg.pool.fetchval(
                "SELECT expires_at FROM store_items WHERE agent_id = $1 AND key = $2", client.agent, key
            )

        before = await expires("long")
        await store.aget(("mem",), "long", refresh_ttl=False)
        assert await expires("long") == before  # a plain read leaves it
        await eventually(lambda: _later(store, expires, before), timeout=10, what="a refreshing read")
        # The short one expires: invisible to get, search and list, then swept.
        await eventually(lambda: _gone(store), timeout=15, what="the short item to expire")
        assert [i.key for i in await store.asearch(("mem",), refresh_ttl=False)] == ["long", "kept"]
        assert await store_items.sweep_expired(pg) == 1
        left = await pg.pool.fetchval("SELECT count(*) FROM store_items WHERE agent_id = $1", client.agent)
        assert left == 2


async def _later(store: AgentstoreStore, expires: Any, before: datetime) -> bool:
    await store.aget(("mem",), "long")  # refresh_on_read from the store's ttl config
    return bool(await expires("long") > before)


async def _gone(store: AgentstoreStore) -> bool:
    # Without refresh: polling with it would keep the item alive (as it does, rightly).
    return await store.aget(("mem",), "short", refresh_ttl=False) is None


async def test_an_agents_store_is_its_own(client: AgentClient, nats_server: Server) -> None:
    await AgentstoreStore(client).aput(("profile",), "name", {"v": "Ada"})
    async with await AgentClient.connect(nats_server.url, new_agent("other")) as other:
        theirs = AgentstoreStore(other)
        assert await theirs.aget(("profile",), "name") is None
        assert await theirs.asearch(()) == [] and await theirs.alist_namespaces() == []
        await theirs.adelete(("profile",), "name")
    item = await AgentstoreStore(client).aget(("profile",), "name")
    assert item is not None and item.value == {"v": "Ada"}


async def test_a_graph_node_reads_and_writes_memories_through_the_store(client: AgentClient) -> None:
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore
    from typing_extensions import TypedDict

    class S(TypedDict):
        user: str
        seen: int

    async def remember(state: S, *, store: BaseStore) -> dict[str, Any]:
        ns = ("users", state["user"])
        prior = await store.aget(ns, "visits")
        count = (prior.value["count"] if prior else 0) + 1
        await store.aput(ns, "visits", {"count": count})
        return {"seen": count}

    g = StateGraph(S)
    g.add_node("remember", remember)
    g.add_edge(START, "remember")
    g.add_edge("remember", END)
    graph = g.compile(store=AgentstoreStore(client))
    assert (await graph.ainvoke({"user": "u7", "seen": 0}))["seen"] == 1
    assert (await graph.ainvoke({"user": "u7", "seen": 0}))["seen"] == 2
    # The sync interface from a worker thread.
    store = AgentstoreStore(client)
    item = await asyncio.to_thread(store.get, ("users", "u7"), "visits")
    assert item is not None and item.value == {"count": 2}


async def test_64_concurrent_runs_of_sync_nodes_on_an_indexed_store_finish(client: AgentClient) -> None:
    """A sync node calls the store from a worker thread and waits on the loop; with a plain
    embed function LangGraph's own path embeds on the loop's default executor, whose few
    threads are those waiting nodes: 6 runs hung for ever on 2 cores. The store embeds in
    the calling thread instead, so any number of runs finishes."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore
    from typing_extensions import TypedDict

    class S(TypedDict):
        user: str
        found: int

    def remember(state: S, *, store: BaseStore) -> dict[str, Any]:  # a sync node
        store.put(("notes", state["user"]), "n", {"text": f"apple {state['user']}"})
        return {"found": len(store.search(("notes",), query="apple", limit=100))}

    g = StateGraph(S)
    g.add_node("remember", remember)
    g.add_edge(START, "remember")
    g.add_edge("remember", END)
    graph = g.compile(store=AgentstoreStore(client, index=INDEX))
    runs = [graph.ainvoke({"user": f"u{n}", "found": 0}) for n in range(64)]
    # A hang would be the bug: bounded, so the test fails rather than blocks.
    results = await asyncio.wait_for(asyncio.gather(*runs), timeout=120)
    assert all(r["found"] >= 1 for r in results)
    assert len(await AgentstoreStore(client, index=INDEX).asearch(("notes",), query="apple", limit=100)) == 64


async def test_an_async_only_embed_function_serves_sync_nodes_too(client: AgentClient) -> None:
    async def aembed(texts: list[str]) -> list[list[float]]:
        return embed(texts)

    store = AgentstoreStore(client, index={"dims": 8, "embed": aembed, "fields": ["text"]})
    await asyncio.to_thread(store.put, ("async",), "k", {"text": "cherry"})
    found = await asyncio.to_thread(store.search, ("async",), query="cherry")
    assert [i.key for i in found] == ["k"] and found[0].score == pytest.approx(1.0)
