"""Memory by meaning at fleet scale: the store in PostgreSQL with pgvector. `AgentstoreStore`
answers as LangGraph's own `AsyncPostgresStore` does over generated sequences (exact mode);
full-text search without an index, hybrid search (reciprocal rank fusion), vector sizes
side by side, an evaluator's `query.store`, re-indexing, the Hypothesis-generated filters
and namespaces that must get a 400 or an answer and never a 5xx, and an item never without
its vectors, shown by killing the service between the two writes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as hst
from langgraph.store.base import GetOp, ListNamespacesOp, Op, PutOp, SearchOp

from agentstore import AgentClient, EvaluatorClient, contract
from agentstore.errors import BadRequest, ConfigError
from agentstore.langgraph import AgentstoreStore
from agentstore.schemas.store import GetItem, PutItem, SearchItems, StoreBatch
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.logs import service as logs_service_module
from agentstore_server.logs import store_items
from agentstore_server.stores.mongo import MongoStore
from agentstore_server.stores.postgres import PostgresStore
from tests.conftest import Stack
from tests.helpers import ServiceProcess, eventually, new_agent, poll_until, waiting_on_lock

SPACES = [("users", "u1"), ("users", "u2"), ("users", "u1", "prefs"), ("docs",), ("docs", "x", "u1")]
KEYS = ["a", "b", "c", "d"]
TAGS = ["red", "green", "blue"]
WORDS = ["apple", "banana", "cherry", "date", "elder", "fig"]
DIMS = 16


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic embedding with few ties: a unit vector drawn from the text's hash."""
    out = []
    for t in texts:
        rng = random.Random(hashlib.sha256(t.encode()).digest())
        v = [rng.gauss(0, 1) for _ in range(DIMS)]
        n = math.sqrt(sum(x * x for x in v))
        out.append([x / n for x in v])
    return out


INDEX: Any = {"dims": DIMS, "embed": embed, "fields": ["text"]}


@pytest.fixture
async def client(nats_server: Server, logs_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("ms")) as c:
        yield c


def value(rng: random.Random) -> dict[str, Any]:
    # A unique text each put, so no two vectors tie (how ties order is each store's own).
    words = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
    return {"n": rng.randint(0, 6), "tag": rng.choice(TAGS), "text": f"{words} {rng.randrange(10**9)}"}


def a_filter(rng: random.Random) -> dict[str, Any] | None:
    # What PostgresStore implements: top-level equality and operators (no nested filters; its
    # $gt compares text, the same as numbers for the single digits drawn here).
    return rng.choice([
        None, {"tag": rng.choice(TAGS)}, {"n": {"$gt": rng.randint(0, 5)}}, {"n": {"$lte": rng.randint(0, 5)}},
        {"n": {"$ne": rng.randint(0, 6)}}, {"tag": {"$eq": rng.choice(TAGS)}, "n": {"$gte": 2, "$lt": 5}},
    ])  # fmt: skip


def an_op(rng: random.Random, indexed: bool) -> Op:
    kind = rng.choice(["put", "put", "put", "delete", "get", "search", "search", "list"])
    if kind == "put":
        return PutOp(rng.choice(SPACES), rng.choice(KEYS), value(rng))
    if kind == "delete":
        return PutOp(rng.choice(SPACES), rng.choice(KEYS), None)
    if kind == "get":
        return GetOp(rng.choice(SPACES), rng.choice(KEYS))
    if kind == "search":
        prefix = rng.choice([(), ("users",), ("users", "u1"), ("docs",)])
        if indexed:
            return SearchOp(prefix, a_filter(rng), rng.randint(1, 5), rng.randint(0, 2),
                            " ".join(rng.sample(WORDS, 2)))  # fmt: skip
        # Without a query both orders differ by design (PostgresStore: newest update first;
        # agentstore: first put first, as InMemoryStore): compared as sets, whole.
        return SearchOp(prefix, a_filter(rng), 1000, 0, None)
    return ListNamespacesOp((), rng.choice([None, 1, 2]), rng.randint(1, 10), rng.randint(0, 1))


def comparable(op: Op, result: Any) -> Any:
    if isinstance(op, GetOp):
        return None if result is None else (result.namespace, result.key, result.value)
    if isinstance(op, SearchOp):
        rows = [(i.namespace, i.key, json.dumps(i.value, sort_keys=True),
                 None if i.score is None else round(i.score, 5)) for i in result]  # fmt: skip
        return rows if op.query else sorted(rows)
    if isinstance(op, ListNamespacesOp):
        return [tuple(ns) for ns in result]
    return result


