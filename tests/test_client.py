"""AgentClient and EvaluatorClient against the real stack."""

from __future__ import annotations

import os
from typing import Any

import pytest
from nats.aio.client import Client

from agentstore import AgentClient, EvaluatorClient, contract
from agentstore.contract import STREAMS
from agentstore.errors import BadRequest, Forbidden, LeaseLost, NotFound
from agentstore.schemas.common import Page
from agentstore.schemas.logs import LogItem
from agentstore.schemas.tasks import MovePhase, RunDetail, RunQuery, Task
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import new_agent


async def test_publish_window_bounds_a_100000_call_burst(nats_server: Server, nc: Client) -> None:
    await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
    agent = new_agent()
    client = await AgentClient.connect(nats_server.url, agent, window=500)
    most = 0
    async with client:
        for i in range(100_000):
            await client.log("info", f"step {i}")
            most = max(most, client.held)
        positions = await client.flush()
    assert most <= 500  # memory stays bounded by the window, however hot the loop
    assert positions["LOGS"].seq >= 100_000
    info = await nc.jetstream().stream_info("LOGS", subjects_filter=f"agents.{agent}.logs")
    assert info.state.messages == 100_000


async def test_a_timed_out_puback_is_retried_without_a_duplicate(nats_server: Server, nc: Client) -> None:
    js = nc.jetstream()
    await ensure_stream(js, STREAMS["LOGS"])
    agent = new_agent()
    # So short a PubAck timeout that the first tries time out after the server stored the
    # message; the retries carry the same Nats-Msg-Id, so JetStream keeps one copy.
    client = await AgentClient.connect(nats_server.url, agent, timeout=0.0002)
    client.publish_retries = 14
    async with client:
        for i in range(20):
            await client.log("info", "once", id=f"x{i}")
    info = await js.stream_info("LOGS", subjects_filter=f"agents.{agent}.logs")
    assert info.state.messages == 20


async def test_claim_context_manager_releases_a_failed_run_with_its_exception(
    tasks_service: ServiceHost, nats_server: Server
) -> None:
    agent = new_agent("w")
    async with await EvaluatorClient.connect(nats_server.url) as evaluator, \
            await AgentClient.connect(nats_server.url, agent) as worker:  # fmt: skip
        await evaluator.submit_run({"model": "m"}, run_id="boom-run")
        with pytest.raises(ValueError, match="boom"):
            async with worker.claim(lease_seconds=3) as lease:
                assert lease is not None and lease.run.run_id == "boom-run"
                assert lease.run.spec == {"model": "m"}
                raise ValueError("boom")
        failed = await evaluator.call(contract.QUERY_RUN, RunQuery(run_id="boom-run"))
        assert isinstance(failed, RunDetail) and failed.status == "failed"
        assert failed.error == {"type": "ValueError", "message": "boom"}
        await evaluator.submit_run({"model": "n"}, run_id="ok-run")
        async with worker.claim(lease_seconds=0.9) as lease:
            assert lease is not None
            lease.summary = {"score": 1}
            # Outlive the lease twice over: the background renewal keeps it.
            for _ in range(3):
                await worker.call(contract.PHASE, MovePhase(run_id=lease.run.run_id, phase="execute"))
                await _wait(0.6)
            assert not lease.lost.is_set()
        done = await evaluator.query("run", run_id="ok-run")
        assert (done.status, done.summary) == ("succeeded", {"score": 1})
        async with worker.claim() as nothing:
            assert nothing is None


async def test_a_cancelled_run_stops_the_work_inside_claim_with_the_reason(
    tasks_service: ServiceHost, nats_server: Server
) -> None:
    import asyncio

    agent = new_agent("w")
    async with await EvaluatorClient.connect(nats_server.url) as evaluator, \
            await AgentClient.connect(nats_server.url, agent) as worker:  # fmt: skip
        await evaluator.submit_run({"model": "long"}, run_id="long-run")
        steps: list[int] = []
        with pytest.raises(LeaseLost, match="long-run") as lost:
            async with worker.claim(lease_seconds=0.9) as lease:
                assert lease is not None
                await evaluator.cancel_run("long-run")
                for step in range(100):  # work that would take 10 s; the cancel stops it
                    steps.append(step)
                    await asyncio.sleep(0.1)  # one step of the "work"
        assert lease.lost.is_set() and lease.lost_reason
        assert len(steps) < 100 and "it is cancelled" in str(lost.value)
        # The run stays cancelled: the worker did not release it as failed or succeeded.
        assert (await evaluator.query("run", run_id="long-run")).status == "cancelled"
        # The worker's task itself is not cancelled: it goes on to the next run.
        await evaluator.submit_run({"model": "next"}, run_id="next-run")
        async with worker.claim() as lease:
            assert lease is not None and lease.run.run_id == "next-run"


async def _wait(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)  # lets the lease run out if nothing renewed it


async def test_agent_reads_its_writes_and_evaluator_pages_with_typed_errors(
    logs_service: ServiceHost, artifacts_service: ServiceHost, nats_server: Server
) -> None:
    agent, other = new_agent(), new_agent()
    async with await AgentClient.connect(nats_server.url, agent) as client:
        for i in range(250):
            await client.log("warning" if i % 2 else "info", f"m{i}", task_id="t")
        small = await client.screenshot(b"png-bytes", "small.png", task_id="t")
        big = await client.screenshot(os.urandom(700 * 1024), "big.png", task_id="t")
        page = await client.query("logs", limit=5)  # reads its own writes by default
        assert isinstance(page, Page) and len(page.items) == 5
        assert all(isinstance(item, LogItem) and item.agent_id == agent for item in page.items)
        with pytest.raises(Forbidden):
            await client.query("logs", agent_ids=[other])
        with pytest.raises(BadRequest):  # checked against the request Struct before sending
            await client.query("logs", limit="many")
        files = await client.query("files")
        assert {f.file_id for f in files.items} == {small, big}
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:
        items: list[Any] = [
            it async for it in evaluator.pages("logs", agent_ids=[agent], level="warning", limit=40)
        ]
        assert len(items) == 125 and len({it.id for it in items}) == 125
        with pytest.raises(NotFound) as err:
            await evaluator.query("conversation", agent_id=agent, conversation_id="none")
        assert err.value.code == 404


async def test_every_update_of_an_upsert_lands_inside_the_duplicate_window(
    tasks_service: ServiceHost, nats_server: Server
) -> None:
    agent = new_agent()
    async with await AgentClient.connect(nats_server.url, agent) as client:
        for status in ("pending", "running", "completed"):
            await client.task("t1", status, kind="experiment")
        task = await client.query("task", agent_id=agent, task_id="t1")
    assert isinstance(task, Task)
    assert (task.status, task.kind) == ("completed", "experiment")


def test_a_reply_that_breaks_the_contract_raises_its_own_error() -> None:
    from agentstore import contract
    from agentstore.client import decode_reply
    from agentstore.errors import AgentstoreError, ContractViolation, RequestError

    with pytest.raises(ContractViolation, match=r"query\.store.*upgrade the older one") as caught:
        decode_reply(b'{"items": [{"key": 1}]}', contract.QUERY_STORE)
    assert isinstance(caught.value, AgentstoreError) and not isinstance(caught.value, RequestError)
