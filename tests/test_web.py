"""The web console in a real browser (Debian's chromium driven by Playwright) against
the real services, with a small fleet published through the SDK."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.async_api import Browser, Page, async_playwright

from agentstore import contract
from agentstore.client import AgentClient, EvaluatorClient
from agentstore.schemas.metrics import CustodyTest
from agentstore.schemas.tasks import ClaimRun
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import running
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.metrics.service import SPEC as METRICS
from agentstore_server.ops.demo import tiny_png
from agentstore_server.tasks.service import SPEC as TASKS
from agentstore_server.web.service import SPEC as WEB
from tests.conftest import Stack, make_settings
from tests.helpers import eventually, new_agent

ROOT = Path(__file__).resolve().parent.parent
# `make screenshots` sets this to docs/images to refresh the README's pictures.
SHOTS = os.environ.get("AGENTSTORE_SCREENSHOTS")


@dataclass
class Fleet:
    url: str  # the console
    read_only_url: str  # a second console without the evaluator identity
    login_url: str  # a third, with WEB_LOGIN_TOKEN
    minio: str
    settings: Settings
    agents: list[str]
    held_run: str
    nats_monitor: str  # nats-server's /connz ...


LOGIN_TOKEN = "the-operators-console-token-0123456789"


@pytest.fixture(scope="module")
async def fleet(module_nats: Server, stack_servers: Stack) -> AsyncIterator[Fleet]:
    settings = make_settings(module_nats, stack_servers.mongo, stack_servers)
    write_port, read_port = servers.free_port(), servers.free_port()
    async with AsyncExitStack() as stack:
        for spec in (LOGS, TASKS, ARTIFACTS, METRICS):
            await stack.enter_async_context(running(spec, settings))
        web = settings.model_copy(update={"web_port": write_port, "web_evaluator": "evaluator"})
        await stack.enter_async_context(running(WEB, web))
        read_only = settings.model_copy(update={"web_port": read_port})
        await stack.enter_async_context(running(WEB, read_only))
        # A console with a login (and writes), as an operator runs one.
        login_port = servers.free_port()
        guarded = settings.model_copy(update={"web_port": login_port, "web_evaluator": "evaluator",
                                              "web_login_token": LOGIN_TOKEN})  # fmt: skip
        await stack.enter_async_context(running(WEB, guarded))
        agents = [new_agent("ada"), new_agent("bob")]
        held = await publish_fleet(module_nats.url, agents)
        await module_nats_dead_letter(module_nats.url, agents[1])
        yield Fleet(
            url=f"http://127.0.0.1:{write_port}",
            read_only_url=f"http://127.0.0.1:{read_port}",
            login_url=f"http://127.0.0.1:{login_port}",
            minio=stack_servers.minio.address,
            settings=settings,
            agents=agents,
            held_run=held,
            nats_monitor=module_nats.monitor_url or "",
        )


async def publish_fleet(url: str, agents: list[str]) -> str:
    """Two agents' tasks, progress, logs, a conversation, memories, screenshots and metrics;
    a run held by the first agent and one queued. Returns the held run's id."""
    for n, agent in enumerate(agents):
        async with await AgentClient.connect(url, agent) as a:
            for t in range(3):
                await a.task(f"task-{t}", "running" if t == 0 else "completed", title=f"job {t} of {agent}")
                await a.progress(f"task-{t}", 1, "thinking", percent=40.0 + 30 * t)
            for i in range(60):
                await a.log("info", f"{agent} line {i}", task_id="task-0", fields={"i": i})
            await a.log("error", f"{agent} tool crashed", task_id="task-0")
            await a.conversation("conv-1", user_id="user-7", context={"topic": "graphs"})
            await a.message("conv-1", "user", "plot the losses please")
            await a.message("conv-1", "assistant", f"here is the plot, from {agent}")
            await a.memory("observation", f"{agent} prefers small batches", key="habit", tags=["demo"])
            await a.screenshot(tiny_png(n + 1), "screen-1.png", task_id="task-0")
            for i in range(20):
                await a.metric("reward", i / 10, task_id="task-0")
            await a.flush()
    async with await EvaluatorClient.connect(url) as evaluator:
        await evaluator.custody_test(CustodyTest(agent_id=agents[0], passed=True, score=90, duration=1.0))
        held = (await evaluator.submit_run({"study": "console", "n": 1}, priority=5)).run_id
        await evaluator.submit_run({"study": "console", "n": 2})
    async with await AgentClient.connect(url, agents[0]) as a:
        claimed = await a.call(contract.CLAIM, ClaimRun(lease_seconds=600))
        assert claimed.run is not None and claimed.run.run_id == held
    # Every log stored before a page is read: the live tail would otherwise (rightly) add
    # the ones stored after a page was rendered.
    async with await EvaluatorClient.connect(url) as evaluator:
        for agent in agents:

            async def stored(agent: str = agent) -> bool:
                return len((await evaluator.query("logs", agent_ids=[agent], limit=100)).items) == 61

            await eventually(stored, timeout=30, what=f"{agent}'s 61 logs stored")
    return held


