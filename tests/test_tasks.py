"""tasks service: tasks, progress, evaluations, restore (PostgreSQL + NATS)."""

from __future__ import annotations

from typing import Any

import pytest
from nats.aio.client import Client

from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import after, as_json, dead_letters, eventually, new_agent, publish_all, request


async def send(nc: Client, agent: str, kind: str, *bodies: Any) -> dict[str, Any]:
    acks = await publish_all(nc, [(f"agents.{agent}.{kind}", as_json(b), None) for b in bodies])
    return after(acks[-1])


async def ok(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    code, reply = await request(nc, subject, body)
    assert code == 200, reply
    return reply


def at(second: int) -> str:
    return f"2026-01-25T10:00:{second:02d}Z"


async def test_task_status_newest_ts_wins_even_out_of_order(tasks_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    await send(nc, agent, "tasks", {"id": "t1", "status": "running", "ts": at(2), "kind": "experiment",
                                    "title": "fit", "meta": {"lr": 0.1}})  # fmt: skip
    # An older update arrives late (own batch and mixed in a batch): it never wins.
    await send(nc, agent, "tasks", {"id": "t1", "status": "pending", "ts": at(1)})
    pos = await send(nc, agent, "tasks", {"id": "t1", "status": "pending", "ts": at(0)},
                     {"id": "t2", "status": "pending", "ts": at(0)})  # fmt: skip
    task = await ok(nc, "query.task", {"agent_id": agent, "task_id": "t1", "after": pos})
    assert task["status"] == "running" and task["kind"] == "experiment"
    pos = await send(nc, agent, "tasks", {"id": "t1", "status": "completed", "ts": at(3)})
    task = await ok(nc, "query.task", {"agent_id": agent, "task_id": "t1", "after": pos})
    # Omitted kind, title and meta keep their values.
    assert (task["status"], task["kind"], task["title"], task["meta"]) == (
        "completed", "experiment", "fit", {"lr": 0.1},
    )  # fmt: skip


async def test_progress_evaluations_and_task_queries(tasks_service: ServiceHost, nc: Client) -> None:
    agent, other = new_agent(), new_agent()
    await send(nc, other, "tasks", {"id": "t1", "status": "running"})
    await send(nc, agent, "tasks", {"id": "t1", "status": "running", "kind": "experiment"},
               {"id": "t2", "status": "completed"})  # fmt: skip
    pos = await send(nc, agent, "progress", *(
        {"id": f"p{i}", "task_id": "t1", "step": i, "status": "ok", "percent": i * 25.0,
         "detail": {"i": i}} for i in (2, 0, 1)
    ))  # fmt: skip
    evaluation = {"id": "ev1", "agent_id": agent, "task_id": "t1", "evaluator": "judge",
                  "score": 0.75, "passed": True, "notes": "fine", "details": {"k": 1}}  # fmt: skip
    stored = await ok(nc, "eval.record", evaluation)
    assert stored["score"] == 0.75 and stored["details"] == {"k": 1}
    again = await ok(nc, "eval.record", {**evaluation, "score": 0.1})  # idempotent on id
    assert again == stored
    task = await ok(nc, "query.task", {"agent_id": agent, "task_id": "t1", "after": pos})
    assert [p["step"] for p in task["progress"]] == [0, 1, 2]
    assert [e["id"] for e in task["evaluations"]] == ["ev1"]
    page = await ok(nc, "query.tasks", {"agent_ids": [agent]})
    by_id = {t["id"]: t for t in page["items"]}
    assert set(by_id) == {"t1", "t2"}
    assert by_id["t1"]["latest_progress"]["step"] == 2 and "latest_progress" not in by_id["t2"]
    page = await ok(nc, "query.tasks", {"agent_ids": [agent], "status": "completed"})
    assert [t["id"] for t in page["items"]] == ["t2"]
    page = await ok(nc, "query.tasks", {"agent_ids": [agent], "kind": "task"})
    assert [t["id"] for t in page["items"]] == ["t2"]
    code, reply = await request(nc, "query.task", {"agent_id": agent, "task_id": "nope"})
    assert code == 404
    code, _ = await request(nc, f"agents.{agent}.rpc.query.task", {"agent_id": other, "task_id": "t1"})
    assert code == 403
    page = await ok(nc, f"agents.{agent}.rpc.query.tasks", {})
    assert {t["agent_id"] for t in page["items"]} == {agent}


async def test_task_pages_cover_everything_once(tasks_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    pos = await send(nc, agent, "tasks", *({"id": f"t{i:03d}", "status": "pending"} for i in range(55)))
    await ok(nc, "query.tasks", {"agent_ids": [agent], "after": pos})
    seen: list[str] = []
    body: dict[str, Any] = {"agent_ids": [agent], "limit": 10}
    while True:
        page = await ok(nc, "query.tasks", body)
        seen += [t["id"] for t in page["items"]]
        if page["next_cursor"] is None:
            break
        body["cursor"] = page["next_cursor"]
    assert sorted(seen) == [f"t{i:03d}" for i in range(55)] and len(seen) == 55


INJECTION = "'); DROP TABLE tasks; --"


async def test_bad_task_input_is_deadlettered_and_injection_is_stored_verbatim(
    tasks_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    bad = [
        ("tasks", {"id": "t", "status": "snoozing"}, "status accepts pending, running, paused"),
        ("tasks", {"id": "t", "status": "running", "agent_id": "someone"}, "agent"),
        ("tasks", {"id": "t", "status": "running", "meta": {"$gt": 1}}, "$"),
        (
            "progress",
            {"id": "p", "task_id": "t", "step": 1, "status": "ok", "percent": 150},
            "percent",
        ),
        ("progress", {"id": "p", "task_id": "t", "step": -1, "status": "ok"}, "step"),
        ("progress", {"id": "p", "task_id": "t", "status": "ok"}, "step"),
    ]
    items = [(f"agents.{agent}.{k}", as_json(b), None) for k, b, _ in bad]
    items.append((f"agents.{agent}.tasks", as_json({"id": "inj", "status": "running",
                  "title": INJECTION, "meta": {"q": INJECTION}}), None))  # fmt: skip
    acks = await publish_all(nc, items)
    dead = await eventually(lambda: _n_dead(nc, len(bad)), what="dead letters")
    dead.sort(key=lambda m: int(m.headers["Dead-Seq"]))
    for msg, (_, _, word) in zip(dead, bad, strict=True):
        assert word.lower() in msg.headers["Dead-Reason"].lower(), msg.headers["Dead-Reason"]
    task = await ok(nc, "query.task", {"agent_id": agent, "task_id": "inj", "after": after(acks[-1])})
    assert task["title"] == INJECTION and task["meta"] == {"q": INJECTION}
    page = await ok(nc, "query.tasks", {"agent_ids": [agent]})
    assert [t["id"] for t in page["items"]] == ["inj"]
    code, _ = await request(nc, "query.tasks", {"kind": INJECTION})
    assert code == 200


async def _n_dead(nc: Client, n: int) -> Any:
    items = await dead_letters(nc)
    return items if len(items) >= n else None


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("query.tasks", {"status": {"$ne": "x"}}),
        ("query.tasks", {"limit": 5000}),
        ("query.tasks", {"cursor": "garbage"}),
        ("query.task", {"agent_id": "a"}),
        ("eval.record", {"id": "e", "agent_id": "a", "task_id": "t", "evaluator": "x", "score": "high",
                         "passed": True}),
        ("eval.record", {"id": "e", "agent_id": "a", "task_id": "t", "evaluator": "x", "score": 1,
                         "passed": True, "extra": 1}),
    ],
)  # fmt: skip
async def test_bad_task_requests_get_400(
    tasks_service: ServiceHost, nc: Client, subject: str, body: dict[str, Any]
) -> None:
    code, reply = await request(nc, subject, body)
    assert code == 400 and reply["error"]["code"] == 400


async def test_restore_returns_open_tasks_with_latest_progress_and_held_runs(
    tasks_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    await send(nc, agent, "tasks", {"id": "exp1", "status": "running", "kind": "experiment"},
               {"id": "done", "status": "completed"}, {"id": "todo", "status": "pending"})  # fmt: skip
    pos = await send(nc, agent, "progress", {"id": "p1", "task_id": "exp1", "step": 3, "status": "ok"})
    await ok(nc, "runs.submit", {"spec": {"model": "a"}, "run_id": f"run-{agent}"})
    claimed = await ok(nc, f"agents.{agent}.rpc.claim", {"lease_seconds": 60})
    assert claimed["run"]["run_id"] == f"run-{agent}"
    restore = await ok(nc, f"agents.{agent}.rpc.restore", {"after": pos})
    tasks = {t["id"]: t for t in restore["tasks"]}
    assert set(tasks) == {"exp1", "todo"}
    assert tasks["exp1"]["latest_progress"]["step"] == 3 and tasks["exp1"]["kind"] == "experiment"
    assert [r["run_id"] for r in restore["runs"]] == [f"run-{agent}"]
    assert restore["metrics"] is None  # no metrics service answering in this test
