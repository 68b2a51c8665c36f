"""`agentstore auth`: a real nats-server running the generated authorization, per the roles table."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client

from agentstore import AgentClient
from agentstore.auth import Fleet, generate, read_credentials
from agentstore.bus.connect import NatsSettings
from agentstore.errors import ConfigError, Forbidden
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import running
from agentstore_server.registry import SERVICES
from tests.conftest import Stack, make_settings
from tests.helpers import eventually


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    generate(Fleet(agents=["a", "b"], evaluators=["ev"], frontends=["web"]), tmp_path / "nats")
    server = servers.start_nats(tmp_path / "nats", servers.free_port(), servers.free_port(),
                                extra_conf='include "auth.conf"')  # fmt: skip
    yield server, tmp_path / "nats" / "credentials"
    server.stop()


class Probe:
    """A client connection that records the server's permission errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, url: str, creds: Path, inbox: str) -> Client:
        user, password = read_credentials(creds)

        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(url, user=user, password=password, inbox_prefix=inbox,
                                     error_cb=on_error, max_reconnect_attempts=0)  # fmt: skip
        return self.nc

    async def denied(self, what: str) -> None:
        async def seen() -> bool:
            return any(
                "permissions violation" in e.lower() and what.lower() in e.lower() for e in self.errors
            )

        await eventually(seen, timeout=5, what=f"a permissions violation for {what} (seen: {self.errors})")


async def can_request(nc: Client, subject: str, body: Any) -> bool:
    try:
        msg = await nc.request(subject, msgspec.json.encode(body), timeout=2)
    except Exception:
        return False
    return (
        not (msg.headers or {}).get("Nats-Service-Error-Code")
        or msg.headers["Nats-Service-Error-Code"] != "500"
    )


CONSOLE: dict[str, str] = {}  # the console of `services_on`


@pytest.fixture
async def services_on(secured: tuple[Server, Path], stack_servers: Stack) -> AsyncIterator[Path]:
    server, creds = secured
    hosts = []
    for name, spec in SERVICES.items():
        # The web console logs in as its console identity, not as a service.
        identity = "console-web" if name == "web" else f"service-{name}"
        user, password = read_credentials(creds / f"{identity}.json")
        settings = make_settings(
            server, stack_servers.mongo, stack_servers, nats_user=user, nats_password=password,
            web_port=servers.free_port(),
        )  # fmt: skip
        if name == "web":
            CONSOLE["url"] = f"http://127.0.0.1:{settings.web_port}"
        host = running(spec, settings)
        await host.__aenter__()
        hosts.append(host)
    yield creds
    for host in reversed(hosts):
        await host.__aexit__(None, None, None)


async def test_agent_permissions(secured: tuple[Server, Path], services_on: Path) -> None:
    server, creds = secured
    probe = Probe()
    nc = await probe.connect(server.url, creds / "agent-a.json", "_INBOX.agents.a")
    try:
        ack = await nc.jetstream().publish("agents.a.logs", b'{"id": "1", "level": "info", "message": "m"}')
        assert await can_request(
            nc, "agents.a.rpc.query.logs", {"after": {"stream": ack.stream, "seq": ack.seq}}
        )
        assert await can_request(nc, "agents.a.rpc.claim", {})
        for subject in (
            "agents.b.logs",
            "query.logs",
            "eval.record",
            "runs.submit",
            "$JS.API.STREAM.INFO.LOGS",
        ):
            await nc.publish(subject, b"{}")
            await probe.denied(subject)
        for subject in ("_INBOX.agents.b.>", "agents.a.logs", "agents.*.logs", "query.>"):
            await nc.subscribe(subject)
            await probe.denied(subject)
    finally:
        await nc.close()


async def test_frontend_makes_only_its_requests(secured: tuple[Server, Path], services_on: Path) -> None:
    server, creds = secured
    probe = Probe()
    nc = await probe.connect(server.url, creds / "frontend-web.json", "_INBOX.frontend")
    try:
        for subject, body in (("query.tasks", {}), ("query.summary", {}), ("query.files", {}),
                              ("query.task", {"agent_id": "a", "task_id": "t"}),
                              ("query.file_url", {"file_id": "a:x"}), ("query.screenshots", {})):  # fmt: skip
            assert await can_request(nc, subject, body), subject
        for subject in ("query.logs", "eval.record", "runs.submit", "agents.a.logs"):
            await nc.publish(subject, b"{}")
            await probe.denied(subject)
    finally:
        await nc.close()


