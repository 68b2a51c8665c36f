"""LangGraph on agentstore (issue 27): `AgentstoreSaver` passes LangGraph's own conformance
suite for checkpointers (`langgraph-checkpoint-conformance`), every capability including the
optional ones, against the real artifacts service (PostgreSQL, MinIO) over NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from agentstore import AgentClient
from agentstore.langgraph import AgentstoreSaver
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import new_agent


@pytest.fixture
async def client(nats_server: Server, artifacts_service: ServiceHost) -> AsyncIterator[AgentClient]:
    async with await AgentClient.connect(nats_server.url, new_agent("lg")) as c:
        yield c


async def test_the_saver_passes_langgraphs_conformance_suite_with_every_capability(
    client: AgentClient,
) -> None:
    @checkpointer_test(name="AgentstoreSaver")
    async def saver() -> AsyncIterator[AgentstoreSaver]:
        yield AgentstoreSaver(client)

    report = await validate(saver)
    detected = {name for name, result in report.results.items() if result.detected}
    assert detected == {c.value for c in ALL_CAPABILITIES}, f"not detected: {ALL_CAPABILITIES - detected}"
    failures = {name: result.failures for name, result in report.results.items() if not result.passed}
    assert not failures, failures
    assert all(r.tests_passed > 0 and r.tests_failed == 0 for r in report.results.values())
    print({name: r.tests_passed for name, r in report.results.items()})
