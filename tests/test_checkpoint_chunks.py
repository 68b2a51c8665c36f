"""Chunked checkpoint values (CONTRACT v1.10, issue 34): a large value that grows or is edited
stores only its changed chunks again; chunks a saver believes held but the service swept are
asked for and sent; a deletion removes chunks and packs nothing names; manifests that lie
about sizes, packs or offsets are refused with a 400, generated as well as listed."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from agentstore import AgentClient, contract
from agentstore.client import http_put
from agentstore.errors import BadRequest
from agentstore.langgraph import AgentstoreSaver
from agentstore.schemas.checkpoints import (
    MAX_PACKS,
    ChannelValue,
    Chunk,
    GetCheckpoint,
    Pack,
    PutCheckpoint,
    Value,
)
from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.stores.objects import ObjectStore
from tests.helpers import new_agent, pg_rows

STEPS = 12
DOC_BYTES = 512 * 1024


@pytest.fixture
async def client(nats_server: Server, artifacts_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("chunks")) as c:
        yield c


async def fetch(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    return await pg_rows(settings.postgres_url, sql, *args)


async def stored_objects(settings: Settings, agent: str) -> int:
    """Bytes of the agent's checkpoint objects in object storage."""
    async with ObjectStore(
        settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=False
    ) as s3:
        return sum([o.size async for o in s3.list("checkpoints", f"{agent}/")])


class Doc(TypedDict):
    doc: str
    n: int


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789 \n", k=n))


def doc_graph(edit: bool) -> StateGraph[Doc]:
    """Each step appends 2 KiB to the document, or rewrites 2 KiB of it in place."""

    def step(state: Doc) -> dict[str, Any]:
        rng = random.Random(state["n"])
        doc = state["doc"]
        if edit:
            at = rng.randrange(len(doc) - 2048)
            doc = doc[:at] + _text(rng, 2048) + doc[at + 2048 :]
        else:
            doc += _text(rng, 2048)
        return {"doc": doc, "n": state["n"] + 1}

    g = StateGraph(Doc)
    g.add_node("step", step)  # type: ignore[call-overload]
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["n"] >= STEPS else "step")
    return g


@pytest.mark.parametrize("edit", [False, True], ids=["growing", "edited"])
async def test_a_value_that_grows_or_is_edited_stores_only_its_changed_chunks(
    client: AgentClient, settings: Settings, edit: bool
) -> None:
    start = _text(random.Random(7), DOC_BYTES)
    graph = doc_graph(edit).compile(checkpointer=AgentstoreSaver(client))
    config: RunnableConfig = {"configurable": {"thread_id": "doc"}, "recursion_limit": 3 * STEPS}
    out = await graph.ainvoke({"doc": start, "n": 0}, config)
    assert out["n"] == STEPS
    # Whole values would be ~13 copies of 0.5 MiB (the input, then one per step); chunked,
    # the first copy and, per step, the few chunks around each change (64 KiB at most each).
    stored = await stored_objects(settings, client.agent)
    assert DOC_BYTES <= stored < DOC_BYTES + STEPS * 4 * 64 * 1024, stored
    assert stored < 4 * DOC_BYTES
    rows = await fetch(settings, "SELECT count(*) AS n FROM checkpoint_blobs WHERE agent_id = $1 AND channel = 'doc'"
                       " AND chunks IS NOT NULL", client.agent)  # fmt: skip
    assert rows[0]["n"] >= STEPS  # every version of the document is chunked
    # A fresh saver (nothing cached) reads the last state back byte for byte.
    state = await graph.aget_state(config)
    again = await doc_graph(edit).compile(checkpointer=AgentstoreSaver(client)).aget_state(config)
    assert again.values["doc"] == state.values["doc"] == out["doc"]
    # and every step of the history.
    fresh = doc_graph(edit).compile(checkpointer=AgentstoreSaver(client))
    docs = [h.values.get("doc") async for h in fresh.aget_state_history(config)]
    assert docs[0] == out["doc"] and docs[-2] == start and len(docs) == STEPS + 2