@pytest.mark.parametrize("indexed", [False, True], ids=["plain", "semantic"])
async def test_it_answers_as_langgraphs_postgres_store(
    client: AgentClient, stack_servers: Stack, indexed: bool
) -> None:
    from langgraph.store.postgres.aio import AsyncPostgresStore

    theirs_db = servers.create_database(stack_servers.postgres.address, f"pgstore{uuid.uuid4().hex[:8]}")
    # PostgresStore's search is exact whatever its index (its query shape never uses the HNSW
    # index, its own comment says); ours is asked to scan exactly too.
    index = INDEX if indexed else None
    checked = 0
    async with AsyncPostgresStore.from_conn_string(theirs_db, index=index) as theirs:
        await theirs.setup()
        for seed in range(8):
            rng = random.Random(seed)
            ours = AgentstoreStore(client, index=INDEX if indexed else None, exact_search=True)
            run = f"p{seed}{'v' if indexed else ''}"
            for _ in range(20):
                ops = [_scoped(an_op(rng, indexed), run) for _ in range(rng.randint(1, 4))]
                # Each op alone: PostgresStore applies a batch's puts before its reads when
                # it groups them (LangGraph's stores differ there); one op per batch is the
                # same in both.
                for op in ops:
                    expected = (await theirs.abatch([op]))[0]
                    got = (await ours.abatch([op]))[0]
                    assert comparable(op, got) == comparable(op, expected), (seed, op)
                    checked += 1
    assert checked > 300


def _scoped(op: Op, run: str) -> Op:
    if isinstance(op, PutOp | GetOp):
        return op._replace(namespace=(run, *op.namespace))
    if isinstance(op, SearchOp):
        return op._replace(namespace_prefix=(run, *op.namespace_prefix))
    from langgraph.store.base import MatchCondition

    assert isinstance(op, ListNamespacesOp)
    return op._replace(match_conditions=(MatchCondition("prefix", (run,)),),
                       max_depth=op.max_depth + 1 if op.max_depth else None)  # fmt: skip


async def test_a_query_without_an_index_is_a_full_text_search(client: AgentClient) -> None:
    store = AgentstoreStore(client)
    await store.aput(("kb",), "1", {"text": "Apples grow on trees", "tag": "fruit"})
    await store.aput(("kb",), "2", {"text": "The banana is yellow", "tag": "fruit"})
    await store.aput(("kb",), "3", {"title": "apple pie", "body": {"steps": ["bake the apples twice"]}})
    await store.aput(("other",), "4", {"text": "apple"})
    found = await store.asearch(("kb",), query="apple")
    # Stemmed (apples ~ apple), any string of the value (nested too), best first.
    assert [i.key for i in found] == ["3", "1"]
    assert found[0].score is not None and found[0].score > found[1].score > 0  # type: ignore[operator]
    assert [i.key for i in await store.asearch(("kb",), query="apple", filter={"tag": "fruit"})] == ["1"]
    assert [i.key for i in await store.asearch(("kb",), query='"yellow banana"')] == []  # a phrase, in order
    assert [i.key for i in await store.asearch(("kb",), query="banana -yellow")] == []
    assert [i.key for i in await store.asearch((), query="apple", limit=10, offset=1)] == ["1", "4"]


async def test_hybrid_search_fuses_meaning_and_words(client: AgentClient) -> None:
    semantic = AgentstoreStore(client, index=INDEX)
    hybrid = AgentstoreStore(client, index=INDEX, search_mode="hybrid")
    await semantic.aput(("h",), "near", {"text": "cherry date"})  # the query's own text: nearest
    await semantic.aput(("h",), "words", {"text": "the fig tree by the elder"})  # the words, not the meaning
    for n in range(8):
        await semantic.aput(("h",), f"noise{n}", {"text": f"banana {n}"})
    by_meaning = await semantic.asearch(("h",), query="cherry date", limit=3)
    assert by_meaning[0].key == "near" and by_meaning[0].score == pytest.approx(1.0)
    fused = await hybrid.asearch(("h",), query="cherry date", limit=3)
    assert fused[0].key == "near"  # first in both rankings
    words = await hybrid.asearch(("h",), query="fig elder", limit=2)
    assert words[0].key == "words"
    # RRF: ranked first by text and wherever by vector -> 1/61 + 1/(60 + r).
    assert 1 / 61 < (words[0].score or 0) <= 2 / 61


