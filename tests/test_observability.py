"""Agents as they already are: an app using only `logging`, and one using only the
OpenTelemetry SDK with its OTLP exporters pointed at agentstore; both end with their
data queryable. Real services, real exporters, real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider

from agentstore.client import AgentClient, EvaluatorClient
from agentstore.errors import NotFound
from agentstore.logging import AgentstoreHandler, traced
from agentstore_server.config import Settings
from agentstore_server.devstack.servers import Server, free_port
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.otlp.service import SPEC as OTLP
from tests.helpers import eventually, new_agent, scrape


@pytest.fixture
async def otlp_service(settings: Settings) -> AsyncIterator[tuple[ServiceHost, str]]:
    port = free_port()
    async with running(OTLP, settings.model_copy(update={"otlp_port": port})) as host:
        yield host, f"http://127.0.0.1:{port}"


async def test_an_app_using_only_logging_ends_with_its_records_queryable(
    nats_server: Server, logs_service: ServiceHost
) -> None:
    agent = new_agent("log")
    app = logging.getLogger(f"app.{agent}")
    app.setLevel(logging.DEBUG)
    async with await AgentClient.connect(nats_server.url, agent) as client:
        handler = AgentstoreHandler(client)
        await handler.start()
        app.addHandler(handler)
        tracer = TracerProvider().get_tracer("test")
        try:
            app.info("plain %s", "message", extra={"tool": "browser", "task_id": "t-9", "odd": object()})
            with tracer.start_as_current_span("invoke_agent") as span:
                app.warning("inside a span")
                ids = (f"{span.get_span_context().trace_id:032x}", f"{span.get_span_context().span_id:016x}")
            try:
                raise ValueError("boom")
            except ValueError:
                app.exception("the tool failed")
            # From a thread that is not the client's event loop.
            worker = threading.Thread(target=lambda: app.error("from a worker thread"))
            worker.start()
            await asyncio.to_thread(worker.join)
            await handler.drain()
        finally:
            app.removeHandler(handler)
        assert handler.dropped == 0
        written = await client.flush()
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:
        page = await evaluator.query("logs", agent_ids=[agent], after=written["LOGS"].as_after())
        by_message = {item.message: item for item in page.items}
        assert set(by_message) == {
            "plain message",
            "inside a span",
            "the tool failed",
            "from a worker thread",
        }
        plain = by_message["plain message"]
        assert plain.level == "info" and plain.task_id == "t-9"
        assert (
            plain.fields is not None
            and plain.fields["tool"] == "browser"
            and plain.fields["logger"] == app.name
        )
        assert plain.fields["odd"].startswith("<object object")
        failed = by_message["the tool failed"]
        assert failed.level == "error" and "ValueError: boom" in (failed.fields or {})["exception"]
        spanned = await evaluator.query("logs", agent_ids=[agent], trace_id=ids[0])
        assert [(i.message, i.trace_id, i.span_id) for i in spanned.items] == [("inside a span", *ids)]


async def test_traced_records_each_step_with_its_duration_and_outcome(
    nats_server: Server, logs_service: ServiceHost
) -> None:
    agent = new_agent("step")
    async with await AgentClient.connect(nats_server.url, agent) as client:
        steps = traced(client, task_id="t-1")

        @traced(client, "plan")
        async def plan(goal: str) -> dict[str, Any]:
            return {"goal": goal, "steps": 3}

        @traced(client)
        def parse(text: str) -> int:
            return int(text)

        assert await plan("ship") == {"goal": "ship", "steps": 3}
        assert parse("7") == 7
        with pytest.raises(ValueError):
            parse("seven")
        async with steps:
            await asyncio.sleep(0)  # a step with no work still records its duration
        await asyncio.gather(steps.drain(), client.flush())
        await asyncio.sleep(0)
        written = await client.flush()
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def stored() -> Any:
            page = await evaluator.query(
                "events", agent_ids=[agent], type="step", after=written["LOGS"].as_after()
            )
            return len(page.items) == 4 and page.items

        items = await eventually(stored, timeout=10, what="four step events")
        outcomes = {(i.payload["name"], i.payload["ok"]) for i in items}
        assert outcomes == {("plan", True), ("test_traced_records_each_step_with_its_duration_and_outcome."
                            "<locals>.parse", True), ("test_traced_records_each_step_with_its_duration_and_outcome."
                            "<locals>.parse", False), ("step", True)}  # fmt: skip
        failed = next(i for i in items if not i.payload["ok"])
        assert failed.payload["error"].startswith("ValueError: invalid literal")
        assert all(i.payload["duration_ms"] >= 0 for i in items)
        assert next(i for i in items if i.payload["name"] == "plan").payload["result"] == {
            "goal": "ship",
            "steps": 3,
        }


def export_with_the_otel_sdk(endpoint: str, agent: str) -> tuple[str, str]:
    """What an agent instrumented with the OpenTelemetry SDK does, configured only by the
    standard environment variables (set by the caller): traces, logs and metrics."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create()  # from OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    tracer = tracer_provider.get_tracer("my-agent")
    otel_log = logging.getLogger(f"otel.{agent}")
    with warnings.catch_warnings():
        # Deprecated in favour of opentelemetry-instrumentation-logging; what apps use today.
        warnings.simplefilter("ignore", DeprecationWarning)
        otel_log.addHandler(LoggingHandler(logger_provider=logger_provider))
    otel_log.setLevel(logging.INFO)
    tool_calls = meter_provider.get_meter("my-agent").create_counter("tool_calls")
    with tracer.start_as_current_span("invoke_agent planner") as root:
        root.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-5",
                             "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300})  # fmt: skip
        with tracer.start_as_current_span("execute_tool search") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"})
            otel_log.warning("search returned nothing")
            tool_calls.add(2, {"tool": "search"})
        ids = (f"{root.get_span_context().trace_id:032x}", f"{root.get_span_context().span_id:016x}")
    assert meter_provider.force_flush(10_000)
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()
    return ids