async def module_nats_dead_letter(url: str, agent: str) -> None:
    """A log that breaks the contract: the logs service dead-letters it."""
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(f"agents.{agent}.logs", b'{"id": "poison-1", "level": "loud"}')
    finally:
        await nc.drain()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        await b.close()


@pytest.fixture
async def page(browser: Browser, fleet: Fleet) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    pg = await context.new_page()
    hosts: set[str] = set()
    pg.on("request", lambda r: hosts.add(urlparse(r.url).netloc))
    yield pg
    await context.close()
    # Offline: every asset comes from the console itself, images from the S3 server.
    consoles = {urlparse(u).netloc for u in (fleet.url, fleet.read_only_url, fleet.login_url)}
    assert hosts <= consoles | {fleet.minio}, hosts


async def shot(page: Page, name: str, tmp: Path) -> None:
    target = Path(SHOTS) if SHOTS else tmp
    target.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(target / f"console-{name}.png"))


async def texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in await page.locator(selector).all_inner_texts()]


async def test_fleet_page_shows_each_agent_with_errors_and_tasks(
    page: Page, fleet: Fleet, tmp_path: Path
) -> None:
    await page.goto(fleet.url + "/")
    rows = await texts(page, "#agents tbody tr")
    for agent in fleet.agents:
        cells = next(r for r in rows if r.startswith(agent)).split("\t")
        assert " ".join(cells[3].split()) == "running1 completed2", cells
    # One error each in the last hour.
    errors = await texts(page, "#agents tbody tr td:nth-child(3)")
    assert errors == ["1", "1"]
    assert "1 waiting" in await page.inner_text("#dead-count")
    await shot(page, "fleet", tmp_path)


async def test_agent_page_shows_tasks_with_progress_and_the_profile(
    page: Page, fleet: Fleet, tmp_path: Path
) -> None:
    agent = fleet.agents[0]
    await page.goto(f"{fleet.url}/agents/{agent}")
    bars = page.locator("#tasks [role=progressbar]")
    assert sorted([await bars.nth(i).get_attribute("aria-valuenow") for i in range(await bars.count())]) == [
        "100",
        "40",
        "70",
    ]
    assert "tests given" in await page.inner_text("#profile")
    await shot(page, "agent", tmp_path)
    await page.click(f"text=job 0 of {agent}")
    assert "thinking" in await page.inner_text("main")


