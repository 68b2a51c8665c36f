"""Runs: studies deduplicated by spec hash, lease-based claiming fenced by holder and attempt."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import Any

import pytest
from nats.aio.client import Client

from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.logs.service import SPEC as LOGS
from tests.helpers import eventually, new_agent, request


async def ok(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    code, reply = await request(nc, subject, body)
    assert code == 200, (subject, reply)
    return reply


async def test_submit_deduplicates_studies_by_canonical_spec(tasks_service: ServiceHost, nc: Client) -> None:
    a = await ok(nc, "runs.submit", {"spec": {"b": [1, 2], "a": {"y": 1, "x": "é"}}})
    b = await ok(nc, "runs.submit", {"spec": {"a": {"x": "é", "y": 1}, "b": [1, 2]}, "run_id": "r-two"})
    assert a["spec_hash"] == b["spec_hash"] and a["study_created"] and not b["study_created"]
    assert b["run_id"] == "r-two" and a["run_id"] != "r-two"
    again = await ok(nc, "runs.submit", {"spec": {"b": [1, 2], "a": {"x": "é", "y": 1}}, "run_id": "r-two"})
    assert again["run_id"] == "r-two"  # a retried submit is harmless
    code, reply = await request(nc, "runs.submit", {"spec": {"other": 1}, "run_id": "r-two"})
    assert code == 409


async def test_claim_lifecycle_with_phases_release_and_audit_trail(
    tasks_service: ServiceHost, settings: Settings, nc: Client
) -> None:
    async with running(LOGS, settings):
        worker, other = new_agent("w"), new_agent("w")
        await ok(nc, "runs.submit", {"spec": {"n": 1}, "run_id": "low", "priority": 0})
        await ok(nc, "runs.submit", {"spec": {"n": 2}, "run_id": "high", "priority": 5})
        claim = await ok(nc, f"agents.{worker}.rpc.claim", {"lease_seconds": 30})
        run = claim["run"]
        assert run["run_id"] == "high" and run["attempt"] == 1 and run["spec"] == {"n": 2}
        assert run["claimed_by"] == worker and run["status"] == "running"
        # Nobody else may touch it.
        for subject, body in (("renew", {"run_id": "high"}), ("phase", {"run_id": "high", "phase": "execute"}),
                              ("release", {"run_id": "high", "status": "succeeded"})):  # fmt: skip
            code, reply = await request(nc, f"agents.{other}.rpc.{subject}", body)
            assert code == 409, reply
        code, _ = await request(nc, f"agents.{worker}.rpc.renew", {"run_id": "high", "attempt": 2})
        assert code == 409  # a stale attempt is fenced too
        renewed = await ok(nc, f"agents.{worker}.rpc.renew", {"run_id": "high", "lease_seconds": 60})
        assert renewed["lease_expires_at"] > run["lease_expires_at"]
        for phase in ("execute", "extract"):
            moved = await ok(
                nc, f"agents.{worker}.rpc.phase", {"run_id": "high", "phase": phase, "attempt": 1}
            )
            assert moved["phase"] == phase
        done = await ok(nc, f"agents.{worker}.rpc.release", {
            "run_id": "high", "status": "succeeded", "summary": {"keff": 1.02}, "artifacts": {"sp": "s3://x"}})  # fmt: skip
        assert (done["status"], done["phase"]) == ("succeeded", "done") and "claimed_by" not in done
        code, _ = await request(nc, f"agents.{worker}.rpc.release", {"run_id": "high", "status": "failed"})
        assert code == 409
        code, _ = await request(nc, f"agents.{worker}.rpc.renew", {"run_id": "missing"})
        assert code == 404
        detail = await ok(nc, "query.run", {"run_id": "high"})
        assert detail["summary"] == {"keff": 1.02} and detail["study"]["spec"] == {"n": 2}
        assert [e["type"] for e in detail["events"]] == [
            "queued", "claimed", "phase.execute", "phase.extract", "released.succeeded"]  # fmt: skip

        # The holder's audit trail in the logs service got the same transitions.
        async def trail() -> Any:
            code, page = await request(nc, "query.events", {"agent_ids": [worker], "run_id": "high"})
            return page["items"] if code == 200 and len(page["items"]) == 4 else None

        events = await eventually(trail, what="audit events")
        assert [e["type"] for e in events] == [
            "run.claimed", "run.phase.execute", "run.phase.extract", "run.released.succeeded"]  # fmt: skip
        page = await ok(nc, "query.runs", {"status": "queued"})
        assert [r["run_id"] for r in page["items"]] == ["low"]
        cancelled = await ok(nc, "runs.cancel", {"run_id": "low"})
        assert cancelled["status"] == "cancelled"
        assert (await request(nc, "runs.cancel", {"run_id": "low"}))[0] == 409
        assert (await ok(nc, f"agents.{worker}.rpc.claim", {}))["run"] is None


async def test_expired_lease_is_fenced_requeued_and_fails_after_max_attempts(
    tasks_service: ServiceHost, nc: Client
) -> None:
    a, b = new_agent("w"), new_agent("w")
    await ok(nc, "runs.submit", {"spec": {"x": 1}, "run_id": "flaky", "max_attempts": 2})
    first = (await ok(nc, f"agents.{a}.rpc.claim", {"lease_seconds": 0.3}))["run"]

    async def requeued() -> Any:
        return (await ok(nc, "query.run", {"run_id": "flaky"}))["status"] == "queued"

    await eventually(requeued, what="the expired lease to requeue the run")
    code, reply = await request(nc, f"agents.{a}.rpc.release", {"run_id": "flaky", "status": "succeeded"})
    assert code == 409 and "lease" in reply["error"]["message"]
    second = (await ok(nc, f"agents.{b}.rpc.claim", {"lease_seconds": 0.3}))["run"]
    assert (first["attempt"], second["attempt"]) == (1, 2)

    async def failed() -> Any:
        run = await ok(nc, "query.run", {"run_id": "flaky"})
        return run if run["status"] == "failed" else None

    run = await eventually(failed, what="the run to fail after its last attempt")
    assert "lease expired" in run["error"]["reason"] and run["error"]["attempts"] == 2
    assert [e["type"] for e in run["events"]][-1] == "failed"


@pytest.mark.parametrize(
    ("subject", "body", "code"),
    [
        ("runs.submit", {"spec": "not a map"}, 400),
        ("runs.submit", {"spec": {"$where": 1}}, 400),
        ("runs.submit", {"spec": {}, "max_attempts": 0}, 400),
        ("agents.w1.rpc.claim", {"lease_seconds": -1}, 400),
        ("agents.w1.rpc.phase", {"run_id": "r", "phase": "dance"}, 400),
        ("agents.w1.rpc.release", {"run_id": "r", "status": "cancelled"}, 400),
        ("query.run", {"run_id": "nope"}, 404),
        ("query.runs", {"status": "sleeping"}, 400),
    ],
)
async def test_bad_run_requests(
    tasks_service: ServiceHost, nc: Client, subject: str, body: Any, code: int
) -> None:
    got, reply = await request(nc, subject, body)
    assert got == code and reply["error"]["code"] == code


@pytest.mark.slow
async def test_20_workers_10000_runs_stalling_quarter_completes_each_exactly_once(
    tasks_service: ServiceHost, nc: Client
) -> None:
    total = 10_000
    sem = asyncio.Semaphore(64)

    async def submit(i: int) -> None:
        async with sem:
            await ok(
                nc,
                "runs.submit",
                {"spec": {"i": i % 100}, "run_id": f"run{i:05d}", "max_attempts": 50},
            )

    await asyncio.gather(*(submit(i) for i in range(total)))
    completions: collections.Counter[str] = collections.Counter()
    fenced = 0
    stalls = 0
    rng = random.Random(1)

    deadline = time.monotonic() + 150

    async def worker(name: str, stalls_sometimes: bool) -> None:
        nonlocal fenced, stalls
        # Until every run is completed (or the deadline): stalled runs come back to the
        # queue only when their lease expires, so an empty queue is no reason to stop.
        while len(completions) < total and time.monotonic() < deadline:
            run = (await ok(nc, f"agents.{name}.rpc.claim", {"lease_seconds": 1}))["run"]
            if run is None:
                await asyncio.sleep(0.2)  # the queue is empty for now; leases may still expire
                continue
            if stalls_sometimes and rng.random() < 0.05:
                stalls += 1
                await asyncio.sleep(1.3)  # stall past the 1 s lease
            code, reply = await request(nc, f"agents.{name}.rpc.release",
                                        {"run_id": run["run_id"], "status": "succeeded", "attempt": run["attempt"]})  # fmt: skip
            if code == 200:
                completions[run["run_id"]] += 1
            else:
                assert code == 409, reply
                fenced += 1

    await asyncio.gather(*(worker(f"worker{i:02d}", stalls_sometimes=i < 5) for i in range(20)))
    assert stalls > 0 and fenced > 0
    assert len(completions) == total
    assert max(completions.values()) == 1  # zero double completions
    page = await ok(nc, "query.runs", {"status": "succeeded", "limit": 1})
    assert page["items"]
    for status in ("queued", "running", "failed"):
        assert (await ok(nc, "query.runs", {"status": status, "limit": 1}))["items"] == []
