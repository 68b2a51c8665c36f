"""The logs service's whole MongoDB domain: memories, conversations, messages,
audit events and agent outputs, with agent isolation, bad input and indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client

from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.logs.retention import sweep_once
from agentstore_server.stores.mongo import MongoStore
from tests.conftest import READ_PATHS, settings_for_read_path
from tests.helpers import (
    after,
    as_json,
    dead_letters,
    eventually,
    new_agent,
    publish_all,
    request,
)

# Every test here runs on both read paths of the logs service.
settings = pytest.fixture(params=READ_PATHS)(settings_for_read_path)

BASE = datetime(2026, 1, 25, 10, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


async def send(nc: Client, agent: str, kind: str, *bodies: Any) -> dict[str, Any]:
    """Publish bodies to agents.{agent}.{kind}; returns the `after` of the last."""
    acks = await publish_all(nc, [(f"agents.{agent}.{kind}", as_json(b), None) for b in bodies])
    return after(acks[-1])


async def query(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    code, reply = await request(nc, subject, body)
    assert code == 200, reply
    return reply


async def test_keyed_memory_keeps_the_newest_whatever_the_arrival_order(
    logs_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    newer = {"id": "m2", "kind": "fact", "key": "goal", "content": "v2", "ts": at(2), "tags": ["x"]}
    older = {
        "id": "m1",
        "kind": "fact",
        "key": "goal",
        "content": "v1",
        "ts": at(1),
        "data": {"a": 1},
    }
    # The newer one first, then a late older one, in separate batches and in one.
    pos = await send(nc, agent, "memories", newer)
    await query(nc, "query.memories", {"agent_ids": [agent], "after": pos})
    pos = await send(nc, agent, "memories", older, older)
    page = await query(nc, "query.memories", {"agent_ids": [agent], "key": "goal", "after": pos})
    assert [(m["id"], m["content"]) for m in page["items"]] == [("m2", "v2")]
    assert "data" not in page["items"][0]  # replaced whole, not merged
    newest = {**newer, "id": "m3", "content": "v3", "ts": at(3)}
    pos = await send(nc, agent, "memories", older, newest)
    page = await query(nc, "query.memories", {"agent_ids": [agent], "after": pos})
    assert [m["content"] for m in page["items"]] == ["v3"]


async def test_memories_filter_by_kind_task_and_all_tags_newest_first(
    logs_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    bodies = [
        {"id": f"m{i}", "kind": "obs" if i % 2 else "plan", "content": f"c{i}", "ts": at(i),
         "task_id": f"t{i % 3}", "tags": ["a", "b"] if i % 4 == 0 else ["a"]}
        for i in range(12)
    ]  # fmt: skip
    pos = await send(nc, agent, "memories", *bodies)
    page = await query(nc, "query.memories", {"agent_ids": [agent], "after": pos})
    assert [m["id"] for m in page["items"]] == [f"m{i}" for i in range(11, -1, -1)]
    page = await query(nc, "query.memories", {"agent_ids": [agent], "kind": "obs", "task_id": "t1"})
    assert [m["id"] for m in page["items"]] == ["m7", "m1"]
    page = await query(nc, "query.memories", {"agent_ids": [agent], "tags": ["b", "a"]})
    assert [m["id"] for m in page["items"]] == ["m8", "m4", "m0"]


async def test_conversation_upsert_messages_and_updated_at_following_the_newest_message(
    logs_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    await send(nc, agent, "conversations", {"id": "c1", "ts": at(0), "user_id": "u1"})
    await send(
        nc, agent, "conversations",
        {"id": "c1", "ts": at(5), "user_id": "u1", "context": {"lang": "de"}},
        {"id": "c1", "ts": at(1), "user_id": "stale"},  # older: must not win
    )  # fmt: skip
    messages = [
        {"id": f"msg{i}", "conversation_id": "c1", "role": role, "content": f"text {i}",
         "ts": at(10 + i), "agent_steps": ["search"], "pdf_names": ["a.pdf"],
         "source_citations": [{"page": i}], "meta_data": {"n": i}}
        for i, role in enumerate(["user", "assistant", "user"])
    ]  # fmt: skip
    pos = await send(nc, agent, "messages", *reversed(messages))
    conv = await query(nc, "query.conversation", {"agent_id": agent, "conversation_id": "c1", "after": pos})
    assert conv["user_id"] == "u1" and conv["context"] == {"lang": "de"}
    assert conv["created_at"] == "2026-01-25T10:00:00.000Z"
    assert conv["updated_at"] == "2026-01-25T10:00:12.000Z"
    assert [m["id"] for m in conv["messages"]] == ["msg0", "msg1", "msg2"]
    assert conv["messages"][1]["source_citations"] == [{"page": 1}]
    # A message for an unknown conversation creates it; lists are newest updated first.
    pos = await send(nc, agent, "messages", {"id": "x1", "conversation_id": "c2", "role": "user",
                                              "content": "hi", "ts": at(60)})  # fmt: skip
    page = await query(nc, "query.conversations", {"agent_ids": [agent], "after": pos})
    assert [c["conversation_id"] for c in page["items"]] == ["c2", "c1"]
    page = await query(nc, "query.conversations", {"agent_ids": [agent], "user_id": "u1"})
    assert [c["conversation_id"] for c in page["items"]] == ["c1"]
    code, reply = await request(nc, "query.conversation", {"agent_id": agent, "conversation_id": "nope"})
    assert code == 404 and "nope" in reply["error"]["message"]


async def test_events_are_append_only_and_listed_oldest_first(
    logs_service: ServiceHost, nc: Client, mongo: MongoStore
) -> None:
    agent = new_agent()
    first = {"id": "e1", "type": "run.claimed", "run_id": "r1", "ts": at(1), "payload": {"v": 1}}
    pos = await send(
        nc, agent, "events", first, {"id": "e0", "type": "run.queued", "run_id": "r1", "ts": at(0)}
    )
    await query(nc, "query.events", {"agent_ids": [agent], "after": pos})
    rewrite = {**first, "payload": {"v": 2}, "type": "tampered"}
    pos = await send(nc, agent, "events", rewrite, {"id": "e2", "type": "other", "ts": at(2)})
    page = await query(nc, "query.events", {"agent_ids": [agent], "after": pos})
    assert [(e["id"], e["type"]) for e in page["items"]] == [
        ("e0", "run.queued"), ("e1", "run.claimed"), ("e2", "other"),
    ]  # fmt: skip
    assert page["items"][1]["payload"] == {"v": 1}
    page = await query(nc, "query.events", {"run_id": "r1", "agent_ids": [agent], "since": at(1)})
    assert [e["id"] for e in page["items"]] == ["e1"]


async def test_outputs_upsert_newest_wins_and_filter(logs_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    v2 = {
        "id": "o1",
        "kind": "keff",
        "schema_version": 2,
        "run_id": "r1",
        "data": {"k": 1.02},
        "ts": at(2),
    }
    v1 = {**v2, "schema_version": 1, "data": {"k": 0.9}, "ts": at(1)}
    other = {"id": "o2", "kind": "plot", "schema_version": 1, "data": {}, "ts": at(3)}
    pos = await send(nc, agent, "outputs", v2, v1, other)
    page = await query(nc, "query.outputs", {"agent_ids": [agent], "after": pos})
    assert [(o["id"], o["schema_version"]) for o in page["items"]] == [("o2", 1), ("o1", 2)]
    page = await query(nc, "query.outputs", {"agent_ids": [agent], "run_id": "r1", "kind": "keff"})
    assert page["items"][0]["data"] == {"k": 1.02}
    page = await query(nc, "query.outputs", {"agent_ids": [agent], "schema_version": 1})
    assert [o["id"] for o in page["items"]] == ["o2"]


DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]

BAD_BODIES: list[tuple[str, Any, str]] = [
    ("memories", {"id": "m", "kind": "k"}, "content"),
    ("memories", {"id": "m", "kind": "k", "content": "c", "tags": "a"}, "tags"),
    ("memories", {"id": "m", "kind": "k", "content": "c", "data": {"$set": 1}}, "$"),
    ("conversations", {"id": "c", "context": {"a.b": 1}}, "'.'"),
    ("conversations", {"id": "c", "agent_id": "intruder"}, "agent"),
    ("messages", {"id": "m", "conversation_id": "c", "role": "robot", "content": "x"}, "role"),
    ("messages", {"id": "m", "conversation_id": "c", "role": "user", "content": "a\u0000b"}, "NUL"),
    ("events", {"id": "e", "type": "t", "payload": {"deep": DEEP}}, "nesting"),
    ("events", {"id": "e", "type": 5}, "type"),
    ("outputs", {"id": "o", "kind": "k", "schema_version": "2", "data": {}}, "schema_version"),
    ("outputs", {"id": "o", "kind": "k", "schema_version": 1}, "data"),
    ("outputs", b'{"id": "o", "kind": "k", "schema_version": 1, "data": {"x": Infinity}}', "JSON"),
    # 1,000 levels: past the JSON decoder's own stack limit (a RecursionError, not a crash).
    ("events", b'{"id": "e", "type": "t", "payload": ' + b'{"d": ' * 1000 + b"1" + b"}" * 1001, "nesting"),
    ("events", {"id": "e", "type": "t", "payload": {f"k{i}": i for i in range(10_000)}}, "keys"),
]  # fmt: skip


async def test_bad_bodies_on_every_subject_are_deadlettered_and_neighbours_stored(
    logs_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    good = {
        "memories": {"id": "good", "kind": "k", "content": "c"},
        "conversations": {"id": "good"},
        "messages": {"id": "good", "conversation_id": "good", "role": "user", "content": "x"},
        "events": {"id": "good", "type": "t"},
        "outputs": {"id": "good", "kind": "k", "schema_version": 1, "data": {}},
    }
    items = []
    for kind, body, _ in BAD_BODIES:
        items.append((f"agents.{agent}.{kind}", as_json(body), None))
        items.append((f"agents.{agent}.{kind}", as_json(good[kind]), None))
    acks = await publish_all(nc, items)
    dead = await eventually(lambda: _at_least(dead_letters(nc), len(BAD_BODIES)), what="dead letters")
    dead.sort(key=lambda m: int(m.headers["Dead-Seq"]))
    for msg, (kind, _, word) in zip(dead, BAD_BODIES, strict=True):
        assert msg.headers["Dead-Subject"] == f"agents.{agent}.{kind}"
        assert word.lower() in msg.headers["Dead-Reason"].lower(), msg.headers["Dead-Reason"]
    pos = after(acks[-1])
    for name in ("memories", "events", "outputs"):
        page = await query(nc, f"query.{name}", {"agent_ids": [agent], "after": pos})
        assert [it["id"] for it in page["items"]] == ["good"]
    conv = await query(nc, "query.conversation", {"agent_id": agent, "conversation_id": "good"})
    assert [m["id"] for m in conv["messages"]] == ["good"]


async def _at_least(value: Any, n: int) -> Any:
    items = await value
    return items if len(items) >= n else None


QUERIES = ["logs", "memories", "conversations", "events", "outputs"]


@pytest.mark.parametrize("name", QUERIES)
@pytest.mark.parametrize(
    "body",
    [
        {"surprise": 1},
        {"agent_ids": {"$ne": None}},
        {"agent_ids": ["ok", 5]},
        {"limit": 0},
        {"limit": 1001},
        {"limit": "10"},
        {"cursor": "eyJub3QiOiAiYSBsaXN0In0"},
        {"cursor": "%%%"},
    ],
)
async def test_every_list_query_refuses_bad_requests_with_400(
    logs_service: ServiceHost, nc: Client, name: str, body: dict[str, Any]
) -> None:
    code, reply = await request(nc, f"query.{name}", body)
    assert code == 400 and reply["error"]["code"] == 400


async def test_conversation_query_needs_its_fields(logs_service: ServiceHost, nc: Client) -> None:
    code, reply = await request(nc, "query.conversation", {"agent_id": "a1"})
    assert code == 400 and "conversation_id" in reply["error"]["message"]


@pytest.mark.parametrize("name", QUERIES)
async def test_agent_scoped_queries_see_only_their_own_data(
    logs_service: ServiceHost, nc: Client, name: str
) -> None:
    me, other = new_agent(), new_agent()
    bodies = {
        "logs": {"id": "x", "level": "info", "message": "m"},
        "memories": {"id": "x", "kind": "k", "content": "c"},
        "conversations": {"id": "x"},
        "events": {"id": "x", "type": "t"},
        "outputs": {"id": "x", "kind": "k", "schema_version": 1, "data": {}},
    }
    await send(nc, other, name, bodies[name])
    pos = await send(nc, me, name, bodies[name])
    page = await query(nc, f"agents.{me}.rpc.query.{name}", {"after": pos})
    assert {it["agent_id"] for it in page["items"]} == {me}
    code, reply = await request(nc, f"agents.{me}.rpc.query.{name}", {"agent_ids": [me, other]})
    assert code == 403
    code, _ = await request(
        nc, f"agents.{me}.rpc.query.conversation", {"agent_id": other, "conversation_id": "x"}
    )
    assert code == 403


async def test_event_pages_neither_skip_nor_repeat_while_inserts_continue(
    logs_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    pos = await send(
        nc, agent, "events", *({"id": f"e{i:04d}", "type": "t", "ts": at(i)} for i in range(300))
    )
    seen: list[str] = []
    body: dict[str, Any] = {"agent_ids": [agent], "limit": 40, "after": pos}
    extra = 0
    while True:
        page = await query(nc, "query.events", body)
        seen += [e["id"] for e in page["items"]]
        # Concurrent inserts, both before and after the cursor's position.
        await send(nc, agent, "events", {"id": f"late{extra}", "type": "t", "ts": at(-1 - extra)},
                   {"id": f"new{extra}", "type": "t", "ts": at(10_000 + extra)})  # fmt: skip
        extra += 1
        if page["next_cursor"] is None:
            break
        body = {"agent_ids": [agent], "limit": 40, "cursor": page["next_cursor"]}
    assert len(seen) == len(set(seen))
    originals = [s for s in seen if s.startswith("e")]
    assert originals == [f"e{i:04d}" for i in range(300)]


async def test_retention_sweep_deletes_aged_logs_and_keeps_events(
    logs_service: ServiceHost, nc: Client, mongo: MongoStore
) -> None:
    agent = new_agent()
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    await send(nc, agent, "events", {"id": "e-old", "type": "t", "ts": old})
    pos = await send(nc, agent, "logs", {"id": "old", "level": "info", "message": "m", "ts": old},
                     {"id": "new", "level": "info", "message": "m"})  # fmt: skip
    await query(nc, "query.logs", {"agent_ids": [agent], "after": pos})
    deleted = await sweep_once(mongo, {"logs": 30})
    assert deleted == {"logs": 1}
    page = await query(nc, "query.logs", {"agent_ids": [agent]})
    assert [it["id"] for it in page["items"]] == ["new"]
    page = await query(nc, "query.events", {"agent_ids": [agent]})
    assert [it["id"] for it in page["items"]] == ["e-old"]


@pytest.mark.parametrize(
    ("collection", "filter", "sort"),
    [
        ("logs", {"agent_id": "a1"}, [("ts", -1), ("_id", -1)]),
        ("logs", {"task_id": "t1"}, [("ts", -1), ("_id", -1)]),
        ("memories", {"agent_id": "a1", "key": "k"}, [("ts", -1), ("_id", -1)]),
        ("conversations", {"agent_id": "a1"}, [("updated_at", -1), ("_id", -1)]),
        ("messages", {"agent_id": "a1", "conversation_id": "c1"}, [("ts", 1), ("_id", 1)]),
        ("events", {"run_id": "r1"}, [("ts", 1), ("_id", 1)]),
        ("agent_outputs", {"agent_id": "a1"}, [("ts", -1), ("_id", -1)]),
    ],
)
async def test_queries_are_served_by_the_backend_not_a_full_scan(
    logs_service: ServiceHost, mongo: MongoStore, collection: str, filter: Any, sort: Any
) -> None:
    plan = await mongo.explain(collection, filter, sort, 100)
    if "ferretdbVersion" in plan.get("serverInfo", {}):
        # FerretDB 1.x: the equality filter runs in PostgreSQL, on its indexed JSONB.
        assert plan["filterPushdown"] is True
    else:
        assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"])