async def test_logs_page_filters_pages_and_tails_live(page: Page, fleet: Fleet) -> None:
    agent = fleet.agents[0]
    await page.goto(f"{fleet.url}/agents/{agent}/logs")
    first = await texts(page, "#logs tbody tr")
    assert len(first) == 50 and f"{agent} tool crashed" in first[0]
    await page.click("a[rel=next]")
    assert "cursor=" in page.url
    second = await texts(page, "#logs tbody tr")
    assert len(second) == 11 and not set(first) & set(second)
    await page.goto(f"{fleet.url}/agents/{agent}/logs?level=error")
    assert [r.split("\t")[2].strip() for r in await texts(page, "#logs tbody tr")] == [
        f"{agent} tool crashed"
    ]
    # The live tail (issue 37): pushed, not polled. A log published after the page opened
    # appears without a reload, within 1 s of its PubAck.
    notices = f"stored.{agent}.logs"
    await page.goto(f"{fleet.url}/agents/{agent}/logs")
    await eventually(lambda: tail_subscriptions(fleet, notices), timeout=10, what="the tail's subscription")
    assert (await tail_subscriptions(fleet, notices)) == 1  # one per open tail
    async with await AgentClient.connect(fleet.settings.nats_url, agent) as a:
        await a.log("info", "the first line the tail is sent")
        await a.flush()
        await page.locator("#logs tbody tr", has_text="the first line the tail is sent").wait_for(
            timeout=15_000
        )
        for n in range(3):
            await a.log("warning", f"published while you watched {n}")
            await a.flush()  # its PubAck
            await page.locator("#logs tbody tr", has_text=f"published while you watched {n}").wait_for(
                timeout=1_000
            )
    assert await page.inner_text("#tail-state") != "paused"
    # Closed with the page: leaving it ends the stream and its NATS subscription.
    await page.goto(f"{fleet.url}/agents/{agent}")

    async def closed() -> bool:
        return await tail_subscriptions(fleet, notices) == 0

    await eventually(closed, timeout=10, what="the tail's subscription gone with its page")


async def tail_subscriptions(fleet: Fleet, subject: str) -> int:
    """Subscriptions to `subject` on the NATS server (its /connz), i.e. open live tails."""

    def read() -> int:
        with urllib.request.urlopen(f"{fleet.nats_monitor}/connz?subs=1&limit=1024", timeout=5) as reply:
            conns = json.loads(reply.read())["connections"] or []
        return sum(c.get("subscriptions_list", []).count(subject) for c in conns)

    return await asyncio.to_thread(read)


async def test_conversations_and_memories(page: Page, fleet: Fleet) -> None:
    agent = fleet.agents[1]
    await page.goto(f"{fleet.url}/agents/{agent}/conversations")
    assert "user-7" in await page.inner_text("#conversations")
    await page.click("text=conv-1")
    body = await page.inner_text("main")
    assert "plot the losses please" in body and f"here is the plot, from {agent}" in body
    await page.goto(f"{fleet.url}/agents/{agent}/memories")
    assert f"{agent} prefers small batches" in await page.inner_text("#memories")


async def test_screenshot_loads_from_its_presigned_url(page: Page, fleet: Fleet) -> None:
    await page.goto(f"{fleet.url}/agents/{fleet.agents[0]}/files")
    img = page.locator("#gallery img").first
    src = await img.get_attribute("src")
    assert src and urlparse(src).netloc == fleet.minio and "X-Amz-Signature" in src
    await eventually(
        lambda: img.evaluate("i => i.complete && i.naturalWidth === 8"), timeout=10, what="the image"
    )


async def test_metrics_page_charts_each_series(page: Page, fleet: Fleet) -> None:
    await page.goto(f"{fleet.url}/agents/{fleet.agents[0]}/metrics")
    points = await page.get_attribute("#metric-reward svg polyline", "points")
    assert points is not None and len(points.split()) == 20
    assert "max 1.9" in await page.inner_text("#metric-reward")