async def test_an_app_using_only_the_otel_sdk_lands_in_agentstore(
    nats_server: Server,
    logs_service: ServiceHost,
    metrics_service: ServiceHost,
    otlp_service: tuple[ServiceHost, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, endpoint = otlp_service
    agent = new_agent("otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"gen_ai.agent.id={agent},service.name=planner")
    # The exporters are synchronous; the receiver answers on this test's loop meanwhile.
    trace_id, root_span = await asyncio.to_thread(export_with_the_otel_sdk, endpoint, agent)
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def spans() -> Any:
            page = await evaluator.query("events", agent_ids=[agent], trace_id=trace_id)
            return len(page.items) == 2 and page.items

        events = {e.type: e for e in await eventually(spans, timeout=15, what="both spans")}
        root, tool = events["invoke_agent"], events["execute_tool"]
        assert (
            root.span_id == root_span and root.payload["attributes"]["gen_ai"]["request"]["model"] == "gpt-5"
        )
        # Dotted OpenTelemetry keys are stored nested: queried by the same dotted path.
        assert root.payload["attributes"]["gen_ai"]["usage"] == {"input_tokens": 1200, "output_tokens": 300}
        assert tool.payload["parent_span_id"] == root_span
        assert (
            tool.payload["attributes"]["gen_ai"]["tool"]["name"] == "search"
            and tool.payload["duration_ms"] >= 0
        )
        logs = await evaluator.query("logs", agent_ids=[agent], trace_id=trace_id)
        assert [(i.level, i.message, i.span_id) for i in logs.items] == [
            ("warning", "search returned nothing", tool.span_id)
        ]

        async def series(name: str) -> Any:
            reply = await evaluator.query("metrics", name=name, agent_ids=[agent])
            return [v for s in reply.series for _, v in s.points]

        # A cumulative sum: one point per export (force_flush, then shutdown), each the total.
        assert set(await eventually(lambda: series("tool_calls"), timeout=10, what="tool_calls")) == {2.0}
        # Each series is stored on its own (points of a batch land apart): wait for each.
        assert await eventually(lambda: series("gen_ai.usage.input_tokens"), timeout=10) == [1200.0]
        assert await eventually(lambda: series("gen_ai.usage.output_tokens"), timeout=10) == [300.0]


async def test_otlp_json_and_bad_exports(
    nats_server: Server, logs_service: ServiceHost, otlp_service: tuple[ServiceHost, str]
) -> None:
    _, endpoint = otlp_service
    agent = new_agent("json")
    trace_id = "5b8efff798038103d269b633813fc60c"
    body = {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": agent}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1700000000000000000", "severityNumber": 17, "severityText": "ERROR",
            "body": {"stringValue": "json export"}, "traceId": trace_id, "spanId": "eee19b7ec3c1b174",
            "attributes": [{"key": "attempt", "value": {"intValue": "3"}}],
        }]}],
    }]}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # an exporter's retry of the same batch is stored once
            async with http.post(f"{endpoint}/v1/logs", json=body) as reply:
                assert reply.status == 200 and await reply.json() == {}
        async with http.post(f"{endpoint}/v1/traces", data=b"\xff\x00garbage",
                             headers={"Content-Type": "application/x-protobuf"}) as reply:  # fmt: skip
            assert reply.status == 400 and "not an OTLP traces export request" in await reply.text()
        nameless = {
            "resourceLogs": [
                {"resource": {}, "scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}]}
            ]
        }
        async with http.post(f"{endpoint}/v1/logs", json=nameless) as reply:
            assert reply.status == 400 and "gen_ai.agent.id" in (await reply.json())["message"]
        async with http.post(
            f"{endpoint}/v1/logs", data=b"{}", headers={"Content-Type": "text/plain"}
        ) as reply:
            assert reply.status == 400 and "application/x-protobuf or application/json" in await reply.text()
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def stored() -> Any:
            page = await evaluator.query("logs", agent_ids=[agent])
            return page.items

        (item,) = await eventually(stored, timeout=10, what="the JSON export")
        assert (item.level, item.message, item.trace_id, item.ts) == (
            "error",
            "json export",
            trace_id,
            "2023-11-14T22:13:20.000Z",
        )
        assert item.fields == {"attempt": 3}


async def test_a_refused_span_is_counted_once_and_kept_of_nothing_its_neighbours_stored(
    nats_server: Server, logs_service: ServiceHost, otlp_service: tuple[ServiceHost, str]
) -> None:
    """OTLP partial success: a span the contract refuses (a NUL in an attribute) is refused
    whole, its event with it, and counted once in `rejectedSpans`; the span beside it is
    stored, as a span and as an event."""
    _, endpoint = otlp_service
    agent = new_agent("partial")
    trace_id = "5b8efff798038103d269b633813fc60d"

    def span(span_id: str, name: str, note: str) -> dict[str, Any]:
        return {"traceId": trace_id, "spanId": span_id, "name": name, "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000500000000",
                "attributes": [{"key": "note", "value": {"stringValue": note}}]}  # fmt: skip

    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": agent}}]},
        "scopeSpans": [{"spans": [span("eee19b7ec3c1b175", "kept", "fine"),
                                  span("eee19b7ec3c1b176", "refused", "a\u0000b")]}],
    }]}  # fmt: skip
    async with aiohttp.ClientSession() as http, http.post(f"{endpoint}/v1/traces", json=body) as reply:
        assert reply.status == 200
        partial = (await reply.json())["partialSuccess"]
    assert partial["rejectedSpans"] == "1", partial  # int64 in OTLP's JSON: a string
    assert "NUL" in partial["errorMessage"] and "spans of" in partial["errorMessage"], partial
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def stored() -> Any:
            try:
                return (await evaluator.query("trace", trace_id=trace_id, agent_id=agent)).spans
            except NotFound:  # not stored yet
                return None

        spans = await eventually(stored, timeout=15, what="the kept span")
        assert [s.name for s in spans] == ["kept"]
        events = await evaluator.query("events", agent_ids=[agent], trace_id=trace_id)
        assert [e.span_id for e in events.items] == ["eee19b7ec3c1b175"]


