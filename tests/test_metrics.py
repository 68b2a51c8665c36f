"""metrics service: time series with rollup tiers, and agent profiles (seed 002)."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client

from agentstore_server.lifecycle.runner import ServiceHost
from tests.helpers import after, as_json, dead_letters, eventually, new_agent, publish_all, request

BASE = datetime(2026, 11, 20, tzinfo=UTC)


async def ok(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    code, reply = await request(nc, subject, body)
    assert code == 200, (subject, reply)
    return reply


async def test_rollup_tiers_agree_with_raw_points_for_every_aggregate(
    metrics_service: ServiceHost, nc: Client
) -> None:
    agents = [new_agent(), new_agent()]
    rng = random.Random(3)
    points = []
    for agent in agents:
        for i in range(600):
            ts = BASE + timedelta(seconds=rng.randrange(3 * 3600))
            points.append((agent, {"id": f"p{i}", "name": "loss", "value": rng.uniform(-5, 5),
                                   "ts": ts.isoformat(), "experiment_id": f"e{i % 2}"}))  # fmt: skip
    items = [(f"agents.{a}.metrics", as_json(b), None) for a, b in points]
    acks = await publish_all(nc, items + items[:200])  # redelivered points never count twice
    pos = after(acks[-1])
    since, until = BASE.isoformat(), (BASE + timedelta(hours=3)).isoformat()
    for agg in ("avg", "min", "max", "sum", "count", "last"):
        for bucket, tier in ((3600, 3600), (600, 60), (90, 0)):
            body = {"name": "loss", "agent_ids": agents, "since": since, "until": until,
                    "bucket_seconds": bucket, "agg": agg, "after": pos}  # fmt: skip
            got = await ok(nc, "query.metrics", body)
            assert got["tier_seconds"] == tier
            expected = expect(points, agents, bucket, agg)
            assert {s["agent_id"]: [p[0] for p in s["points"]] for s in got["series"]} == {
                a: [t for t, _ in expected[a]] for a in agents}  # fmt: skip
            for s in got["series"]:
                for (t, v), (et, ev) in zip(s["points"], expected[s["agent_id"]], strict=True):
                    assert t == et and math.isclose(v, ev, rel_tol=1e-9, abs_tol=1e-9), (
                        agg,
                        bucket,
                    )
    one = await ok(nc, "query.metrics", {"name": "loss", "agent_ids": agents[:1], "experiment_id": "e1",
                                         "bucket_seconds": 3600, "agg": "count"})  # fmt: skip
    assert sum(p[1] for p in one["series"][0]["points"]) == 300
    raw = await ok(nc, "query.metrics", {"name": "loss", "agent_ids": agents[:1]})
    assert len(raw["series"][0]["points"]) == 600 and raw["tier_seconds"] == 0


def expect(
    points: list[tuple[str, dict[str, Any]]], agents: list[str], bucket: int, agg: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for agent in agents:
        buckets: dict[int, list[tuple[str, str, float]]] = {}
        for a, p in points:
            if a != agent:
                continue
            ts = datetime.fromisoformat(p["ts"])
            key = int(ts.timestamp()) // bucket * bucket
            buckets.setdefault(key, []).append((p["ts"], p["id"], p["value"]))
        series = []
        for key in sorted(buckets):
            value = aggregate(agg, buckets[key])
            stamp = datetime.fromtimestamp(key, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            series.append((stamp, value))
        out[agent] = series
    return out


def aggregate(agg: str, rows: list[tuple[str, str, float]]) -> float:
    values = [v for _, _, v in rows]
    if agg == "avg":
        return sum(values) / len(values)
    if agg == "count":
        return float(len(values))
    if agg == "last":
        return max(rows)[2]  # newest ts, then highest id, as the service breaks ties
    return {"min": min, "max": max, "sum": sum}[agg](values)


async def test_bad_metrics_are_deadlettered(metrics_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    bad = [b'{"id": "a", "name": "x", "value": NaN}', b'{"id": "b", "name": "x", "value": 1e999}',
           as_json({"id": "c", "name": "x", "value": "1"}), as_json({"id": "d", "value": 1})]  # fmt: skip
    acks = await publish_all(nc, [(f"agents.{agent}.metrics", b, None) for b in bad]
                             + [(f"agents.{agent}.metrics", as_json({"id": "ok", "name": "x", "value": 2}), None)])  # fmt: skip
    got = await ok(nc, "query.metrics", {"name": "x", "agent_ids": [agent], "after": after(acks[-1])})
    assert [p[1] for p in got["series"][0]["points"]] == [2.0]
    assert len(await eventually(lambda: _n(dead_letters(nc), 4), what="dead letters")) == 4


async def _n(value: Any, n: int) -> Any:
    items = await value
    return items if len(items) >= n else None


async def test_100_concurrent_custody_results_lose_no_increment(
    metrics_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    results = [{"agent_id": agent, "passed": i % 4 != 0, "score": 80, "duration": 1.5, "xp_awarded": 3}
               for i in range(100)]  # fmt: skip
    await asyncio.gather(*(ok(nc, "eval.custody_test", r) for r in results))
    profile = await ok(nc, "query.agent_metrics", {"agent_id": agent})
    assert profile["total_tests_given"] == 100
    assert (profile["total_tests_passed"], profile["total_tests_failed"]) == (75, 25)
    assert profile["custody_xp"] == 300 and profile["xp"] == 300
    assert profile["custody_level"] == 4 and profile["level"] == 4
    assert len(profile["test_history"]) == 50
    assert math.isclose(profile["pass_rate"], 0.75)


async def test_custody_streaks_move_difficulty_up_and_down(metrics_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()

    async def test(passed: bool) -> Any:
        return await ok(
            nc,
            "eval.custody_test",
            {"agent_id": agent, "passed": passed, "score": 90, "duration": 1},
        )

    for _ in range(3):
        p = await test(True)
    assert (p["current_difficulty"], p["consecutive_successes"]) == ("standard", 3)
    for _ in range(3):
        p = await test(True)
    assert p["current_difficulty"] == "advanced"
    p = await test(False)
    assert (p["current_difficulty"], p["consecutive_failures"], p["consecutive_successes"]) == (
        "advanced",
        1,
        0,
    )
    p = await test(False)
    assert p["current_difficulty"] == "standard"
    assert p["xp"] == 6 * 14 + 2  # 5 + round(90 / 10) per pass, 1 per failure


async def test_learning_update_bulk_reset_and_summary(metrics_service: ServiceHost, nc: Client) -> None:
    a, b = new_agent(), new_agent()
    for i in range(60):
        p = await ok(nc, "eval.learning", {"agent_id": a, "learning_score": 10.0 + i, "patterns": [f"p{i}a", f"p{i}b"],
                                           "suggestions": [f"s{i}"]})  # fmt: skip
    assert len(p["learning_patterns"]) == 100 and p["learning_patterns"][-1] == "p59b"
    assert len(p["improvement_suggestions"]) == 50 and p["total_learning_cycles"] == 60
    await ok(nc, "eval.learning", {"agent_id": b, "success_rate": 0.5})
    p = await ok(
        nc,
        "eval.agent_metrics.update",
        {"agent_id": a, "updates": {"xp": 250, "level": 3, "config": {"k": 1}}},
    )
    assert (p["xp"], p["level"], p["config"]) == (250, 3, {"k": 1})
    code, reply = await request(nc, "eval.agent_metrics.update", {"agent_id": a, "updates": {"shoe_size": 3}})
    assert code == 400 and "shoe_size" in reply["error"]["message"]
    code, _ = await request(nc, "eval.agent_metrics.update", {"agent_id": "ghost", "updates": {"xp": 1}})
    assert code == 404
    # Bulk is all or nothing: one unknown agent rolls back the update of the known one.
    code, _ = await request(nc, "eval.agent_metrics.bulk", {"updates": {a: {"xp": 1}, "ghost": {"xp": 1}}})
    assert code == 404
    assert (await ok(nc, "query.agent_metrics", {"agent_id": a}))["xp"] == 250
    done = await ok(nc, "eval.agent_metrics.bulk", {"updates": {a: {"prestige": 1}, b: {"status": "busy"}}})
    assert done["updated"][b]["status"] == "busy"
    summary = await ok(nc, "query.summary", {})
    assert {a, b} <= set(summary["agents"]) and summary["total_agents"] >= 2
    assert summary["summary"]["total_xp"] >= 250
    reset = await ok(nc, "eval.agent_metrics.reset", {"agent_id": a})
    assert (reset["xp"], reset["level"], reset["learning_patterns"], reset["prestige"]) == (
        0,
        1,
        [],
        0,
    )
    assert (await request(nc, "eval.agent_metrics.reset", {"agent_id": "ghost"}))[0] == 404
    mine = await ok(nc, f"agents.{b}.rpc.query.agent_metrics", {})
    assert mine["agent_id"] == b
    assert (await request(nc, f"agents.{b}.rpc.query.agent_metrics", {"agent_id": a}))[0] == 403


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("eval.custody_test", {"agent_id": "a", "passed": True, "score": 101, "duration": 1}),
        ("eval.custody_test", {"agent_id": "a", "passed": "yes", "score": 1, "duration": 1}),
        ("eval.learning", {"agent_id": "a", "success_rate": 1.5}),
        ("query.metrics", {"name": "x", "agg": "median"}),
        ("query.metrics", {"name": "x", "bucket_seconds": 0}),
        ("eval.agent_metrics.bulk", {"updates": {}}),
    ],
)
async def test_bad_metrics_requests_get_400(
    metrics_service: ServiceHost, nc: Client, subject: str, body: Any
) -> None:
    code, reply = await request(nc, subject, body)
    assert code == 400 and reply["error"]["code"] == 400


async def test_restore_includes_the_metrics_profile(
    metrics_service: ServiceHost, tasks_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    await ok(nc, "eval.custody_test", {"agent_id": agent, "passed": True, "score": 50, "duration": 2})
    restore = await ok(nc, f"agents.{agent}.rpc.restore", {})
    assert restore["metrics"]["total_tests_given"] == 1


async def test_a_restore_fails_loudly_when_the_metrics_service_answers_with_a_fault(
    tasks_service: ServiceHost, nc: Client
) -> None:
    """Away (no responders) or nothing known (404): the restore answers without metrics. A
    fault (here a 500 from whatever answers query.agent_metrics) is not swallowed: the
    restore fails with it rather than quietly dropping the agent's metrics."""
    agent = new_agent()
    restore = await ok(nc, f"agents.{agent}.rpc.restore", {})
    assert restore["metrics"] is None  # no metrics service: away

    async def broken(msg: Any) -> None:
        await nc.publish(
            msg.reply, b"", headers={"Nats-Service-Error-Code": "500", "Nats-Service-Error": "boom"}
        )

    sub = await nc.subscribe("query.agent_metrics", cb=broken)
    try:
        code, reply = await request(nc, f"agents.{agent}.rpc.restore", {})
        assert code >= 500 and "query.agent_metrics answered 500 boom" in reply["error"]["message"], reply
    finally:
        await sub.unsubscribe()


