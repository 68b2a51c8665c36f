"""logs: agents.{agent}.logs → logs service → MongoDB, and query.logs back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.stores.mongo import MongoStore
from tests.conftest import READ_PATHS, settings_for_read_path
from tests.helpers import (
    as_json,
    dead_letters,
    eventually,
    log_body,
    new_agent,
    publish_all,
    request,
)

# Every test here runs on both read paths of the logs service.
settings = pytest.fixture(params=READ_PATHS)(settings_for_read_path)


async def stored(mongo: MongoStore, agent: str) -> int:
    return await mongo.count("logs", {"agent_id": agent})


def invalid_bodies(agent: str) -> list[tuple[bytes, str]]:
    """50 bodies that can never be stored, each with a word its Dead-Reason must contain."""
    kinds: list[tuple[Any, str]] = [
        (b"{not json", "JSON"),
        ({"id": "x", "level": "info", "message": 5}, "message"),
        ({"id": "x", "level": "loud", "message": "m"}, "level"),
        ({"id": "x", "level": "info"}, "message"),
        ({"id": "x", "level": "info", "message": "m", "agent_id": "someone-else"}, "agent"),
        ({"id": "x", "level": "info", "message": "nul \u0000 byte"}, "NUL"),
        ({"id": "x", "level": "info", "message": "m", "fields": {"$where": 1}}, "$"),
        ({"id": "x", "level": "info", "message": "m", "fields": {"a.b": 1}}, "'.'"),
        ({"id": "x", "level": "info", "message": "x" * (64 * 1024 + 1)}, "length"),
        (b'{"id": "x", "level": "info", "message": "m", "fields": {"v": NaN}}', "JSON"),
        ({"id": "bad id with spaces", "level": "info", "message": "m"}, "id"),
        ({"id": "x", "level": "info", "message": "m", "ts": "yesterday"}, "ts"),
        ({"id": "x", "level": "info", "message": "m", "surprise": True}, "surprise"),
    ]
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    kinds.append(({"id": "x", "level": "info", "message": "m", "fields": deep}, "nesting"))
    return [(as_json(kinds[i % len(kinds)][0]), kinds[i % len(kinds)][1]) for i in range(50)]


async def test_invalid_logs_go_to_deadletter_and_neighbours_are_stored(
    logs_service: ServiceHost, nc: Client, mongo: MongoStore
) -> None:
    agent = new_agent()
    invalid = invalid_bodies(agent)
    items = []
    valid_ids = []
    for i in range(1000):
        if i % 20 == 7:
            body, _ = invalid[i // 20]
            items.append((f"agents.{agent}.logs", body, None))
        else:
            valid_ids.append(f"log-{i:06d}")
            items.append(
                (
                    f"agents.{agent}.logs",
                    as_json(log_body(i)),
                    {"Nats-Msg-Id": f"{agent}:log-{i:06d}"},
                )
            )
    await publish_all(nc, items)
    await eventually(lambda: _equals(stored(mongo, agent), 950), what="950 stored logs")
    dead = await eventually(lambda: _at_least(dead_letters(nc), 50), what="50 dead letters")
    assert len(dead) == 50
    docs = await mongo.find("logs", {"agent_id": agent}, limit=2000)
    assert sorted(d["id"] for d in docs) == valid_ids
    # Two workers interleave; the original stream sequence restores publish order.
    dead.sort(key=lambda m: int(m.headers["Dead-Seq"]))
    for msg, (body, word) in zip(dead, invalid, strict=True):
        assert msg.subject == "deadletter.logs"
        assert msg.headers["Dead-Subject"] == f"agents.{agent}.logs"
        assert word.lower() in msg.headers["Dead-Reason"].lower(), msg.headers["Dead-Reason"]
        assert msg.data == body


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, n: int) -> Any:
    items = await value
    return items if len(items) >= n else None


async def test_every_log_published_twice_is_stored_once(
    logs_service: ServiceHost, nc: Client, mongo: MongoStore
) -> None:
    agent = new_agent()
    bodies = [as_json(log_body(i)) for i in range(300)]
    # Twice with the same Nats-Msg-Id (JetStream dedupes) and once more without it,
    # as after the duplicate window: the service dedupes by (agent, id).
    first = [
        (f"agents.{agent}.logs", b, {"Nats-Msg-Id": f"{agent}:log-{i:06d}"}) for i, b in enumerate(bodies)
    ]
    acks = await publish_all(nc, first + first)
    assert sum(1 for a in acks if a.duplicate) == 300
    await publish_all(nc, [(f"agents.{agent}.logs", b, None) for b in bodies])
    code, reply = await request(
        nc, "query.logs", {"agent_ids": [agent], "limit": 1000, "after": _after(acks[-1])}
    )
    # after covers the un-deduplicated batch too only once it is acked; wait for it.
    await eventually(lambda: _consumer_idle(nc), what="consumer to ack everything")
    assert await stored(mongo, agent) == 300
    assert code == 200 and len(reply["items"]) == 300


async def _consumer_idle(nc: Client) -> bool:
    info = await nc.jetstream().consumer_info("LOGS", "logs")
    return info.num_pending == 0 and info.num_ack_pending == 0


def _after(ack: Any) -> dict[str, Any]:
    return {"stream": ack.stream, "seq": ack.seq}


async def test_query_logs_filters_newest_first_and_pages_with_cursors(
    logs_service: ServiceHost, nc: Client
) -> None:
    agent, other = new_agent(), new_agent()
    base = datetime(2026, 1, 25, 10, 0, tzinfo=UTC)
    levels = ["debug", "info", "warning", "error", "critical"]
    items = []
    for i in range(250):
        body = log_body(
            i,
            level=levels[i % 5],
            ts=(base + timedelta(seconds=i)).isoformat(),
            task_id="t-even" if i % 2 == 0 else "t-odd",
            message=f"step {i} {'Needle' if i % 50 == 0 else 'hay'}",
            fields={"i": i},
        )
        items.append((f"agents.{agent}.logs", as_json(body), None))
    items.append((f"agents.{other}.logs", as_json(log_body(0)), None))
    acks = await publish_all(nc, items)
    after = _after(acks[-1])

    code, page = await request(nc, "query.logs", {"agent_ids": [agent], "limit": 10, "after": after})
    assert code == 200
    assert [it["id"] for it in page["items"]] == [f"log-{i:06d}" for i in range(249, 239, -1)]
    first = page["items"][0]
    assert first["ts"] == "2026-01-25T10:04:09.000Z"
    assert first["agent_id"] == agent and first["fields"] == {"i": 249}

    # level is a minimum; task_id, since/until and text filter.
    code, page = await request(nc, "query.logs", {"agent_ids": [agent], "level": "error", "limit": 1000})
    assert {it["level"] for it in page["items"]} == {"error", "critical"} and len(page["items"]) == 100
    code, page = await request(
        nc,
        "query.logs",
        {
            "agent_ids": [agent],
            "task_id": "t-odd",
            "since": (base + timedelta(seconds=100)).isoformat(),
            "until": "2026-01-25T10:02:00+00:00",
            "limit": 1000,
        },
    )
    assert [it["id"] for it in page["items"]] == [f"log-{i:06d}" for i in range(119, 99, -1) if i % 2]
    code, page = await request(nc, "query.logs", {"agent_ids": [agent], "text": "needle"})
    assert [it["id"] for it in page["items"]] == [f"log-{i:06d}" for i in (200, 150, 100, 50, 0)]

    # Cursor pages cover everything once, in order, while inserts continue.
    seen: list[str] = []
    cursor = None
    extra = 0
    while True:
        body: dict[str, Any] = {"agent_ids": [agent], "limit": 37}
        if cursor:
            body["cursor"] = cursor
        code, page = await request(nc, "query.logs", body)
        assert code == 200
        seen += [it["id"] for it in page["items"]]
        newer = log_body(1000 + extra, ts=(base + timedelta(hours=1, seconds=extra)).isoformat())
        await publish_all(nc, [(f"agents.{agent}.logs", as_json(newer), None)])
        extra += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"log-{i:06d}" for i in range(249, -1, -1)]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"level": {"$ne": None}}, "level"),
        ({"$where": "1"}, "$where"),
        ({"agent_ids": "a1"}, "agent_ids"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "!!!not-a-cursor"}, "cursor"),
        ({"since": "2026-01-25T10:00:00"}, "since"),
        ({"after": {"stream": "NOPE", "seq": 1}}, "NOPE"),
    ],
)
async def test_bad_query_gets_400_with_the_error_convention(
    logs_service: ServiceHost, nc: Client, body: dict[str, Any], fragment: str
) -> None:
    msg = await nc.request("query.logs", msgspec.json.encode(body), timeout=5)
    assert msg.headers is not None
    assert msg.headers["Nats-Service-Error-Code"] == "400"
    assert fragment.lower() in msg.headers["Nats-Service-Error"].lower()
    error = msgspec.json.decode(msg.data)["error"]
    assert error["code"] == 400 and fragment.lower() in error["message"].lower()


async def test_agent_scoped_query_sees_only_its_own_logs(logs_service: ServiceHost, nc: Client) -> None:
    me, other = new_agent(), new_agent()
    acks = await publish_all(
        nc,
        [(f"agents.{a}.logs", as_json(log_body(i)), None) for a in (me, other) for i in range(3)],
    )
    code, page = await request(nc, f"agents.{me}.rpc.query.logs", {"after": _after(acks[-1])})
    assert code == 200
    assert {it["agent_id"] for it in page["items"]} == {me} and len(page["items"]) == 3
    code, reply = await request(nc, f"agents.{me}.rpc.query.logs", {"agent_ids": [other]})
    assert code == 403 and reply["error"]["code"] == 403


async def test_read_your_writes_waits_for_the_publish(logs_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    for i in range(20):
        [ack] = await publish_all(nc, [(f"agents.{agent}.logs", as_json(log_body(i)), None)])
        code, page = await request(nc, "query.logs", {"agent_ids": [agent], "after": _after(ack), "limit": 1})
        assert code == 200 and page["items"][0]["id"] == f"log-{i:06d}"


async def test_service_answers_nats_micro_discovery(logs_service: ServiceHost, nc: Client) -> None:
    msg = await nc.request("$SRV.INFO.agentstore-logs", b"", timeout=5)
    info = msgspec.json.decode(msg.data)
    subjects = {e["subject"] for e in info["endpoints"]}
    assert {"query.logs", "agents.*.rpc.query.logs"} <= subjects
    groups = {e["queue_group"] for e in info["endpoints"]}
    assert len(groups) == len(info["endpoints"])


async def test_agents_are_marked_seen_across_a_restart(settings: Any, nc: Client) -> None:
    """query.agents: first_seen stays the first log's ts, last_seen follows the newest one
    past the marking period, for agents new to the collection (inserted together) and for
    agents a restarted service loaded from it."""
    old, new = new_agent(), new_agent()
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def at(agent: str, i: int, seconds: float) -> tuple[str, bytes, None]:
        ts = (t0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        return (f"agents.{agent}.logs", as_json(log_body(i, ts=ts)), None)

    async def listed(agents: list[str], after: Any) -> dict[str, dict[str, Any]]:
        code, page = await request(nc, "query.agents", {"agent_ids": agents, "after": _after(after)})
        assert code == 200, page
        return {it["agent_id"]: it for it in page["items"]}

    async with running(LOGS, settings):
        acks = await publish_all(nc, [at(old, 0, 0), at(old, 1, 10)])
        seen = await listed([old], acks[-1])
        assert seen[old]["first_seen"].startswith("2026-12-01T12:00:00")
        assert seen[old]["last_seen"].startswith("2026-12-01T12:00:10")
    async with running(LOGS, settings):
        # Within the marking period of the stored mark: nothing to rewrite. Past it: marked.
        acks = await publish_all(nc, [at(old, 2, 10.2), at(new, 0, 20)])
        seen = await listed([old, new], acks[-1])
        assert seen[old]["last_seen"].startswith("2026-12-01T12:00:10")
        assert seen[new]["first_seen"].startswith("2026-12-01T12:00:20")
        acks = await publish_all(nc, [at(old, 3, 30), at(new, 1, 40)])
        seen = await listed([old, new], acks[-1])
        assert seen[old]["last_seen"].startswith("2026-12-01T12:00:30")
        assert seen[old]["first_seen"].startswith("2026-12-01T12:00:00")
        assert seen[new]["last_seen"].startswith("2026-12-01T12:00:40")
