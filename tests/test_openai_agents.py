"""The OpenAI Agents SDK on agentstore: `AgentstoreSession` is the SDK's `Session`, kept by
the logs service (issue 27). Real servers, the SDK's own offline model (`ScriptedModel`)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled
from agents.memory import Session
from agents.testing import ScriptedModel, assistant_message, function_call

from agentstore import AgentClient, contract
from agentstore.errors import Unavailable
from agentstore.openai_agents import AgentstoreSession
from agentstore.schemas.sessions import AddSessionItems, SessionItemsQuery
from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.logs.service import SPEC as LOGS
from tests.helpers import new_agent

set_tracing_disabled(True)  # offline: no trace export to OpenAI


@pytest.fixture
async def client(nats_server: Server, logs_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("oa")) as c:
        yield c


def message(i: int, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": f"message {i}", "type": "message"}


async def test_it_is_the_sdks_session_protocol(client: AgentClient) -> None:
    assert isinstance(AgentstoreSession("s-1", client), Session)


async def test_the_same_operations_answer_as_the_sdks_own_sqlite_session(client: AgentClient) -> None:
    """Generated sequences of add / get (with and without limit) / pop / clear, run on both."""
    for seed in range(5):
        rng = random.Random(seed)
        ours, theirs = AgentstoreSession(f"parity-{seed}", client), SQLiteSession(f"parity-{seed}")
        n = 0
        for _ in range(25):
            op = rng.choice(["add", "add", "get", "get_limit", "pop", "clear"])
            if op == "add":
                items = [message(n + i, rng.choice(["user", "assistant"])) for i in range(rng.randint(1, 4))]
                n += len(items)
                await ours.add_items(items)
                await theirs.add_items(items)
            elif op == "get":
                assert await ours.get_items() == await theirs.get_items()
            elif op == "get_limit":
                limit = rng.randint(0, 6)
                assert await ours.get_items(limit) == await theirs.get_items(limit), limit
            elif op == "pop":
                assert await ours.pop_item() == await theirs.pop_item()
            else:
                await ours.clear_session()
                await theirs.clear_session()
        assert await ours.get_items() == await theirs.get_items()
        theirs.close()


async def test_a_retried_add_stores_nothing_twice_and_sessions_are_the_agents_own(
    client: AgentClient, nats_server: Server
) -> None:
    add = AddSessionItems(session_id="s-retry", items=[message(1), message(2)], batch_id="b-1")
    first = await client.call(contract.SESSION_ADD, add)
    again = await client.call(contract.SESSION_ADD, add)
    assert (first.added, first.last_seq, again.added, again.last_seq) == (2, 2, 0, 2)
    assert len(await AgentstoreSession("s-retry", client).get_items()) == 2
    async with await AgentClient.connect(nats_server.url, new_agent("other")) as other:
        # The same session id under another agent is another session: nothing of the first.
        mine = await other.call(contract.SESSION_ITEMS, SessionItemsQuery(session_id="s-retry"))
        assert mine.items == []


async def test_the_sessions_list_says_when_each_session_was_last_added_to(
    client: AgentClient, nats_server: Server
) -> None:
    """Issue 37: `query.sessions` carries each session's last activity (its newest item's
    add time), which the console's sessions page shows."""
    from datetime import UTC, datetime

    from agentstore import EvaluatorClient
    from agentstore.schemas.sessions import SessionsQuery

    before = datetime.now(UTC)
    await AgentstoreSession("s-old", client).add_items([message(1)])
    between = datetime.now(UTC)
    await AgentstoreSession("s-new", client).add_items([message(2), message(3)])
    await AgentstoreSession("s-gone", client).add_items([message(4)])
    await AgentstoreSession("s-gone", client).clear_session()
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:
        page = await evaluator.call(contract.QUERY_SESSIONS, SessionsQuery(agent_id=client.agent or ""))
    listed = {s.session_id: s for s in page.items}
    assert sorted(listed) == ["s-new", "s-old"] and listed["s-new"].items == 2
    times = {k: datetime.fromisoformat(v.last_added_at or "") for k, v in listed.items()}
    assert before <= times["s-old"] <= between <= times["s-new"] <= datetime.now(UTC), times


async def test_an_agent_runs_two_turns_with_a_tool_and_a_new_process_reads_the_history(
    client: AgentClient, nats_server: Server
) -> None:
    calls: list[str] = []

    @function_tool
    def order_status(order_id: str) -> str:
        """The status of an order."""
        calls.append(order_id)
        return f"order {order_id} ships tomorrow"

    model = ScriptedModel(
        [
            [function_call("order_status", {"order_id": "A-17"}, call_id="call-1")],
            [assistant_message("Your order A-17 ships tomorrow.", item_id="m-1")],
            [assistant_message("You asked about order A-17.", item_id="m-2")],
        ]
    )
    agent = Agent(name="support", instructions="Help with orders.", model=model, tools=[order_status])
    session = AgentstoreSession("user-42", client)
    first = await Runner.run(agent, "Where is my order A-17?", session=session)
    assert first.final_output == "Your order A-17 ships tomorrow." and calls == ["A-17"]
    second = await Runner.run(agent, "What did I ask about?", session=session)
    assert second.final_output == "You asked about order A-17."
    model.assert_complete()
    # The second turn's model input held the first turn: the question, the tool call and its
    # output, and the answer, then the new question.
    sent = model.last_call.input if model.last_call else []
    texts = [str(item) for item in sent]
    assert any("Where is my order A-17?" in t for t in texts)
    assert any("call-1" in t and "function_call" in t for t in texts)
    assert any("ships tomorrow" in t and "function_call_output" in t for t in texts)
    assert "What did I ask about?" in texts[-1]
    # A fresh client and session object (a new process) read the same history back.
    async with await AgentClient.connect(nats_server.url, client.agent) as fresh:
        history = await AgentstoreSession("user-42", fresh).get_items()
    assert history == await session.get_items()
    assert [i.get("type") for i in history].count("function_call_output") == 1
    assert len(history) == len(sent) + 1  # everything the model saw, and its last answer


async def test_the_adapter_retries_an_add_across_a_service_restart_and_stores_it_once(
    nats_server: Server, settings: Settings
) -> None:
    """Through `AgentstoreSession` itself: an add made while the logs service is down is
    retried until it is back; an add whose reply was lost (stored, then the caller saw
    Unavailable) is retried with the same batch id and stored once."""
    async with await AgentClient.connect(nats_server.url, new_agent("oar"), timeout=2) as client:
        session = AgentstoreSession("s-restart", client)
        async with running(LOGS, settings):
            await session.add_items([message(1)])
        # Down now: the add waits, retrying, until a service answers.
        adding = asyncio.create_task(session.add_items([message(2), message(3)]))
        await asyncio.sleep(0.3)  # the fault: down past the first retry (not a synchronisation)
        assert not adding.done()  # no responders: it is waiting to retry, not failed
        async with running(LOGS, settings):
            await asyncio.wait_for(adding, timeout=30)
            real_call = client.call
            lost = {"once": True}

            async def reply_lost(endpoint: Any, request: Any) -> Any:
                reply = await real_call(endpoint, request)
                if endpoint is contract.SESSION_ADD and lost.pop("once", False):
                    raise Unavailable("the reply was lost (simulated after the service stored it)")
                return reply

            client.call = reply_lost  # type: ignore[method-assign]
            await session.add_items([message(4)])
            client.call = real_call  # type: ignore[method-assign]
            items = await session.get_items()
    assert [i["content"] for i in items] == ["message 1", "message 2", "message 3", "message 4"]
    assert lost == {}  # the lost reply did happen