async def test_runs_page_lease_holders_and_audit_trail(page: Page, fleet: Fleet) -> None:
    await page.goto(fleet.url + "/runs")
    assert "running" in await page.inner_text("#run-counts")
    running_rows = await texts(page, "#runs-running tbody tr")
    assert any(fleet.held_run in r and fleet.agents[0] in r for r in running_rows), running_rows
    assert len(await texts(page, "#runs-queued tbody tr")) == 1
    await page.click(f"text={fleet.held_run}")
    events = await page.inner_text("#events")
    assert "queued" in events and "claimed" in events and fleet.agents[0] in events, events


async def test_writes_need_the_evaluator_identity(page: Page, fleet: Fleet) -> None:
    # The read-only console says what a write needs, and refuses one posted anyway.
    await page.goto(f"{fleet.read_only_url}/runs/{fleet.held_run}")
    assert await page.locator("button[disabled]", has_text="cancel run").count() == 1
    assert "needs the evaluator identity" in await page.inner_text("main")
    refused = await page.request.post(
        f"{fleet.read_only_url}/runs/{fleet.held_run}/cancel", form={"token": "x"}
    )
    assert refused.status == 403 and "needs the evaluator identity" in await refused.text()
    # The console with the evaluator identity cancels (a forged form is refused first).
    for token in ("x", "", "ü" * 64):  # (any length, any characters: compared in constant time)
        forged = await page.request.post(f"{fleet.url}/runs/{fleet.held_run}/cancel", form={"token": token})
        assert forged.status == 403 and "stale or from another site" in await forged.text()
    await page.goto(f"{fleet.url}/runs/{fleet.held_run}")
    await page.click("button:has-text('cancel run')")
    await page.wait_for_url(f"**/runs/{fleet.held_run}")
    assert "cancelled" in await page.inner_text("main")


async def test_dead_letters_show_reason_and_body_and_redrive(page: Page, fleet: Fleet) -> None:
    await page.goto(fleet.url + "/deadletters")
    rows = await texts(page, "#deadletters tbody tr")
    assert len(rows) == 1 and "logs" in rows[0] and "level" in rows[0], rows
    await page.click("#deadletters a")
    assert "poison-1" in await page.inner_text("#body")
    seq = page.url.rsplit("/", 1)[-1]
    await page.click("button:has-text('redrive')")
    await page.wait_for_url("**/deadletters")

    async def moved() -> Any:
        # Redriven: the letter left DEADLETTER; the body (still invalid) came back as a new one.
        await page.goto(fleet.url + "/deadletters")
        found = await texts(page, "#deadletters tbody tr")
        return len(found) == 1 and not found[0].startswith(seq + "\t") and found

    await eventually(moved, timeout=15, what="the redriven letter to be dead-lettered again")


async def test_bad_addresses_get_clear_errors(page: Page, fleet: Fleet) -> None:
    reply = await page.goto(f"{fleet.url}/agents/{fleet.agents[0]}/logs?level=loud")
    assert (
        reply is not None and reply.status == 400 and "level must be one of" in await page.inner_text("main")
    )
    reply = await page.goto(f"{fleet.url}/runs/no-such-run")
    assert reply is not None and reply.status == 404
    reply = await page.goto(f"{fleet.url}/deadletters/999999")
    assert reply is not None and reply.status == 404
    # Every response, errors too, refuses to be framed by another site and to be sniffed.
    for response in (reply, await page.goto(fleet.url + "/")):
        assert response is not None
        headers = await response.all_headers()
        assert headers["content-security-policy"] == "frame-ancestors 'none'", headers
        assert (headers["x-frame-options"], headers["x-content-type-options"]) == ("DENY", "nosniff")