async def test_vector_sizes_coexist_and_large_ones_use_halfvec(client: AgentClient) -> None:
    small = AgentstoreStore(client, index={"dims": 4, "embed": lambda ts: [[1.0, float(len(t)), 0.0, 1.0] for t in ts],
                                           "fields": ["text"]})  # fmt: skip
    large = AgentstoreStore(client, index={"dims": 2500, "embed": lambda ts: [[1.0] * 2500 for _ in ts],
                                           "fields": ["text"]})  # fmt: skip
    await small.aput(("mix",), "s", {"text": "abc"})
    await large.aput(("mix",), "l", {"text": "abcdef"})
    found_small = await small.asearch(("mix",), query="abc")
    found_large = await large.asearch(("mix",), query="x")
    # Each ranks by its own vectors; the other's item follows without a score.
    assert [(i.key, i.score is not None) for i in found_small] == [("s", True), ("l", False)]
    assert [(i.key, i.score is not None) for i in found_large] == [("l", True), ("s", False)]
    with pytest.raises(BadRequest, match="4000"):
        await client.call(
            contract.STORE_BATCH, StoreBatch(ops=[SearchItems(namespace_prefix=[], vector=[1.0] * 4001)])
        )


def embed_12(texts: list[str]) -> list[list[float]]:
    """`embed` in 12 dimensions: an index of this test's own (no other test uses the size)."""
    return [v[:12] for v in embed(texts)]


async def test_a_large_namespace_is_searched_through_the_index_and_a_filter_still_fills_the_page(
    client: AgentClient, settings: Settings
) -> None:
    index: Any = {"dims": 12, "embed": embed_12, "fields": ["text"]}
    store = AgentstoreStore(client, index=index)
    exact = AgentstoreStore(client, index=index, exact_search=True)
    size = store_items.EXACT_BELOW + 100  # past the size below which a namespace is scanned exactly
    for start in range(0, size, 100):
        await store.abatch([
            PutOp(("big",), f"k{n}", {"text": f"item {n}", "tag": "rare" if n % 250 == 0 else "common"})
            for n in range(start, min(size, start + 100))
        ])  # fmt: skip
    await store.aput(("small",), "only", {"text": "item 7"})

    async def index_scans() -> int:
        conn = await asyncpg.connect(settings.postgres_url)
        try:
            return int(await conn.fetchval(
                "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname = $1",
                "store_vectors_hnsw_half_12"))  # fmt: skip
        finally:
            await conn.close()

    before = await index_scans()

    async def walked() -> bool:
        return await index_scans() > before

    found = await store.asearch(("big",), query="item 7", limit=10)
    truth = await exact.asearch(("big",), query="item 7", limit=10)
    assert found[0].key == "k7" and found[0].score == pytest.approx(1.0)
    # Scored in full precision: an item found has the exact search's score for it.
    exact_scores = {i.key: i.score for i in truth}
    assert all(i.score == pytest.approx(exact_scores[i.key]) for i in found if i.key in exact_scores)
    assert len({i.key for i in found} & set(exact_scores)) >= 8
    # PostgreSQL counts the walk (its statistics reach other sessions within a second or so).
    await eventually(walked, what="a walk of the HNSW index")
    # Three items of the 600 pass the filter: the walk ends short of the page, and the exact
    # scan that follows finds all three.
    rare = await store.asearch(("big",), query="item 7", filter={"tag": "rare"}, limit=10)
    assert sorted(i.key for i in rare) == ["k0", "k250", "k500"]
    # A namespace of one vector is scanned exactly and answers at once.
    assert [(i.key, round(i.score or 0, 5)) for i in await store.asearch(("small",), query="item 7")] == [
        ("only", 1.0)
    ]


async def test_an_evaluator_searches_an_agents_memories(client: AgentClient, nats_server: Server) -> None:
    store = AgentstoreStore(client, index=INDEX)
    await store.aput(("notes",), "1", {"text": "apple banana"})
    await store.aput(("notes",), "2", {"text": "cherry"})
    async with await EvaluatorClient.connect(nats_server.url) as ev:
        by_text = await ev.search_memories(client.agent, text="cherries")
        assert [i.key for i in by_text] == ["2"]
        by_vector = await ev.search_memories(
            client.agent, ("notes",), vector=embed(["apple banana"])[0], limit=1
        )
        assert [i.key for i in by_vector] == ["1"] and by_vector[0].score == pytest.approx(1.0)
        assert await ev.search_memories(new_agent("nobody"), text="cherry") == []


