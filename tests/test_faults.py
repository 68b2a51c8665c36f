"""Short versions of the fault suite's cases that no other test covers (bench/faults.py
runs them at full size and prints the figures): a full JetStream disk, clock skew, and
duplicates sent past JetStream's dedupe window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentstore_server.devstack.servers import Server
from bench import faults
from tests.conftest import Stack

pytestmark = pytest.mark.slow

TINY = faults.Sizes(dupes=300)


@pytest.fixture
async def fault_stack(
    tmp_path: Path, nats_server: Server, stack_servers: Stack
) -> AsyncIterator[faults.Stack]:
    stack = faults.Stack(
        tmp_path, nats_server, stack_servers.postgres, stack_servers.mongo, stack_servers.minio
    )
    await faults.provision(nats_server.url)
    yield stack
    stack.stop_services()


async def test_t17_a_full_jetstream_disk_refuses_publishes_loses_nothing_acked_and_recovers(
    fault_stack: faults.Stack,
) -> None:
    result = await faults.t17(fault_stack, TINY)
    assert result.holds, result.figures


async def test_t18_an_agent_an_hour_ahead_wins_by_ts_as_documented_and_nothing_is_rejected(
    fault_stack: faults.Stack,
) -> None:
    result = await faults.t18(fault_stack, TINY)
    assert result.holds, result.figures


async def test_t2_every_publish_sent_three_times_even_past_the_dedupe_window_is_stored_once(
    fault_stack: faults.Stack,
) -> None:
    result = await faults.t2(fault_stack, TINY)
    assert result.holds, result.figures
