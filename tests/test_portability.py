"""`agentstore export` / `import`: JSON Lines round trips (folder, MinIO), seed-001 files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from agentstore.config import Settings
from agentstore.lifecycle.runner import ServiceHost
from agentstore.ops.portable import export_to, import_from, import_seed
from agentstore.stores.mongo import MongoStore
from agentstore_services.logs.portability import COLLECTIONS
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
    from agentstore.ops.portable import import_seed_tree

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
