"""`agentstore export` / `import`: JSON Lines round trips (folder, MinIO), seed-001 files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.logs.portability import COLLECTIONS
from agentstore_server.ops.portable import export_to, import_from, import_seed
from agentstore_server.stores.mongo import MongoStore
from tests.helpers import after, as_json, new_agent, publish_all, request


async def fill(nc: Client, agent: str) -> dict[str, Any]:
    items = [("conversations", {"id": "c1", "user_id": "u", "context": {"k": [1, {"z": None}]},
                                "ts": "2026-01-01T00:00:00Z"})]  # fmt: skip
    items += [
        ("messages", {"id": f"m{i}", "conversation_id": "c1", "role": "user", "content": f"é {i}",
                      "ts": f"2026-01-01T00:00:0{i}.123Z", "source_citations": [{"p": i}]})
        for i in range(5)
    ]  # fmt: skip
    items += [("memories", {"id": "mem1", "kind": "fact", "key": "k", "content": "x", "tags": ["a"]})]
    items += [("memories", {"id": "mem2", "kind": "fact", "content": "y", "data": {"n": 1.5}})]
    items += [("events", {"id": f"e{i}", "type": "t", "payload": {"i": i}}) for i in range(3)]
    acks = await publish_all(nc, [(f"agents.{agent}.{k}", as_json(b), None) for k, b in items])
    return after(acks[-1])


def read(folder: Path) -> dict[str, bytes]:
    return {name: (folder / f"{name}.jsonl").read_bytes() for name in COLLECTIONS}


async def test_export_wipe_import_round_trip_is_byte_for_byte_equal(
    logs_service: ServiceHost, nc: Client, mongo: MongoStore, settings: Settings, tmp_path: Path
) -> None:
    agent, other = new_agent(), new_agent()
    await fill(nc, other)
    pos = await fill(nc, agent)
    code, _ = await request(nc, "query.events", {"agent_ids": [agent], "after": pos})
    assert code == 200
    counts = await export_to(str(tmp_path / "one"), agent, settings)
    assert counts == {"conversations": 1, "messages": 5, "memories": 2, "events": 3}
    first = read(tmp_path / "one")
    assert all(json.loads(line)["agent_id"] == agent for b in first.values() for line in b.splitlines())

    for name in COLLECTIONS:
        await mongo.delete_many(name, {"agent_id": agent})
    assert (await request(nc, "query.conversation", {"agent_id": agent, "conversation_id": "c1"}))[0] == 404

    assert await import_from(str(tmp_path / "one"), settings) == counts
    assert await import_from(str(tmp_path / "one"), settings) == counts  # idempotent
    await export_to(str(tmp_path / "two"), agent, settings)
    assert read(tmp_path / "two") == first
    code, conv = await request(nc, "query.conversation", {"agent_id": agent, "conversation_id": "c1"})
    assert code == 200 and [m["id"] for m in conv["messages"]] == [f"m{i}" for i in range(5)]


async def test_export_to_minio_and_import_back(
    logs_service: ServiceHost, nc: Client, mongo: MongoStore, settings: Settings, tmp_path: Path
) -> None:
    agent = new_agent()
    pos = await fill(nc, agent)
    await request(nc, "query.events", {"agent_ids": [agent], "after": pos})
    await export_to(str(tmp_path / "local"), agent, settings)
    await export_to(f"s3://exports/{agent}", agent, settings)
    for name in COLLECTIONS:
        await mongo.delete_many(name, {"agent_id": agent})
    counts = await import_from(f"s3://exports/{agent}", settings)
    assert counts["messages"] == 5
    await export_to(str(tmp_path / "again"), agent, settings)
    assert read(tmp_path / "again") == read(tmp_path / "local")


async def test_seed_001_conversation_files_import_idempotently(
    logs_service: ServiceHost, nc: Client, settings: Settings, tmp_path: Path
) -> None:
    agent = new_agent()
    seed = {
        "conversation_id": "7f1c2d3e-0000-4000-8000-000000000001",
        "user_id": "alice",
        "created_at": "2025-01-25T10:00:00",
        "context": {"project": "normo"},
        "messages": [
            {"role": "user", "content": "Was sagt §5?", "timestamp": "2025-01-25T10:00:01"},
            {"role": "assistant", "content": "…", "timestamp": "2025-01-25T10:00:05",
             "agent_steps": ["retrieve"], "pdf_names": ["bauordnung.pdf"],
             "source_citations": [{"page": 3}], "meta_data": {"model": "x"}},
        ],
    }  # fmt: skip
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(seed))
    for _ in range(2):
        assert await import_seed([path], agent, settings) == {"conversations": 1, "messages": 2}
    code, conv = await request(
        nc, "query.conversation", {"agent_id": agent, "conversation_id": seed["conversation_id"]}
    )
    assert code == 200 and conv["user_id"] == "alice"
    assert conv["updated_at"] == "2025-01-25T10:00:05.000Z"
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    assert conv["messages"][1]["source_citations"] == [{"page": 3}]


async def test_seed_001_a_folder_of_many_agents_files_imports_per_agent(
    logs_service: ServiceHost, nc: Client, settings: Settings, tmp_path: Path
) -> None:
    from agentstore_server.ops.portable import import_seed_tree

    agents = [new_agent("ann"), new_agent("ben")]
    for n, agent in enumerate(agents):
        folder = tmp_path / "backups" / agent
        folder.mkdir(parents=True)
        for c in range(3):
            seed = {"conversation_id": f"c{n}{c}", "user_id": "u", "created_at": "2025-01-25T10:00:00",
                    "messages": [{"role": "user", "content": f"hi {i}", "timestamp": f"2025-01-25T10:00:0{i}"}
                                 for i in range(4)]}  # fmt: skip
            (folder / f"conv{c}.json").write_text(json.dumps(seed))
    for _ in range(2):  # idempotent
        counts = await import_seed_tree([tmp_path / "backups"], None, settings)
        assert counts == {"agents": 2, "conversations": 6, "messages": 24}
    for n, agent in enumerate(agents):
        code, page = await request(nc, "query.conversations", {"agent_ids": [agent]})
        assert code == 200 and sorted(c["conversation_id"] for c in page["items"]) == [
            f"c{n}{c}" for c in range(3)
        ]


async def test_seed_001_json_backup_is_kept_continuously_and_restores_the_same_conversations(
    logs_service: ServiceHost, nc: Client, settings: Settings, tmp_path: Path
) -> None:
    """`agentstore mirror`: every conversation and message JetStream accepted lands in
    DIR/<agent>/<conversation>.jsonl (also across a stop), a refused one does not, a line
    repeated by a crash is read once, and importing the folder into an empty database gives
    the same conversations back (their export is byte-identical to the original's)."""
    import asyncio

    from agentstore_server.ops.mirror import mirror
    from agentstore_server.ops.portable import export_to, import_seed_tree
    from tests.helpers import eventually

    agent = new_agent("normo")
    folder = tmp_path / "mirror"
    file = folder / agent / "c1.jsonl"

    def lines() -> list[dict[str, Any]]:
        return [json.loads(x) for x in file.read_text().splitlines()] if file.exists() else []

    async def running_mirror() -> tuple[asyncio.Event, asyncio.Task[Any]]:
        stop = asyncio.Event()
        return stop, asyncio.create_task(mirror(nc, folder, stop))

    stop, task = await running_mirror()
    # The refused one first: the mirror reads in stream order, so once the 6 good lines are
    # written it has been seen (published last, the stop could come before it was read).
    await publish_all(nc, [(f"agents.{agent}.messages", b'{"id": "bad", "conversation_id": "c1"}', None)])
    await fill(nc, agent)  # a conversation, 5 messages, memories and events
    await eventually(lambda: asyncio.sleep(0, len(lines()) == 6), timeout=20, what="the mirror's 6 lines")
    stop.set()
    first = await task
    assert (first.written, first.skipped, first.files) == (6, 1, 1)

    # Stopped: what arrives meanwhile waits in the stream, and is mirrored on restart.
    later = [{"id": "m9", "conversation_id": "c1", "role": "assistant", "content": "later",
              "ts": "2026-01-01T00:01:00Z"},
             {"id": "m10", "conversation_id": "c1", "role": "user", "content": "and more"}]  # fmt: skip
    acks = await publish_all(nc, [(f"agents.{agent}.messages", as_json(m), None) for m in later])
    stop, task = await running_mirror()
    await eventually(lambda: asyncio.sleep(0, len(lines()) == 8), timeout=20, what="the later lines")
    stop.set()
    assert (await task).written == 2
    records = lines()
    assert records[0] == {"record": "conversation", "conversation_id": "c1", "ts": "2026-01-01T00:00:00.000Z",
                          "user_id": "u", "context": {"k": [1, {"z": None}]}}  # fmt: skip
    assert [r["id"] for r in records[1:]] == ["m0", "m1", "m2", "m3", "m4", "m9", "m10"]
    assert records[2]["content"] == "é 1" and records[2]["source_citations"] == [{"p": 1}]
    # A crash between writing and acknowledging repeats lines: they are read once.
    with open(file, "a") as out:
        out.write(file.read_text().splitlines()[3] + "\n")

    code, _ = await request(nc, "query.messages", {"agent_id": agent, "conversation_id": "c1",
                                                   "after": after(acks[-1])})  # fmt: skip
    assert code == 200  # the logs service stored everything the mirror wrote
    original = tmp_path / "original"
    await export_to(str(original), agent, settings)
    restored_settings = settings.model_copy(update={"mongodb_db": f"{settings.mongodb_db}r"})
    counts = await import_seed_tree([folder], None, restored_settings)
    assert counts == {"agents": 1, "conversations": 1, "messages": 7}
    restored = tmp_path / "restored"
    await export_to(str(restored), agent, restored_settings)
    for name in ("conversations", "messages"):
        assert (restored / f"{name}.jsonl").read_bytes() == (original / f"{name}.jsonl").read_bytes(), name
    async with MongoStore(restored_settings.mongodb_url, restored_settings.mongodb_db) as mongo:
        await mongo.drop_database()
