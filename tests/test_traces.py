"""Traces (CONTRACT v1.12): spans from the SDK's `span()` and from OpenTelemetry exporters,
stored once, summarised per trace, listed and paged; on the real stack."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstore.client import AgentClient, EvaluatorClient
from agentstore.errors import Forbidden, NotFound
from agentstore.schemas.traces import SpanIn, span_msg_id
from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server, free_port
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.otlp.service import SPEC as OTLP
from tests.helpers import eventually, new_agent

PRICES = {"gpt-4o-mini": (0.15, 0.6), "gpt-5": (1.25, 10.0)}
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def priced_logs(settings: Settings) -> AsyncIterator[ServiceHost]:
    async with running(LOGS, settings.model_copy(update={"model_prices": PRICES})) as host:
        yield host


def ids(name: str) -> tuple[str, str]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return digest[:32], digest[32:48]


def span(
    trace: str, name: str, start_s: float, end_s: float, *, parent: str | None = None, **fields: Any
) -> SpanIn:
    trace_id, _ = ids(trace)
    _, span_id = ids(f"{trace}/{name}")
    parent_id = ids(f"{trace}/{parent}")[1] if parent else None
    return SpanIn(trace_id=trace_id, span_id=span_id, name=name, start=T0 + timedelta(seconds=start_s),
                  end=T0 + timedelta(seconds=end_s), parent_span_id=parent_id, **fields)  # fmt: skip


async def publish(client: AgentClient, *spans: SpanIn) -> None:
    for s in spans:
        await client.publish("spans", s, event_id=span_msg_id(s.trace_id, s.span_id))
    await client.flush()


async def test_nested_sdk_spans_are_one_trace_with_its_tree_usage_cost_and_linked_logs(
    nats_server: Server, priced_logs: ServiceHost
) -> None:
    agent, other = new_agent("tr"), new_agent("tr")
    async with await AgentClient.connect(nats_server.url, agent) as client:
        async with client.span("answer question", session_id="s-1", run_id="r-1") as root:
            async with client.span("call model", kind="client") as call:
                call.usage("gpt-4o-mini-2024-07-18", input_tokens=1000, output_tokens=200)
                call.set("gen_ai.operation.name", "chat")
            async with client.span("execute_tool search") as tool:
                await client.log("info", "searching the web")
                tool.event("retry", attempt=2)
            with pytest.raises(ValueError, match="no results"):
                async with client.span("parse results"):
                    raise ValueError("no results")
        listed = await client.query("traces")
        assert [t.trace_id for t in listed.items] == [root.trace_id]
        summary = listed.items[0]
        assert (summary.name, summary.root_span_id, summary.spans, summary.errors) == (
            "answer question",
            root.span_id,
            4,
            1,
        )
        assert summary.models == ["gpt-4o-mini-2024-07-18"]
        assert (summary.input_tokens, summary.output_tokens) == (1000, 200)
        # Priced by the longest prefix of the operator's table: gpt-4o-mini.
        assert summary.cost_usd == pytest.approx((1000 * 0.15 + 200 * 0.6) / 1e6)
        assert (summary.session_id, summary.run_id) == ("s-1", "r-1")

        trace = await client.query("trace", trace_id=root.trace_id)
        by_name = {s.name: s for s in trace.spans}
        assert trace.spans[0].name == "answer question"
        assert {s.parent_span_id for n, s in by_name.items() if n != "answer question"} == {root.span_id}
        assert by_name["parse results"].status == "error"
        assert by_name["parse results"].status_message == "ValueError: no results"
        assert by_name["call model"].attributes == {"gen_ai": {"operation": {"name": "chat"}}}
        assert by_name["call model"].kind == "client" and by_name["answer question"].status == "ok"
        assert by_name["execute_tool search"].events[0]["attributes"] == {"attempt": 2}
        # Children inherit the root's links; times nest.
        assert all(s.session_id == "s-1" and s.run_id == "r-1" for s in trace.spans)
        assert all(root_start <= s.start and s.end <= trace.trace.end
                   for root_start in [by_name["answer question"].start] for s in trace.spans)  # fmt: skip
        logs = await client.query("logs", trace_id=root.trace_id)
        assert [(i.message, i.span_id) for i in logs.items] == [("searching the web", tool.span_id)]
        # An agent reads only its own traces.
        with pytest.raises(Forbidden):
            await client.query("traces", agent_ids=[other])
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:
        with pytest.raises(NotFound):
            await evaluator.query("trace", trace_id=root.trace_id, agent_id=other)


async def test_the_traces_list_filters_orders_and_pages_each_trace_once(
    nats_server: Server, priced_logs: ServiceHost
) -> None:
    agent = new_agent("tl")
    # 7 traces: durations 1..7 s, starting a minute apart; odd ones fail, trace 3 calls gpt-5.
    spans = []
    for n in range(1, 8):
        start = 60.0 * n
        spans.append(span(f"t{n}", "root", start, start + n, status="error" if n % 2 else "ok"))
        spans.append(span(f"t{n}", "child", start + 0.1, start + 0.5, parent="root",
                          model="gpt-5" if n == 3 else None, input_tokens=10 if n == 3 else None))  # fmt: skip
    async with await AgentClient.connect(nats_server.url, agent) as client:
        await publish(client, *spans)
        # The same spans again (an exporter's retry): nothing counts twice.
        await publish(client, *spans[:4])
    trace_of = {ids(f"t{n}")[0]: n for n in range(1, 8)}
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def all_pages(**fields: Any) -> list[int]:
            seen, cursor = [], None
            while True:
                page = await evaluator.query("traces", agent_ids=[agent], limit=2, cursor=cursor, **fields)
                seen += [trace_of[t.trace_id] for t in page.items]
                assert all(t.spans == 2 for t in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    return seen

        await eventually(
            lambda: _count(evaluator, agent, 7, spans=14), timeout=10, what="7 traces of 2 spans"
        )
        assert await all_pages() == [7, 6, 5, 4, 3, 2, 1]
        assert await all_pages(order="slowest") == [7, 6, 5, 4, 3, 2, 1]
        assert await all_pages(errors=True) == [7, 5, 3, 1]
        assert await all_pages(model="gpt-5") == [3]
        assert await all_pages(since=(T0 + timedelta(seconds=180)).isoformat(),
                               until=(T0 + timedelta(seconds=300)).isoformat()) == [4, 3]  # fmt: skip
        t3 = await evaluator.query("trace", trace_id=ids("t3")[0])
        assert t3.trace.duration_ms == pytest.approx(3000) and t3.trace.cost_usd == pytest.approx(
            10 * 1.25 / 1e6
        )


async def _count(evaluator: EvaluatorClient, agent: str, n: int, *, spans: int) -> bool:
    page = await evaluator.query("traces", agent_ids=[agent], limit=100)
    return len(page.items) == n and sum(t.spans for t in page.items) == spans


async def test_orphans_cycles_and_a_trace_across_agents_are_stored_and_a_large_trace_pages(
    nats_server: Server, priced_logs: ServiceHost
) -> None:
    a, b = new_agent("ta"), new_agent("tb")
    trace_id = ids("big")[0]
    # An orphan (its parent never arrives) and two spans each naming the other as parent.
    odd = [span("big", "orphan", 0, 1, parent="never-sent"),
           span("big", "x", 1, 2, parent="y"), span("big", "y", 1, 2, parent="x")]  # fmt: skip
    many = [
        span("big", f"step {i}", 2 + i / 1000, 2 + i / 1000 + 0.0005, parent="orphan") for i in range(4500)
    ]
    async with (
        await AgentClient.connect(nats_server.url, a) as ca,
        await AgentClient.connect(nats_server.url, b) as cb,
    ):
        await asyncio.gather(publish(ca, *odd, *many[:3000]), publish(cb, *many[3000:]))
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def stored() -> bool:
            try:
                found = await evaluator.query("trace", trace_id=trace_id, limit=1)
            except NotFound:
                return False
            return found.trace.spans == 4503

        await eventually(stored, timeout=30, what="4,503 spans")
        names, cursor, agents = [], None, set()
        while True:
            page = await evaluator.query("trace", trace_id=trace_id, limit=2000, cursor=cursor)
            names += [s.name for s in page.spans]
            agents |= {s.agent_id for s in page.spans}
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(names) == len(set(names)) == 4503 and agents == {a, b}
        assert names[0] == "orphan" and names[-1] == "step 4499"
        # Across agents, the summary adds both up; each agent sees its own part.
        whole = await evaluator.query("trace", trace_id=trace_id, limit=1)
        assert (whole.trace.spans, whole.trace.name) == (4503, "orphan")
        part = await evaluator.query("trace", trace_id=trace_id, agent_id=b, limit=1)
        assert part.trace.spans == 1500


@pytest.fixture
async def otlp(settings: Settings, priced_logs: ServiceHost) -> AsyncIterator[str]:
    port = free_port()
    async with running(OTLP, settings.model_copy(update={"otlp_port": port})):
        yield f"http://127.0.0.1:{port}"


async def test_an_opentelemetry_export_is_a_trace_with_its_model_tokens_and_cost(
    nats_server: Server, otlp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_observability import export_with_the_otel_sdk

    agent = new_agent("ot")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"gen_ai.agent.id={agent},service.name=planner")
    trace_id, root_span = await asyncio.to_thread(export_with_the_otel_sdk, otlp, agent)
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def both() -> Any:
            try:
                found = await evaluator.query("trace", trace_id=trace_id)
            except NotFound:
                return None
            return found.trace.spans == 2 and found

        found = await eventually(both, timeout=15, what="both spans")
        assert (found.trace.name, found.trace.root_span_id) == ("invoke_agent planner", root_span)
        assert found.trace.models == ["gpt-5"] and found.trace.input_tokens == 1200
        assert found.trace.cost_usd == pytest.approx((1200 * 1.25 + 300 * 10.0) / 1e6)
        tool = next(s for s in found.spans if s.name == "execute_tool search")
        assert tool.parent_span_id == root_span and tool.attributes["gen_ai"]["tool"]["name"] == "search"


async def test_a_langgraph_run_is_traced_by_its_callbacks_alone(
    nats_server: Server, priced_logs: ServiceHost
) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph

    from agentstore.langgraph import AgentstoreTracer

    @tool
    def order_status(order_id: str) -> str:
        """The status of an order."""
        return f"order {order_id} ships tomorrow"

    answer = AIMessage("It ships tomorrow.", usage_metadata={"input_tokens": 42, "output_tokens": 7, "total_tokens": 49},
                       response_metadata={"model_name": "gpt-4o-mini"})  # fmt: skip
    model = GenericFakeChatModel(messages=iter([answer]))

    async def lookup(state: MessagesState) -> dict[str, Any]:
        return {"messages": [HumanMessage(await order_status.ainvoke({"order_id": "A-17"}))]}

    async def reply(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    def broken(state: MessagesState) -> dict[str, Any]:
        raise RuntimeError("the ticket system is down")

    graph = StateGraph(MessagesState)
    graph.add_node("lookup", lookup)
    graph.add_node("reply", reply)
    graph.add_edge(START, "lookup")
    graph.add_edge("lookup", "reply")
    graph.add_edge("reply", END)
    app = graph.compile()
    agent = new_agent("lg")
    async with await AgentClient.connect(nats_server.url, agent) as client:
        tracer = AgentstoreTracer(client)
        config: Any = {"configurable": {"thread_id": "ticket-7"}, "callbacks": [tracer]}
        await app.ainvoke({"messages": [HumanMessage("Where is A-17?")]}, config)
        failing = StateGraph(MessagesState)
        failing.add_node("broken", broken)
        failing.add_edge(START, "broken")
        with pytest.raises(RuntimeError):
            await failing.compile().ainvoke({"messages": []}, config)
        await tracer.flush()
        listed = await client.query("traces")
        assert len(listed.items) == 2
        failed, ok = sorted(listed.items, key=lambda t: t.errors, reverse=True)
        assert failed.errors >= 1 and ok.errors == 0 and ok.thread_id == "ticket-7"
        assert ok.models == ["gpt-4o-mini"] and (ok.input_tokens, ok.output_tokens) == (42, 7)
        assert ok.cost_usd == pytest.approx((42 * 0.15 + 7 * 0.6) / 1e6)
        trace = await client.query("trace", trace_id=ok.trace_id)
        names = [s.name for s in trace.spans]
        assert names[0] == "LangGraph" and {"lookup", "reply", "tool order_status"} <= set(names), names
        by_name = {s.name: s for s in trace.spans}
        root = trace.spans[0]
        assert by_name["lookup"].parent_span_id == root.span_id
        assert by_name["tool order_status"].parent_span_id == by_name["lookup"].span_id
        chat = next(s for s in trace.spans if s.model == "gpt-4o-mini")
        assert chat.parent_span_id == by_name["reply"].span_id and chat.kind == "client"
        bad = await client.query("trace", trace_id=failed.trace_id)
        assert any(s.status == "error" and "the ticket system is down" in (s.status_message or "")
                   for s in bad.spans)  # fmt: skip


async def test_an_openai_agents_run_is_traced_by_its_tracing_processor(
    nats_server: Server, priced_logs: ServiceHost
) -> None:
    from agents import Agent, Runner, function_tool, set_trace_processors, set_tracing_disabled
    from agents.testing import ScriptedModel, assistant_message, function_call

    from agentstore.openai_agents import AgentstoreTracing

    @function_tool
    def order_status(order_id: str) -> str:
        """The status of an order."""
        return f"order {order_id} ships tomorrow"

    model = ScriptedModel([[function_call("order_status", {"order_id": "A-17"}, call_id="call-1")],
                           [assistant_message("Your order A-17 ships tomorrow.", item_id="m-1")]])  # fmt: skip
    support = Agent(name="support", instructions="Help with orders.", model=model, tools=[order_status])
    agent = new_agent("oa")
    async with await AgentClient.connect(nats_server.url, agent) as client:
        tracing = AgentstoreTracing(client)
        set_trace_processors([tracing])  # ours only: nothing leaves for OpenAI
        set_tracing_disabled(False)
        try:
            result = await Runner.run(support, "Where is my order A-17?")
        finally:
            set_tracing_disabled(True)
            set_trace_processors([])
        assert result.final_output == "Your order A-17 ships tomorrow."
        await tracing.flush()
        listed = await client.query("traces")
        assert len(listed.items) == 1 and listed.items[0].name == "Agent workflow"
        trace = await client.query("trace", trace_id=listed.items[0].trace_id)
        names = [s.name for s in trace.spans]
        assert names[0] == "Agent workflow" and "agent support" in names and "function order_status" in names
        by_name = {s.name: s for s in trace.spans}
        parent = {s.span_id: s.parent_span_id for s in trace.spans}

        def ancestors(span_id: str) -> list[str]:
            chain = []
            while parent.get(span_id):
                span_id = parent[span_id]
                chain.append(span_id)
            return chain

        # The SDK's tree: workflow > task > agent > turn > tool call, every span under the root.
        assert trace.spans[0].span_id in ancestors(by_name["agent support"].span_id)
        assert by_name["agent support"].span_id in ancestors(by_name["function order_status"].span_id)
        assert names.count("turn") == 2
        assert trace.trace.spans == len(trace.spans) >= 4