async def test_reindex_re_embeds_every_item_with_the_new_fields_and_skips_what_changed(
    client: AgentClient,
) -> None:
    old = AgentstoreStore(client, index={**INDEX, "fields": ["text"]})
    for n in range(25):
        await old.aput(("re",), f"k{n}", {"text": f"t{n}", "title": f"title {n}"})
    new = AgentstoreStore(client, index={**INDEX, "fields": ["title"]})
    before = await new.asearch(("re",), query="title 7", limit=1)
    assert before[0].key != "k7" or before[0].score != pytest.approx(1.0)
    seen: list[tuple[int, int]] = []
    assert await new.areindex(("re",), page=10, progress=lambda d, s: seen.append((d, s))) == 25
    assert seen == [(10, 10), (20, 20), (25, 25)]
    after = await new.asearch(("re",), query="title 7", limit=1)
    assert after[0].key == "k7" and after[0].score == pytest.approx(1.0)
    # A write after the read that embedded it wins: the re-index's vectors are not applied.
    item = (
        await client.call(contract.STORE_BATCH, StoreBatch(ops=[GetItem(namespace=["re"], key="k3")]))
    ).results[0]
    assert item.item is not None
    await new.aput(("re",), "k3", {"text": "t3", "title": "changed"})
    from agentstore.schemas.store import PathVector, PutVectors

    stale = PutVectors(namespace=["re"], key="k3", updated_at=item.item.updated_at,
                       vectors=[PathVector(path="title", vector=embed(["stale"])[0])])  # fmt: skip
    reply = await client.call(contract.STORE_BATCH, StoreBatch(ops=[stale]))
    assert reply.results[0].updated is False
    assert (await new.asearch(("re",), query="changed", limit=1))[0].key == "k3"


async def test_the_cli_reindexes_with_progress(
    client: AgentClient, nats_server: Server, tmp_path: Path
) -> None:
    from agentstore.cli import main

    await AgentstoreStore(client).aput(("cli",), "a", {"text": "apple"})
    module = tmp_path / "myembed.py"
    module.write_text("def embed(texts):\n    return [[float(len(t)), 1.0] for t in texts]\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        code = await asyncio.to_thread(main, [
            "store", "reindex", client.agent, "--embed", "myembed:embed", "--fields", "text", "--dims", "2",
            "--prefix", "cli", "--server", nats_server.url])  # fmt: skip
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 0
    found = await AgentstoreStore(
        client, index={"dims": 2, "embed": lambda ts: [[5.0, 1.0] for _ in ts]}
    ).asearch(("cli",), query="apple")
    assert found[0].score == pytest.approx(1.0)