async def test_evaluator_queries_and_evaluates_but_cannot_act_as_an_agent(
    secured: tuple[Server, Path], services_on: Path
) -> None:
    server, creds = secured
    probe = Probe()
    nc = await probe.connect(server.url, creds / "evaluator-ev.json", "_INBOX.evaluator")
    try:
        assert await can_request(nc, "query.logs", {})
        assert await can_request(nc, "runs.submit", {"spec": {"x": 1}})
        assert await can_request(
            nc, "eval.custody_test", {"agent_id": "a", "passed": True, "score": 1, "duration": 1}
        )
        assert await can_request(nc, "query.files", {})  # file metadata, as seed 003 has it
        # ... but not the objects: presigned URLs are the frontend's (and an agent's own).
        for subject in ("agents.a.logs", "agents.a.rpc.claim", "$JS.API.STREAM.LIST", "query.file_url",
                        "query.screenshots"):  # fmt: skip
            await nc.publish(subject, b"{}")
            await probe.denied(subject)
    finally:
        await nc.close()


def test_generated_credentials_are_private_and_distinct(secured: tuple[Server, Path]) -> None:
    _, creds = secured
    files = sorted(creds.glob("*.json"))
    assert {f.stem for f in files} >= {"agent-a", "agent-b", "evaluator-ev", "frontend-web", "service-logs"}
    assert all(f.stat().st_mode & 0o077 == 0 for f in files)
    assert len({json.loads(f.read_text())["password"] for f in files}) == len(files)


async def test_the_console_reads_every_panel_as_its_console_identity(services_on: Path) -> None:
    """Under auth the console's identity (frontend + read-only queries + DEADLETTER reads)
    fills every panel of the fleet and dead-letter pages."""
    for path in ("/", "/runs", "/deadletters", "/agents/a/logs", "/agents/a/metrics"):
        page = await asyncio.to_thread(fetch, CONSOLE["url"] + path)
        assert "is unavailable" not in page and "<h1>" in page, (path, page[:2000])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


# Clients never borrow an identity, and fail fast and once (issue 26's findings).


async def test_an_agent_nobody_listed_never_borrows_the_evaluators_login(
    secured: tuple[Server, Path],
) -> None:
    server, creds = secured
    user, password = read_credentials(creds / "evaluator-ev.json")
    # What stack.env gives every client under `make up AUTH=1`: the evaluator's login and the folder.
    settings = NatsSettings(url=server.url, user=user, password=password, credentials_dir=str(creds))
    with pytest.raises(ConfigError, match="no NATS credentials for agent-newcomer-1") as refused:
        await AgentClient.connect(settings, "newcomer-1")
    assert len(str(refused.value).splitlines()) == 1


async def test_a_client_with_no_identity_fails_within_10_s_with_one_line(
    secured: tuple[Server, Path],
) -> None:
    server, _ = secured
    started = time.monotonic()
    with pytest.raises(ConfigError, match="refused the login as an anonymous client") as refused:
        await AgentClient.connect(NatsSettings(url=server.url), "a")
    assert time.monotonic() - started < 10
    assert len(str(refused.value).splitlines()) == 1
    with pytest.raises(ConfigError, match="refused the login as user 'agent-a'"):
        await AgentClient.connect(NatsSettings(url=server.url, user="agent-a", password="wrong"), "a")


async def test_a_permission_violation_raises_forbidden_once_instead_of_a_stream_of_warnings(
    secured: tuple[Server, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Agent b's client logged in as agent a: the server refuses every publish on
    agents.b.*; the client says so once, as Forbidden from flush() and then from the call."""
    server, creds = secured
    client = await AgentClient.connect(NatsSettings(url=server.url, creds=str(creds / "agent-a.json")), "b",
                                       timeout=1.0)  # fmt: skip
    client.publish_retries = 1
    try:
        for i in range(50):
            await client.log("info", f"m{i}")
        with pytest.raises(Forbidden, match=r"agents\.b\.logs"):
            await client.flush()
        with pytest.raises(Forbidden, match=r"may not publish on agents\.b\.logs"):
            await client.log("info", "again")
    finally:
        await client.nc.close()
    # Logged once per refused subject (the publish, and the reply inbox of b), not per message.
    refused = [r.getMessage() for r in caplog.records if "permissions violation" in r.getMessage().lower()]
    assert len(refused) == len(set(refused)) and any("publish to" in r for r in refused), refused