async def test_long_series_come_in_pages_that_add_up_to_the_whole(
    metrics_service: ServiceHost, nc: Client
) -> None:
    agents = sorted([new_agent(), new_agent()])
    points = [(a, {"id": f"q{i}", "name": "paged", "value": float(i),
                   "ts": (BASE + timedelta(seconds=7 * i)).isoformat()})
              for a in agents for i in range(530)]  # fmt: skip
    acks = await publish_all(nc, [(f"agents.{a}.metrics", as_json(b), None) for a, b in points])
    pos = after(acks[-1])

    async def all_pages(body: dict[str, Any]) -> tuple[list[tuple[str, str, float]], int]:
        got: list[tuple[str, str, float]] = []
        cursor, pages = None, 0
        while True:
            page = await ok(nc, "query.metrics", {**body, "cursor": cursor, "after": pos})
            pages += 1
            got += [(s["agent_id"], t, v) for s in page["series"] for t, v in page_points(s)]
            cursor = page["next_cursor"]
            if cursor is None:
                return got, pages

    raw, pages = await all_pages({"name": "paged", "agent_ids": agents, "limit": 100})
    assert pages == 11 and len(raw) == 1060 and len(set(raw)) == 1060
    assert raw == sorted(raw, key=lambda r: (r[0], r[1]))  # by agent, then time
    whole = await ok(nc, "query.metrics", {"name": "paged", "agent_ids": agents, "after": pos})
    assert whole["next_cursor"] is None
    assert raw == [(s["agent_id"], t, v) for s in whole["series"] for t, v in page_points(s)]
    for bucket, tier in ((60, 60), (90, 0)):
        body = {"name": "paged", "agent_ids": agents, "bucket_seconds": bucket, "agg": "count"}
        paged, pages = await all_pages({**body, "limit": 7})
        once = await ok(nc, "query.metrics", {**body, "after": pos})
        assert once["tier_seconds"] == tier and pages > 1
        assert paged == [(s["agent_id"], t, v) for s in once["series"] for t, v in page_points(s)]
        assert sum(v for _, _, v in paged) == 1060
    # A cursor belongs to its query: a raw page's cursor is no bucket query's.
    first = await ok(nc, "query.metrics", {"name": "paged", "agent_ids": agents, "limit": 5, "after": pos})
    code, reply = await request(nc, "query.metrics", {"name": "paged", "bucket_seconds": 60,
                                                       "cursor": first["next_cursor"]})  # fmt: skip
    assert code == 400 and "cursor" in reply["error"]["message"]


def page_points(series: dict[str, Any]) -> list[tuple[str, float]]:
    return [(t, v) for t, v in series["points"]]
