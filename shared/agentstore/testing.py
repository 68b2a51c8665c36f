"""A pytest plugin for testing your agents against a real agentstore.

Installed with the package (entry point `pytest11`), so its fixtures are there
in any project that has `agentstore` and `pytest-asyncio`:

    async def test_my_agent_reports_progress(agent_client, evaluator_client):
        await run_my_agent(agent_client)
        task = await evaluator_client.query("task", agent_id=agent_client.agent, task_id="t-1",
                                            after=(await agent_client.flush())["TASKS"].as_after()["after"])
        assert task.status == "completed"

- `agentstore_stack` (session): the stack to test against. With
  `--agentstore-url nats://...` (or `AGENTSTORE_TEST_URL`) an existing one;
  otherwise a private local stack (`agentstore up` in a temp folder on free
  ports; needs `pip install 'agentstore[testing]'`), stopped at the end.
- `agent_id`: a fresh agent id per test, so tests never see each other's data.
- `agent_client`, `evaluator_client`: connected clients, closed after the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from agentstore.client import AgentClient, EvaluatorClient

try:
    import pytest_asyncio

    HAVE_ASYNCIO = True
except ImportError:  # pragma: no cover - the plugin still loads; its async fixtures say why they fail
    HAVE_ASYNCIO = False
NEEDS_ASYNCIO = "agentstore's client fixtures need pytest-asyncio: pip install pytest-asyncio"


@dataclass(frozen=True)
class StackInfo:
    nats_url: str
    web_url: str | None = None
    otlp_url: str | None = None
    home: Path | None = None  # a private stack's folder (logs in home/logs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentstore")
    group.addoption(
        "--agentstore-url",
        default=None,
        help="NATS URL of a running agentstore to test against (default: start a private local stack)",
    )


@pytest.fixture(scope="session")
def agentstore_stack(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackInfo]:
    url = pytestconfig.getoption("agentstore_url") or os.environ.get("AGENTSTORE_TEST_URL")
    if url:
        yield StackInfo(nats_url=url)
        return
    # agentstore-server (the `testing` extra) registers what starts a private stack; the SDK
    # finds it by entry point and never imports the server.
    starters = entry_points(group="agentstore.stack", name="private")
    if not starters:
        raise pytest.UsageError(
            "a private agentstore stack needs the server: pip install 'agentstore[testing]' "
            "(or pass --agentstore-url nats://... of a running stack)"
        )
    (starter,) = starters
    home = tmp_path_factory.mktemp("agentstore")
    start, stop = starter.load()(home)
    settings = start()
    try:
        yield StackInfo(settings["NATS_URL"], settings.get("WEB_URL"), settings.get("OTLP_URL"), home)
    finally:
        stop()


@pytest.fixture
def agent_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


if HAVE_ASYNCIO:

    @pytest_asyncio.fixture
    async def agent_client(agentstore_stack: StackInfo, agent_id: str) -> AsyncIterator[AgentClient]:
        async with await AgentClient.connect(agentstore_stack.nats_url, agent_id) as client:
            yield client

    @pytest_asyncio.fixture
    async def evaluator_client(agentstore_stack: StackInfo) -> AsyncIterator[EvaluatorClient]:
        async with await EvaluatorClient.connect(agentstore_stack.nats_url) as client:
            yield client

else:  # pragma: no cover

    @pytest.fixture
    def agent_client() -> None:
        raise pytest.UsageError(
            "agentstore's client fixtures need pytest-asyncio: pip install pytest-asyncio"
        )

    @pytest.fixture
    def evaluator_client() -> None:
        raise pytest.UsageError(
            "agentstore's client fixtures need pytest-asyncio: pip install pytest-asyncio"
        )