async def test_chunks_swept_under_a_saver_are_sent_again_and_deletion_removes_chunks_and_packs(
    client: AgentClient, settings: Settings
) -> None:
    """A saver remembers the chunks it stored; another thread's deletion sweeps them. Its next
    put names them bare, hears `missing_chunks`, and sends them in a pack: nothing is lost."""
    doc = _text(random.Random(3), 300 * 1024)
    saver = AgentstoreSaver(client)
    graph = doc_graph(edit=False).compile(checkpointer=saver)
    first: RunnableConfig = {"configurable": {"thread_id": "first"}, "recursion_limit": 3 * STEPS}
    await graph.ainvoke({"doc": doc, "n": STEPS - 1}, first)
    assert await fetch(settings, "SELECT 1 FROM checkpoint_chunks WHERE agent_id = $1", client.agent)
    await saver.adelete_thread("first")
    assert await fetch(settings, "SELECT 1 FROM checkpoint_chunks WHERE agent_id = $1", client.agent) == []
    assert await stored_objects(settings, client.agent) == 0
    assert saver.blobs.known  # the saver still believes them held
    asked: list[list[str]] = []
    call = client.call

    async def watching(endpoint: Any, request: Any, **kw: Any) -> Any:
        reply = await call(endpoint, request, **kw)
        asked.append(getattr(reply, "missing_chunks", []))
        return reply

    client.call = watching  # type: ignore[method-assign]
    second: RunnableConfig = {"configurable": {"thread_id": "second"}, "recursion_limit": 3 * STEPS}
    out = await graph.ainvoke({"doc": doc, "n": STEPS - 1}, second)
    client.call = call  # type: ignore[method-assign]
    assert any(asked), "the service should have asked for the swept chunks"
    again = await doc_graph(edit=False).compile(checkpointer=AgentstoreSaver(client)).aget_state(second)
    assert again.values["doc"] == out["doc"] and out["doc"].startswith(doc)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_of(value: Value, checkpoint_id: str = "c1") -> PutCheckpoint:
    return PutCheckpoint(
        thread_id="manifests", checkpoint_id=checkpoint_id, metadata=Value(type="msgpack", data=b"\x80"),
        checkpoint=Value(type="msgpack", data=b"\x80"), versions={"doc": "1"},
        values=[ChannelValue(channel="doc", version="1", value=value)],
    )  # fmt: skip


async def upload_pack(client: AgentClient, value: Value, pack: bytes) -> None:
    reply = await client.call(contract.CHECKPOINT_PUT, put_of(value))
    assert reply.stored is False and [m.digest for m in reply.missing] == [_digest(pack)]
    await asyncio.to_thread(http_put, reply.missing[0].url, pack, "application/octet-stream")


async def test_manifests_that_lie_are_refused_naming_the_fault(client: AgentClient) -> None:
    a, b = os.urandom(100), os.urandom(50)
    pack = Pack(digest=_digest(a + b), size=150)
    whole = _digest(a + b)
    good = [
        Chunk(digest=_digest(a), size=100, pack=0, offset=0),
        Chunk(digest=_digest(b), size=50, pack=0, offset=100),
    ]
    cases = {
        "add up to 150, not size 151": Value(type="bytes", digest=whole, size=151, chunks=good, packs=[pack]),
        "names pack 1 of 1": Value(type="bytes", digest=whole, size=150, packs=[pack],
                                   chunks=[good[0], Chunk(digest=_digest(b), size=50, pack=1, offset=100)]),
        "ends past its pack": Value(type="bytes", digest=whole, size=150, packs=[pack],
                                    chunks=[good[0], Chunk(digest=_digest(b), size=50, pack=0, offset=101)]),
        "digest of the whole, not data": Value(type="bytes", data=a + b, size=150, chunks=good, packs=[pack]),
        "a pack is listed twice": Value(type="bytes", digest=whole, size=150, chunks=good, packs=[pack, pack]),
        "packs without chunks": Value(type="bytes", digest=whole, size=150, packs=[pack]),
        f"go in at most {MAX_PACKS}": Value(
            type="bytes", digest=whole, size=150, chunks=good,
            packs=[pack, *(Pack(digest=_digest(bytes([i])), size=1) for i in range(MAX_PACKS))],
        ),
    }  # fmt: skip
    for fault, value in cases.items():
        with pytest.raises(BadRequest, match=fault):
            await client.call(contract.CHECKPOINT_PUT, put_of(value))
    # The truthful manifest is stored once its pack is uploaded, and read back as chunks.
    value = Value(type="bytes", digest=whole, size=150, chunks=good, packs=[pack])
    await upload_pack(client, value, a + b)
    assert (await client.call(contract.CHECKPOINT_PUT, put_of(value))).stored
    found = await client.call(contract.CHECKPOINT_GET, GetCheckpoint(thread_id="manifests"))
    assert found.checkpoint is not None
    got = found.checkpoint.values[0].value
    assert [c.digest for c in got.chunks] == [c.digest for c in good] and got.packs[0].url
    # A chunk named bare that the service never held: asked for, nothing stored.
    stranger = os.urandom(10)
    reply = await client.call(contract.CHECKPOINT_PUT, put_of(
        Value(type="bytes", digest=_digest(a + stranger), size=110,
              chunks=[Chunk(digest=_digest(a), size=100), Chunk(digest=_digest(stranger), size=10)]), "c2",
    ))  # fmt: skip
    assert reply.stored is False and reply.missing_chunks == [_digest(stranger)]


