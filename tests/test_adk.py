"""Google's ADK on agentstore: `AgentstoreSessionService` answers as ADK's own
`InMemorySessionService` does over generated operation sequences (sessions created with
state of every scope, events appended with state deltas, sessions got with and without
their config, listed, deleted, user state read), and a fresh client reads them back. Real
logs service (FerretDB) over NATS."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import InMemorySessionService
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.session import Session
from google.genai import types

from agentstore import AgentClient
from agentstore.adk import AgentstoreSessionService
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import new_agent

USERS = ["u1", "u2"]
SESSIONS = ["s1", "s2", "s3"]
KEYS = ["app:theme", "user:name", "user:tool.args", "count", "topic", "temp:scratch"]


@pytest.fixture
async def client(nats_server: Server, logs_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("adk")) as c:
        yield c


def a_state(rng: random.Random) -> dict[str, Any]:
    return {k: rng.choice([rng.randint(0, 9), f"v{rng.randint(0, 9)}", {"a.b": [1, 2]}])
            for k in rng.sample(KEYS, rng.randint(0, 3))}  # fmt: skip


def seen(s: Session | None) -> Any:
    if s is None:
        return None
    events = [(e.id, e.author, e.timestamp, dict(e.actions.state_delta) if e.actions else None,
               e.content.parts[0].text if e.content and e.content.parts else None) for e in s.events]  # fmt: skip
    return (s.app_name, s.user_id, s.id, dict(s.state), events)


async def both(
    theirs: BaseSessionService, ours: BaseSessionService, name: str, **kwargs: Any
) -> tuple[Any, Any]:
    """The same call on both; an exception is an answer too (compared by type)."""
    out = []
    for service in (theirs, ours):
        try:
            out.append(await getattr(service, name)(**kwargs))
        except (AlreadyExistsError, SessionNotFoundError) as exc:
            out.append(type(exc))
    return out[0], out[1]


async def test_it_answers_as_adks_in_memory_session_service(client: AgentClient) -> None:
    compared = 0
    for seed in range(6):
        rng = random.Random(seed)
        app = f"app{seed}"
        theirs, ours = InMemorySessionService(), AgentstoreSessionService(client)
        clock = time.time()
        for step in range(30):
            user, sid = rng.choice(USERS), rng.choice(SESSIONS)
            op = rng.choice(
                ["create", "append", "append", "append", "get", "get_config", "list", "delete", "user"]
            )
            if op == "create":
                state = a_state(rng)
                a, b = await both(theirs, ours, "create_session", app_name=app, user_id=user, state=state,
                                  session_id=sid)  # fmt: skip
                assert (a if isinstance(a, type) else seen(a)) == (b if isinstance(b, type) else seen(b)), (
                    seed,
                    step,
                )
            elif op == "append":
                clock += rng.uniform(0.001, 2)
                sessions = []
                for service in (theirs, ours):
                    got = await service.get_session(app_name=app, user_id=user, session_id=sid)
                    sessions.append(got or Session(app_name=app, user_id=user, id=sid))
                results = []
                for service, session in zip((theirs, ours), sessions, strict=True):
                    event = Event(
                        id=f"e{seed}-{step}", invocation_id=f"i{step}", author=random.Random(step).choice(["user", "agent"]),
                        timestamp=clock, actions=EventActions(state_delta=a_state(random.Random(step))),
                        content=types.Content(role="user", parts=[types.Part(text=f"turn {step}")]),
                    )  # fmt: skip
                    try:
                        await service.append_event(session, event)
                        results.append(seen(session))
                    except SessionNotFoundError:
                        results.append(SessionNotFoundError)
                assert results[0] == results[1], (seed, step)  # the caller's session object too
            elif op in ("get", "get_config"):
                config = None
                if op == "get_config":
                    config = GetSessionConfig(num_recent_events=rng.choice([None, 0, 1, 3]),
                                              after_timestamp=rng.choice([None, clock - 3, clock + 1]))  # fmt: skip
                a, b = await both(
                    theirs, ours, "get_session", app_name=app, user_id=user, session_id=sid, config=config
                )
                assert seen(a) == seen(b), (seed, step, config)
            elif op == "list":
                who = rng.choice([user, None])
                a, b = await both(theirs, ours, "list_sessions", app_name=app, user_id=who)
                assert [(s.user_id, s.id, s.state) for s in a.sessions] == [
                    (s.user_id, s.id, s.state) for s in b.sessions
                ]
            elif op == "delete":
                await both(theirs, ours, "delete_session", app_name=app, user_id=user, session_id=sid)
            else:
                a, b = await both(theirs, ours, "get_user_state", app_name=app, user_id=user)
                assert a == b
            compared += 1
    assert compared == 180


async def test_a_fresh_client_reads_the_sessions_back(client: AgentClient, nats_server: Server) -> None:
    service = AgentstoreSessionService(client)
    session = await service.create_session(
        app_name="concierge", user_id="ada", state={"user:lang": "en", "k": 1}
    )
    assert len(session.id) == 32  # generated when not given
    event = Event(invocation_id="i1", author="agent", actions=EventActions(state_delta={"app:open": True, "k": 2}),
                  content=types.Content(role="model", parts=[types.Part(text="Booked.")]))  # fmt: skip
    await service.append_event(session, event)
    await service.append_event(session, event)  # a retried append stores it once
    async with await AgentClient.connect(nats_server.url, client.agent) as fresh:
        again = await AgentstoreSessionService(fresh).get_session(app_name="concierge", user_id="ada",
                                                                 session_id=session.id)  # fmt: skip
        assert again is not None
        assert again.state == {"k": 2, "app:open": True, "user:lang": "en"}
        assert [e.content.parts[0].text for e in again.events if e.content and e.content.parts] == ["Booked."]
        assert await AgentstoreSessionService(fresh).get_user_state(app_name="concierge", user_id="ada") == {
            "lang": "en"
        }
    async with await AgentClient.connect(nats_server.url, new_agent("other")) as other:
        assert await AgentstoreSessionService(other).get_session(app_name="concierge", user_id="ada",
                                                                 session_id=session.id) is None  # fmt: skip


async def test_an_adk_runner_runs_two_turns_with_a_tool_and_a_fresh_client_reads_them(
    client: AgentClient, nats_server: Server
) -> None:
    """ADK's own Runner with ADK's own scripted model (`MockModel`, offline): a tool call and
    its answer, then a second turn whose model request holds the first turn."""
    from google.adk.agents import LlmAgent
    from google.adk.cli.agent_test_runner import MockModel
    from google.adk.runners import Runner

    booked: list[int] = []

    def book(party: int) -> dict[str, Any]:
        """Books a table."""
        booked.append(party)
        return {"status": "booked", "party": party}

    model = MockModel.create([
        types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(name="book", args={"party": 2}))]),
        types.Content(role="model", parts=[types.Part(text="Booked a table for two.")]),
        types.Content(role="model", parts=[types.Part(text="You booked a table for two.")]),
    ])  # fmt: skip
    agent = LlmAgent(name="concierge", model=model, instruction="Book tables.", tools=[book],
                     output_key="user:last_answer")  # fmt: skip
    service = AgentstoreSessionService(client)
    runner = Runner(agent=agent, app_name="concierge", session_service=service)
    session = await service.create_session(app_name="concierge", user_id="ada")

    async def turn(text: str) -> str:
        message = types.Content(role="user", parts=[types.Part(text=text)])
        replies = [
            e async for e in runner.run_async(user_id="ada", session_id=session.id, new_message=message)
        ]
        return "".join(p.text or "" for e in replies if e.content for p in e.content.parts or [])

    assert await turn("Book a table for two") == "Booked a table for two." and booked == [2]
    assert await turn("What did I book?") == "You booked a table for two."
    second = [str(c) for c in model.requests[-1].contents]
    assert any("Book a table for two" in c for c in second)
    assert any("function_call" in c and "book" in c for c in second)
    assert any("function_response" in c and "booked" in c for c in second)
    assert "What did I book?" in second[-1]
    async with await AgentClient.connect(nats_server.url, client.agent) as fresh:
        stored = await AgentstoreSessionService(fresh).get_session(app_name="concierge", user_id="ada",
                                                                  session_id=session.id)  # fmt: skip
    assert stored is not None
    texts = [p.text for e in stored.events if e.content for p in e.content.parts or [] if p.text]
    assert texts == ["Book a table for two", "Booked a table for two.", "What did I book?",
                     "You booked a table for two."]  # fmt: skip
    assert stored.state["user:last_answer"] == "You booked a table for two."  # output_key, user scope


async def test_an_append_killed_midway_leaves_nothing_and_its_retry_stores_it_whole(
    settings: Any, nats_server: Server, tmp_path: Any
) -> None:
    """An append (the event, the session's time, the state deltas) is one store batch, which
    the logs service commits in one transaction: killed after it wrote the items and before
    it committed (held on the vectors table, the batch's last write), none of it is stored;
    after the restart the retried append stores all of it."""
    import asyncio

    import asyncpg

    from tests.helpers import ServiceProcess, eventually, poll_until, waiting_on_lock

    proc = ServiceProcess("logs", settings, tmp_path / "logs.log")
    proc.start()
    try:
        async with await AgentClient.connect(nats_server.url, new_agent("adkkill"), timeout=5) as agent:
            service = AgentstoreSessionService(agent)

            async def up() -> bool:
                try:
                    await service.list_sessions(app_name="app", user_id="u")
                except Exception:
                    return False
                return True

            await poll_until(up, timeout=60)
            session = await service.create_session(app_name="app", user_id="u", session_id="s1")
            event = Event(author="user", invocation_id="i1",
                          actions=EventActions(state_delta={"user:lang": "fr", "step": 1}))  # fmt: skip
            conn = await asyncpg.connect(settings.postgres_url)
            try:
                blocker = conn.transaction()
                await blocker.start()
                await conn.execute("LOCK TABLE store_vectors IN EXCLUSIVE MODE")
                append = asyncio.create_task(service.append_event(session, event))

                await eventually(lambda: waiting_on_lock(settings.postgres_url, "store_vectors"),
                                 timeout=30, what="the append to wait before its commit")  # fmt: skip
                proc.kill()
                await blocker.rollback()
                with pytest.raises(Exception):  # noqa: B017 - the reply never comes: any failure
                    await append
                proc.start()
                await poll_until(up, timeout=60)
                fresh = await service.get_session(app_name="app", user_id="u", session_id="s1")
                assert fresh is not None and fresh.events == [] and "step" not in fresh.state
                assert "user:lang" not in fresh.state
                # The caller retries: all of it, once.
                await service.append_event(fresh, event)
                again = await service.get_session(app_name="app", user_id="u", session_id="s1")
                assert again is not None and [e.id for e in again.events] == [event.id]
                assert again.state["step"] == 1 and again.state["user:lang"] == "fr"
            finally:
                await conn.close()
    finally:
        proc.stop()
