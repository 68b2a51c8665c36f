"""The fault suite: each fault the contract promises to survive, against real servers and
service processes (the cases are in tests/faults.py, each measuring what it proves).

`make test` runs the cases at short sizes (the crash drills T1 and T3 only at full size: their
behaviours have short tests in test_durability.py and test_cluster.py); `make faults` runs every case at full size (the `soak` marker:
100k events a service, 30 s and 120 s outages, 10k runs; about 25 minutes) and writes the
figures to .cache/faults.json, the table README's Faults section shows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from agentstore_server.devstack.servers import Server
from tests import faults
from tests.conftest import Stack

pytestmark = pytest.mark.slow
Case = Callable[[faults.Stack, faults.Sizes], Awaitable[faults.Result]]
FULL = pytest.param(faults.Sizes(), id="full", marks=[pytest.mark.soak, pytest.mark.timeout(3600)])
SIZES = [pytest.param(faults.Sizes.short(), id="short"), FULL]
# Crash drills take minutes even short; `make test` proves the same behaviours in
# test_durability.py and test_cluster.py. (T4 runs short: PostgreSQL down 6 s, under every
# service and FerretDB; the other stores' outages are test_durability's and test_artifacts'.
# Its full size found FerretDB's "backend down" answer dead-lettering logs; the short one would.)
SOAK_ONLY = [FULL]
RESULTS: list[faults.Result] = []


@pytest.fixture
async def fault_stack(
    tmp_path: Path, nats_server: Server, stack_servers: Stack
) -> AsyncIterator[faults.Stack]:
    """The session's databases and a fresh NATS, its streams made first (a backlog published
    while a service is down is kept, as after `make up`)."""
    stack = faults.Stack(
        tmp_path, nats_server, stack_servers.postgres, stack_servers.mongo, stack_servers.minio
    )
    await faults.provision(nats_server.url)
    yield stack
    stack.stop_services()


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    """The measured figures of a run, kept for README's table (`make faults`)."""
    yield
    if RESULTS:
        Path(".cache").mkdir(exist_ok=True)
        Path(".cache/faults.json").write_text(json.dumps([r.__dict__ for r in RESULTS], indent=1))


async def holds(case: Case, stack: faults.Stack, sizes: faults.Sizes) -> None:
    result = await case(stack, sizes)
    RESULTS.append(result)
    print(f"\n{result.case}: {result.fault} | must: {result.must} | {result.figures}")
    assert result.holds, f"{result.case} ({result.must}) does not hold: {result.figures}"


@pytest.mark.parametrize("sizes", SOAK_ONLY)
async def test_t1_a_service_sigkilled_every_2_s_loses_and_duplicates_nothing(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t1, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t2_every_publish_sent_three_times_even_past_the_dedupe_window_is_stored_once(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t2, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SOAK_ONLY)
async def test_t3_nats_server_sigkilled_during_publishes_loses_nothing_acked(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t3, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t4_each_database_down_loses_nothing_dead_letters_nothing_and_reads_not_ready(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t4, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t5_poison_messages_are_dead_lettered_with_reasons_and_their_neighbours_stored(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t5, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t6_oversized_wide_and_deep_bodies_are_refused_clearly_and_neighbours_stored(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t6, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t7_every_forbidden_subject_of_every_identity_is_refused(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t7, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t10_operator_injection_in_every_query_field_is_a_400(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t10, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t11_workers_stalling_past_the_lease_and_killed_complete_no_run_twice_and_strand_none(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t11, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t13_expired_traversing_and_foreign_presigned_urls_are_all_refused(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t13, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t16_a_nats_cluster_node_killed_mid_ingest_loses_nothing_acked(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t16, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t17_a_full_jetstream_disk_refuses_publishes_loses_nothing_acked_and_recovers(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t17, fault_stack, sizes)


@pytest.mark.parametrize("sizes", SIZES)
async def test_t18_an_agent_an_hour_ahead_wins_by_ts_as_documented_and_nothing_is_rejected(
    fault_stack: faults.Stack, sizes: faults.Sizes
) -> None:
    await holds(faults.t18, fault_stack, sizes)


def test_every_case_of_the_suite_has_its_test() -> None:
    cases = {name.lower() for name in faults.CASES}
    tested = {n.split("_")[1] for n in globals() if n.startswith("test_t")}
    assert tested == cases