async def test_srv_stats_time_each_request_and_count_its_errors(
    nats_server: Server, logs_service: ServiceHost
) -> None:
    import msgspec
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        for _ in range(3):
            await nc.request("query.logs", b"{}", timeout=5)
        bad = await nc.request("query.logs", b'{"limit": 0}', timeout=5)
        assert (bad.headers or {}).get("Nats-Service-Error-Code") == "400"
        await nc.jetstream().publish("agents.a1.logs", b'{"id": "x", "level": "loud", "message": "m"}')
        reply = await nc.request("$SRV.STATS.agentstore-logs", b"", timeout=5)
        stats = {e["subject"]: e for e in msgspec.json.decode(reply.data)["endpoints"]}["query.logs"]
        assert stats["num_requests"] == 4 and stats["num_errors"] == 1
        assert stats["last_error"].startswith("400: ") and "limit" in stats["last_error"]
        # The whole request is timed (decode, query, reply), not only the spawn of its task.
        assert stats["processing_time"] > 4 * 100_000 and stats["average_processing_time"] > 100_000

        async def dead_gauge() -> bool:
            text = await scrape(logs_service.health_port)
            return 'agentstore_deadletters{service="logs"} 1.0' in text

        await eventually(dead_gauge, timeout=10, what="the dead-letter gauge")
    finally:
        await nc.drain()