def _graph_with_a_subgraph(saver: Any) -> Any:
    """A graph whose one node is a compiled graph: its checkpoints go under its own namespace."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        x: int

    inner = StateGraph(State)
    inner.add_node("add_one", lambda s: {"x": s["x"] + 1})
    inner.add_edge(START, "add_one")
    inner.add_edge("add_one", END)
    outer = StateGraph(State)
    outer.add_node("inner", inner.compile())
    outer.add_edge(START, "inner")
    outer.add_edge("inner", END)
    return outer.compile(checkpointer=saver)


ODD_THREAD = "tickets/42?x=1#part %2F"  # session ids allow none of these


async def test_threads_show_each_checkpoint_and_sessions_their_items(
    page: Page, fleet: Fleet, tmp_path: Path
) -> None:
    from langgraph.types import Command

    from agentstore.langgraph import AgentstoreSaver
    from agentstore.openai_agents import AgentstoreSession
    from tests import langgraph_graph as lg

    agent = fleet.agents[0]
    async with await AgentClient.connect(fleet.settings.nats_url, agent) as client:
        graph = lg.build().compile(checkpointer=AgentstoreSaver(client))
        config: Any = {"configurable": {"thread_id": "ticket-42"}}
        await graph.ainvoke({"steps": [], "doc": "order notes", "count": 0}, config)
        await graph.ainvoke(Command(resume="yes"), config)
        await AgentstoreSession("user-42", client).add_items([
            {"type": "message", "role": "user", "content": "Where is my order A-17?"},
            {"type": "message", "role": "assistant", "content": "It ships tomorrow."},
        ])  # fmt: skip
        # A thread id with URL-special characters routes to its own page too.
        odd: Any = {"configurable": {"thread_id": ODD_THREAD}}
        await graph.ainvoke({"steps": [], "doc": "odd notes", "count": 0}, odd)
        await _graph_with_a_subgraph(AgentstoreSaver(client)).ainvoke(
            {"x": 1}, {"configurable": {"thread_id": "nested"}}
        )
    # A subgraph's checkpoints (their own namespace) are linked from the thread's page.
    await page.goto(f"{fleet.url}/agents/{agent}/threads/nested")
    assert (await page.inner_text("#namespaces")).startswith("namespaces: (root) · inner:")
    await page.click("#namespaces >> text=inner:")
    assert "namespace inner:" in await page.inner_text("main")
    assert await page.locator("#checkpoints tbody tr").count() >= 2  # the subgraph's own steps
    await shot(page, "thread-namespace", tmp_path)
    await page.goto(f"{fleet.url}/agents/{agent}/threads")
    await page.click(f"#threads >> text={ODD_THREAD}")
    shown = await page.inner_text("main")
    assert f"thread {ODD_THREAD}" in shown and "odd notes" in shown, shown[:300]
    await page.goto(f"{fleet.url}/agents/{agent}/threads")
    assert "ticket-42" in await page.inner_text("#threads")
    await page.click("#threads >> text=ticket-42")
    rows = await texts(page, "#checkpoints tbody tr")
    # input, plan's step, review's step (interrupted there, resumed), act's step, in order
    assert [r.split()[0] for r in rows] == ["-1", "0", "1", "2", "3"], rows
    assert "input" in rows[0] and "loop" in rows[-1]
    assert "act:yes" in rows[-1] and "count" in rows[-1]  # what changed, with the new values
    assert any("__interrupt__" in r and "approve?" in r for r in rows)  # the pending interrupt write
    # The whole state at the last step, channels unchanged there included (approved, from review).
    last = page.locator("#checkpoints tbody tr").last
    assert "approved" not in (await last.inner_text()).split("state at this step")[0]
    await last.locator("summary").click()
    state = (await last.inner_text()).split("state at this step")[1]
    assert '"yes"' in state and "approved" in state and "order notes" in state
    await shot(page, "thread", tmp_path)
    await page.goto(f"{fleet.url}/agents/{agent}/sessions")
    assert "user-42" in await page.inner_text("#sessions")
    row = await page.inner_text("#sessions tbody tr >> nth=0")
    assert "ago" in row or "just now" in row, row  # the session's last activity
    await page.click("#sessions >> text=user-42")
    body = await page.inner_text("main")
    assert body.index("Where is my order A-17?") < body.index("It ships tomorrow.")


async def test_traces_list_and_a_trace_page_show_the_span_tree_waterfall_and_links(
    page: Page, fleet: Fleet, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from agentstore.schemas.traces import SpanIn, span_msg_id

    agent = fleet.agents[1]
    async with await AgentClient.connect(fleet.settings.nats_url, agent) as client:
        async with client.span("answer ticket 42", thread_id="ticket-42"):
            async with client.span("chat gpt-4o-mini", kind="client") as call:
                call.usage("gpt-4o-mini", input_tokens=1200, output_tokens=340)
                call.set("gen_ai.prompt", "x" * 50_000)  # a huge attribute: collapsed and cut
            async with client.span("execute_tool search"):
                await client.log("warning", "search found nothing for A-17")
            try:
                async with client.span("parse answer"):
                    raise ValueError("no order number in the answer")
            except ValueError:
                pass
        # Another trace whose spans name a parent never sent, and each other.
        t0 = datetime.now(UTC) - timedelta(minutes=5)
        odd = "ab" * 16
        for span_id, parent, name in (("1" * 16, "9" * 16, "orphan step"), ("2" * 16, "3" * 16, "loop a"),
                                      ("3" * 16, "2" * 16, "loop b")):  # fmt: skip
            body = SpanIn(trace_id=odd, span_id=span_id, parent_span_id=parent, name=name, start=t0,
                          end=t0 + timedelta(milliseconds=40))  # fmt: skip
            await client.publish("spans", body, event_id=span_msg_id(odd, span_id))
        await client.flush()
    async with await EvaluatorClient.connect(fleet.settings.nats_url) as evaluator:

        async def both() -> bool:
            page_ = await evaluator.query("traces", agent_ids=[agent])
            return sum(t.spans for t in page_.items) == 7

        await eventually(both, timeout=15, what="both traces stored")
    await page.goto(f"{fleet.url}/agents/{agent}/traces")
    listed = await texts(page, "#traces tbody tr")
    assert len(listed) == 2 and "answer ticket 42" in listed[0] and "gpt-4o-mini" in listed[0], listed
    assert "1,200 / 340" in listed[0]
    await page.check("input[name=errors]")
    await page.click("form.filters button")
    assert [r.split("\t")[0] for r in await texts(page, "#traces tbody tr")] == ["answer ticket 42"]
    await page.goto(f"{fleet.url}/traces")
    assert agent in await page.inner_text("#traces")
    await page.goto(f"{fleet.url}/agents/{agent}/traces")
    await page.click("#traces >> text=answer ticket 42")
    rows = page.locator("#spans tbody tr")
    names = [n.strip() for n in await page.locator("#spans tbody tr summary b").all_inner_texts()]
    assert names == ["answer ticket 42", "chat gpt-4o-mini", "execute_tool search", "parse answer"]
    pad = [await rows.nth(i).locator("td").first.evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)")
           for i in range(4)]  # fmt: skip
    assert pad[0] < pad[1] == pad[2] == pad[3], pad  # children indented under the root
    widths = [await rows.nth(i).locator(".span-bar").evaluate("e => e.getBoundingClientRect().width")
              for i in range(4)]  # fmt: skip
    lane = await rows.nth(0).locator(".lane").evaluate("e => e.getBoundingClientRect().width")
    assert widths[0] == pytest.approx(lane, rel=0.02) and all(0 < w < widths[0] for w in widths[1:]), widths
    assert "no order number in the answer" in await rows.nth(3).inner_text()
    assert "gpt-4o-mini · 1,200 / 340" in await rows.nth(1).inner_text()
    await rows.nth(1).locator("summary").first.click()
    await rows.nth(1).locator("summary >> text=attributes").click()
    prompt = await rows.nth(1).locator("pre").inner_text()
    assert "more characters" in prompt and len(prompt) < 25_000
    assert f"/agents/{agent}/threads/ticket-42" in await rows.nth(0).locator(
        "a >> text=thread"
    ).get_attribute("href")
    await shot(page, "trace", tmp_path)
    await rows.nth(2).locator("summary").first.click()
    await rows.nth(2).locator("a >> text=logs in its time").click()
    assert [r.split("\t")[2] for r in await texts(page, "#logs tbody tr")] == [
        "search found nothing for A-17"
    ]
    await page.goto(f"{fleet.url}/traces/{odd}?agent={agent}")
    text = await page.inner_text("#spans")
    assert "orphan step" in text and "its parent is not on this page" in text
    # A cycle is broken at its earliest span, shown at the top with the reason; the other under it.
    assert text.count("its parents form a cycle") == 1 and text.index("loop a") < text.index("loop b")


async def test_a_console_with_a_login_shows_nothing_before_it_and_tokens_are_per_browser(
    page: Page, fleet: Fleet, tmp_path: Path
) -> None:
    """Issue 40: WEB_LOGIN_TOKEN gates every page; a session cookie is signed (a forged one is
    a stranger's); each browser's form token is its own; another site's Host is refused."""
    import aiohttp

    agent = fleet.agents[0]
    await page.goto(f"{fleet.login_url}/agents/{agent}/logs")
    assert "/login?next=" in page.url and "tool crashed" not in await page.content()
    await page.fill("input[name=token]", "a guess")
    await page.click("#login button")
    assert "that is not the console's token" in await page.inner_text("main")
    await page.fill("input[name=token]", LOGIN_TOKEN)
    await page.click("#login button")
    await page.wait_for_url(f"**/agents/{agent}/logs")  # back where it was going
    assert f"{agent} tool crashed" in await page.inner_text("#logs")
    await shot(page, "logged-in", tmp_path)

    async def logged_in(http: aiohttp.ClientSession) -> str:
        """A browser's session: log in, and read its form token off a run's page."""
        async with http.post(f"{fleet.login_url}/login", data={"token": LOGIN_TOKEN, "next": "/runs"}) as r:
            assert r.status == 200 and str(r.url).endswith("/runs")
        async with http.get(f"{fleet.login_url}/runs/{fleet.held_run}") as r:
            html = await r.text()
        return html.split('name="token" value="', 1)[1].split('"', 1)[0]

    jar_a, jar_b = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar_a) as a, aiohttp.ClientSession(cookie_jar=jar_b) as b:
        token_a, token_b = await logged_in(a), await logged_in(b)
        assert token_a != token_b  # per browser, never one per process
        async with b.post(f"{fleet.login_url}/logout", data={"token": token_a}, allow_redirects=False) as r:
            assert r.status == 403  # A's token is no good in B's session
        async with b.post(f"{fleet.login_url}/logout", data={"token": token_b}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        # A forged cookie (its MAC changed) is nobody's session: back to the login.
        cookie = next(c for c in jar_a if c.key == "agentstore_session")
        forged = cookie.value[:-1] + ("0" if cookie.value[-1] != "0" else "1")
        async with aiohttp.ClientSession() as c:
            async with c.get(f"{fleet.login_url}/", headers={"Cookie": f"agentstore_session={forged}"},
                             allow_redirects=False) as r:  # fmt: skip
                assert r.status == 303 and r.headers["Location"].startswith("/login")
            async with c.post(
                f"{fleet.login_url}/runs/{fleet.held_run}/cancel", data={"token": token_a}
            ) as r:
                assert r.status == 401  # a write without a session
            # DNS rebinding: the console answers its own names only (probes excepted).
            async with c.get(f"{fleet.url}/", headers={"Host": "evil.example"}) as r:
                assert r.status == 400 and "WEB_ALLOWED_HOSTS" in await r.text()
            async with c.get(f"{fleet.url}/healthz", headers={"Host": "10.0.0.7:8080"}) as r:
                assert r.status == 200
        assert "HttpOnly" in cookie.output() or cookie["httponly"], cookie.output()
        assert cookie["samesite"] == "Strict"
