"""Operator tools: dead letters (list, show, redrive) and tail."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.aio.client import Client

from agentstore.bus import deadletter
from agentstore.tail import tail
from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import as_json, eventually, log_body, new_agent, publish_all, request


async def test_dead_letters_list_show_and_redrive_after_a_fix(logs_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    await publish_all(
        nc, [(f"agents.{agent}.logs", as_json({"id": "x", "level": "loud", "message": "m"}), None)]
    )
    letters = await eventually(lambda: deadletter.list_dead(nc, service="logs"), what="a dead letter")
    [letter] = letters
    assert letter.subject == f"agents.{agent}.logs" and "level" in letter.reason
    shown = await deadletter.show(nc, letter.seq)
    assert shown is not None and json.loads(shown.data)["level"] == "loud"
    # The cause fixed (here: a corrected copy takes the dead letter's place), redrive stores it.
    js = nc.jetstream()
    fixed = await js.publish("deadletter.logs", as_json(log_body(1)),
                             headers={"Dead-Subject": f"agents.{agent}.logs", "Dead-Reason": "store was full",
                                      "Original-Nats-Msg-Id": f"{agent}:log-000001"})  # fmt: skip
    assert await deadletter.redrive(nc, fixed.seq) == f"agents.{agent}.logs"

    async def stored() -> bool:
        code, page = await request(nc, "query.logs", {"agent_ids": [agent]})
        return code == 200 and [it["id"] for it in page["items"]] == ["log-000001"]

    await eventually(stored, what="the redriven log stored")
    assert await deadletter.show(nc, fixed.seq) is None  # removed once redriven
    with pytest.raises(LookupError):
        await deadletter.redrive(nc, fixed.seq)


async def test_tail_follows_new_logs_with_filters(
    logs_service: ServiceHost, nc: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = new_agent()
    stop = asyncio.Event()
    follower = asyncio.create_task(
        tail(nc, agent, level="warning", text=None, last=False, as_json=True, stop=stop)
    )
    await asyncio.sleep(0.3)  # the ordered consumer is created before the publishes below
    await publish_all(nc, [(f"agents.{agent}.logs", as_json(log_body(i, level=lvl)), None)
                           for i, lvl in enumerate(["info", "warning", "error"])])  # fmt: skip

    async def printed() -> list[str]:
        out = capsys.readouterr().out
        printed.lines += [line for line in out.splitlines() if line.strip()]  # type: ignore[attr-defined]
        return printed.lines if len(printed.lines) >= 2 else []  # type: ignore[attr-defined]

    printed.lines = []  # type: ignore[attr-defined]
    lines = await eventually(printed, what="two followed logs")
    stop.set()
    await follower
    assert [json.loads(line)["level"] for line in lines] == ["warning", "error"]