async def test_otlp_inflates_a_body_once_and_bounded(
    nats_server: Server, logs_service: ServiceHost, otlp_service: tuple[ServiceHost, str]
) -> None:
    """A gzip or deflate export is stored (aiohttp no longer inflates it before the service
    does again); a body compressed twice, a bomb past MAX_BODY and bytes that are not what
    they say get a 4xx naming why, and the receiver keeps answering."""
    import gzip
    import json
    import zlib

    from agentstore_server.otlp.service import MAX_BODY

    _, endpoint = otlp_service
    agent = new_agent("gz")

    def export(message: str) -> bytes:
        return json.dumps({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": agent}}]},
            "scopeLogs": [{"logRecords": [{"body": {"stringValue": message}}]}],
        }]}).encode()  # fmt: skip

    bomb = b"\0" * (MAX_BODY + 1024 * 1024)  # what the bomb inflates to, built once here
    cases = [
        ("gzip", gzip.compress(export("gzipped")), 200, ""),
        ("deflate", zlib.compress(export("deflated")), 200, ""),
        ("gzip", gzip.compress(gzip.compress(export("twice"))), 400, "not an OTLP logs export"),
        ("gzip", gzip.compress(bomb), 413, "MiB decompressed"),
        ("gzip", gzip.compress(export("cut"))[:-12], 400, "ends before"),
        ("deflate", b"\x00not deflate", 400, "not valid deflate"),
        ("br", b"x", 400, "send gzip, deflate or none"),
    ]
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for encoding, body, status, says in cases:
            headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
            async with http.post(f"{endpoint}/v1/logs", data=body, headers=headers) as reply:
                text = await reply.text()
                assert reply.status == status, (encoding, text)
                assert says in text, text
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def stored() -> Any:
            page = await evaluator.query("logs", agent_ids=[agent])
            return sorted(item.message for item in page.items) if len(page.items) == 2 else None

        assert await eventually(stored, timeout=10, what="both compressed exports") == ["deflated", "gzipped"]


def log_export(*agents: str, message: str = "with a token") -> dict[str, Any]:
    """An OTLP/JSON logs export: one resource (and one record) per agent."""
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": agent}}]},
        "scopeLogs": [{"logRecords": [{"body": {"stringValue": f"{message} from {agent}"}}]}],
    } for agent in agents]}  # fmt: skip


async def test_an_export_needs_the_token_of_the_agent_it_is_for(
    nats_server: Server, logs_service: ServiceHost, settings: Settings, tmp_path: Path
) -> None:
    """Issue 40: with a secret to check against, the receiver takes an export only with a
    bearer token bound to its one agent: that agent's own token or its pod's service-account
    token. No token is a 401; the fleet's enrollment token, another agent's token, an export
    naming a second agent, or a forged service-account token is a 403 and stores nothing."""
    from agentstore.auth import agent_token
    from tests.test_auth import CLUSTER_ISSUER, cluster_jwks, projected_token

    enrollment = "fleet-enrollment-token-for-this-test"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(cluster_jwks()))
    port = free_port()
    secured = settings.model_copy(update={
        "otlp_port": port, "agentstore_enrollment_token": enrollment, "identity_k8s_issuer": CLUSTER_ISSUER,
        "identity_k8s_jwks_file": str(jwks), "identity_k8s_namespaces": ["agentstore"],
    })  # fmt: skip
    a, b, pod = new_agent("tok"), new_agent("tok"), new_agent("pod")
    refusals = {
        "no token": ({}, log_export(a), 401, "Authorization: Bearer"),
        "not a bearer": ({"Authorization": f"Basic {agent_token(enrollment, a)}"}, log_export(a), 401, "Bearer"),
        "the fleet's token": ({"Authorization": f"Bearer {enrollment}"}, log_export(a), 403, "no one agent's"),
        "another agent's token": ({"Authorization": f"Bearer {agent_token(enrollment, b)}"}, log_export(a), 403,
                                  f"not agent '{a}'"),
        "a second agent in the export": ({"Authorization": f"Bearer {agent_token(enrollment, a)}"},
                                         log_export(a, b), 403, f"not agent '{b}'"),
        "a pod exporting for another": ({"Authorization": f"Bearer {projected_token(pod)}"}, log_export(a), 403,
                                        f"may not export for ['{a}']"),
        "an expired pod token": ({"Authorization": f"Bearer {projected_token(pod, lifetime=-120)}"},
                                 log_export(pod), 403, "expired"),
    }  # fmt: skip
    async with running(OTLP, secured), aiohttp.ClientSession() as http:
        endpoint = f"http://127.0.0.1:{port}/v1/logs"
        for case, (headers, body, status, reason) in refusals.items():
            async with http.post(endpoint, json=body, headers=headers) as reply:
                said = (await reply.json())["message"]
                assert (reply.status, reason in said) == (status, True), (case, reply.status, said)
                if status == 401:
                    assert reply.headers["WWW-Authenticate"].startswith("Bearer"), case
        for agent, token in ((a, agent_token(enrollment, a)), (pod, projected_token(pod))):
            async with http.post(
                endpoint, json=log_export(agent), headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 200, await r.text()
    async with await EvaluatorClient.connect(nats_server.url) as evaluator:

        async def stored(agent: str) -> list[str]:
            return [i.message for i in (await evaluator.query("logs", agent_ids=[agent])).items]

        for agent in (a, pod):
            await eventually(lambda agent=agent: stored(agent), timeout=10, what=f"{agent}'s export")
        # Only what was exported with the right token: nothing of the refused exports.
        assert await stored(a) == [f"with a token from {a}"]
        assert await stored(b) == []