async def test_a_value_spread_over_too_many_packs_is_gathered_into_one(client: AgentClient) -> None:
    """Chunks held in more than MAX_PACKS packs: the service asks for all of the value's
    chunks, so the agent sends them in one pack and later reads stay small."""
    pieces = [os.urandom(64) for _ in range(MAX_PACKS + 1)]
    for i, piece in enumerate(pieces):  # each chunk stored in a pack of its own
        value = Value(type="bytes", digest=_digest(piece), size=64, packs=[Pack(digest=_digest(piece), size=64)],
                      chunks=[Chunk(digest=_digest(piece), size=64, pack=0)])  # fmt: skip
        await upload_pack(client, value, piece)
        assert (await client.call(contract.CHECKPOINT_PUT, put_of(value, f"p{i}"))).stored
    joined = b"".join(pieces)
    bare = [Chunk(digest=_digest(p), size=64) for p in pieces]
    reply = await client.call(contract.CHECKPOINT_PUT, put_of(
        Value(type="bytes", digest=_digest(joined), size=len(joined), chunks=bare), "all"))  # fmt: skip
    assert reply.stored is False and sorted(reply.missing_chunks) == sorted(c.digest for c in bare)
    # Under MAX_PACKS, the same chunks named bare are stored as they are.
    few = bare[:MAX_PACKS]
    some = b"".join(pieces[:MAX_PACKS])
    reply = await client.call(contract.CHECKPOINT_PUT, put_of(
        Value(type="bytes", digest=_digest(some), size=len(some), chunks=few), "few"))  # fmt: skip
    assert reply.stored is True


CHUNKS = st.lists(
    st.builds(
        Chunk,
        digest=st.sampled_from(["ab" * 32, "cd" * 32, _digest(b"x")]),
        size=st.integers(min_value=1, max_value=1 << 20),
        pack=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
        offset=st.integers(min_value=0, max_value=1 << 21),
    ),
    max_size=6,
)
PACKS = st.lists(
    st.builds(
        Pack, digest=st.sampled_from(["ef" * 32, "01" * 32]), size=st.integers(min_value=1, max_value=1 << 21)
    ),
    max_size=3,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(chunks=CHUNKS, packs=PACKS, size=st.integers(min_value=0, max_value=1 << 22))
async def test_generated_manifests_get_a_400_or_a_request_for_what_is_missing(
    client: AgentClient, chunks: list[Chunk], packs: list[Pack], size: int
) -> None:
    """Never stored while a pack or a chunk it names is absent; never a 5xx."""
    value = Value(type="bytes", digest="ab" * 32, size=size, chunks=chunks, packs=packs)
    try:
        reply = await client.call(contract.CHECKPOINT_PUT, put_of(value))
    except BadRequest:
        return
    assert reply.stored is False and (reply.missing or reply.missing_chunks)