# -- hostile input: a 400 or an answer, never a 5xx; valid ops beside bad ones are kept -------------
json_values = hst.recursive(
    hst.none() | hst.booleans() | hst.integers(-(10**6), 10**6) | hst.floats(allow_nan=False, allow_infinity=False)
    | hst.text(max_size=8),
    lambda inner: hst.lists(inner, max_size=3) | hst.dictionaries(hst.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
operators = hst.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$regex", "x"])
filters = hst.dictionaries(
    hst.text(max_size=6),
    json_values | hst.dictionaries(operators, json_values, min_size=1, max_size=2),
    max_size=3,
)
labels = hst.text(min_size=1, max_size=12)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    filter_=filters, prefix=hst.lists(labels, max_size=3), text=hst.none() | hst.text(min_size=1, max_size=30)
)
async def test_generated_filters_and_namespaces_get_an_answer_or_a_400(
    client: AgentClient, filter_: dict[str, Any], prefix: list[str], text: str | None
) -> None:
    await client.call(contract.STORE_BATCH, StoreBatch(ops=[
        PutItem(namespace=["h", "x"], key="k", value={"n": 3, "s": "3", "t": True, "o": {"a": [1, None]}})]))  # fmt: skip
    op = SearchItems(namespace_prefix=prefix, filter_json=json.dumps(filter_), text=text, limit=5)
    try:
        reply = await client.call(contract.STORE_BATCH, StoreBatch(ops=[op]))
    except BadRequest as exc:
        # Said of the field at fault: the schema's check, an operator, a label's character.
        assert any(m in str(exc) for m in ("invalid request", "filter operator", "U+001F")), exc
    else:
        assert isinstance(reply.results[0].items, list)


async def test_a_bad_put_refuses_the_batch_with_a_400_and_the_store_is_unchanged(client: AgentClient) -> None:
    good = PutItem(namespace=["b"], key="good", value={"v": 1})
    bad = PutItem(namespace=["b"], key="bad", value={"v": "nul\u0000"})
    with pytest.raises(BadRequest):
        await client.call(contract.STORE_BATCH, StoreBatch(ops=[good, bad]))
    got = await client.call(contract.STORE_BATCH, StoreBatch(ops=[GetItem(namespace=["b"], key="good")]))
    assert got.results[0].item is None  # one transaction: all of the batch's writes or none
    await client.call(contract.STORE_BATCH, StoreBatch(ops=[good]))
    got = await client.call(contract.STORE_BATCH, StoreBatch(ops=[GetItem(namespace=["b"], key="good")]))
    assert got.results[0].item is not None


# -- durability: an item and its vectors, both or neither ---------------------------------------------
async def test_killing_the_service_between_the_item_and_its_vectors_leaves_neither(
    settings: Settings, nats_server: Server, tmp_path: Path
) -> None:
    proc = ServiceProcess("logs", settings, tmp_path / "logs.log")
    proc.start()
    try:
        async with await AgentClient.connect(nats_server.url, new_agent("kill"), timeout=5) as agent:
            store = AgentstoreStore(agent, index=INDEX)
            await poll_until(lambda: _answers(store), timeout=60)
            conn = await asyncpg.connect(settings.postgres_url)
            try:
                # Hold the vectors table: the put writes the item row, then waits on its vectors.
                blocker = conn.transaction()
                await blocker.start()
                await conn.execute("LOCK TABLE store_vectors IN EXCLUSIVE MODE")
                put = asyncio.create_task(store.aput(("k",), "item", {"text": "apple"}))
                await eventually(
                    lambda: waiting_on_lock(settings.postgres_url, "store_vectors"),
                    timeout=30,
                    what="the put to wait on its vectors",
                )
                proc.kill()
                await blocker.rollback()
                with pytest.raises(Exception):  # noqa: B017 - the reply never comes: any failure
                    await put
                items = await conn.fetchval(
                    "SELECT count(*) FROM store_items WHERE agent_id = $1", agent.agent
                )
                vectors = await conn.fetchval(
                    "SELECT count(*) FROM store_vectors WHERE agent_id = $1", agent.agent
                )
                assert (items, vectors) == (0, 0)
                # The caller's retry after the restart stores both.
                proc.start()
                await poll_until(lambda: _answers(store), timeout=60)
                await store.aput(("k",), "item", {"text": "apple"})
                items = await conn.fetchval(
                    "SELECT count(*) FROM store_items WHERE agent_id = $1", agent.agent
                )
                vectors = await conn.fetchval(
                    "SELECT count(*) FROM store_vectors WHERE agent_id = $1", agent.agent
                )
                assert (items, vectors) == (1, 1)
            finally:
                await conn.close()
    finally:
        proc.stop()


async def _answers(store: AgentstoreStore) -> bool:
    try:
        await store.aget(("ping",), "x")
    except Exception:
        return False
    return True


# -- deployment -------------------------------------------------------------------------------------
async def test_a_postgresql_without_pgvector_is_a_config_error_naming_the_fix(
    settings: Settings, stack_servers: Stack
) -> None:
    """pgvector is not a trusted extension: a role that is not a superuser cannot create it,
    as on a server that lacks it. The service refuses to start, saying what to do."""
    role = f"plain{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.postgres_url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'CREATE DATABASE "{role}" OWNER "{role}"')
    finally:
        await admin.close()
    host = settings.postgres_url.split("@")[-1].split("/")[0]
    plain = settings.model_copy(update={"postgres_url": f"postgresql://{role}@{host}/{role}"})
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        with pytest.raises(ConfigError, match="pgvector"):
            await logs_service_module.build(plain, stack)


async def test_an_older_releases_mongodb_store_moves_into_postgresql_once(settings: Settings) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    async with (
        MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo,
        PostgresStore(settings.postgres_url) as pg,
    ):
        await pg.migrate("logs", store_items.MIGRATIONS)
        await mongo.insert_new(
            "store_namespaces", [{"_id": json.dumps(["old", ["a"]]), "agent_id": "old", "seq": 5}]
        )
        await mongo.insert_new("store_items", [{
            "_id": json.dumps(["old", ["a"], "k"]), "agent_id": "old", "namespace": ["a"], "key": "k",
            "value": {"text": "apple"}, "created_at": now, "updated_at": now, "expires_at": None,
            "ttl_minutes": None, "vectors": [{"path": "text", "vector": [1.0, 0.0]}], "seq": 7, "ns_seq": 5,
            "prefixes": ["a"]}])  # fmt: skip
        assert await store_items.move_from_mongo(mongo, pg) == 1
        assert "store_items" not in await mongo.collection_names()
        assert await store_items.move_from_mongo(mongo, pg) == 0
        items = store_items.StoreItems(pg)
        found = await items.answer(
            "old", StoreBatch(ops=[SearchItems(namespace_prefix=["a"], vector=[1.0, 0.0])])
        )
        assert [(i.key, i.value, i.score) for i in found.results[0].items or []] == [
            ("k", {"text": "apple"}, 1.0)
        ]
