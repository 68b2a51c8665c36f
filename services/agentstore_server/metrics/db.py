"""The metrics service's one door to PostgreSQL: a typed method per named query.

The SQL is in `queries.sql` (named parameters); nothing else in the service
writes SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentstore.schemas.metrics import Agg, MetricIn
from agentstore_server.stores import pgwire
from agentstore_server.stores.pgwire import json_text
from agentstore_server.stores.postgres import Gateway, Record, load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))
MIGRATIONS = Path(__file__).with_name("migrations")
JSON_COLUMNS = frozenset(
    {"test_history", "learning_patterns", "improvement_suggestions", "capabilities", "config"}
)


def to_wire(row: Any) -> dict[str, Any]:
    return pgwire.to_wire(row, JSON_COLUMNS)


@dataclass(slots=True)  # one per message: slots, no frozen __setattr__
class PointRow:
    agent: str
    point: MetricIn
    ts: datetime


@dataclass(frozen=True)
class Range:
    """Which points a series query reads."""

    name: str
    agent_ids: list[str] | None
    experiment_id: str | None
    since: datetime | None
    until: datetime | None

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "agent_ids": self.agent_ids, "experiment_id": self.experiment_id,
                "since": self.since, "until": self.until}  # fmt: skip


# Where a page of a series ended: (agent, ts, id) of a raw point, (agent, bucket start) of a bucket.
RawAfter = tuple[str, datetime, str]
BucketAfter = tuple[str, datetime]


class MetricsDb(Gateway):
    """Points, rollups and profiles (`transaction()` from Gateway)."""

    # -- series ------------------------------------------------------------------
    async def metric_names(self, agent_ids: list[str] | None) -> list[str]:
        return [r["name"] for r in await self.run.fetch(Q["metric_names"], agent_ids=agent_ids)]

    async def latest_values(self, agent_id: str, experiment_ids: Sequence[str]) -> list[Record]:
        ids = list(experiment_ids)
        return await self.run.fetch(Q["latest_values"], agent_id=agent_id, experiment_ids=ids)

    async def ingest_points(self, rows: Sequence[PointRow], tiers: Sequence[int]) -> None:
        await self.run.execute(
            Q["ingest_points"],
            agent_ids=[r.agent for r in rows],
            ids=[r.point.id for r in rows],
            names=[r.point.name for r in rows],
            tss=[r.ts for r in rows],
            values=[r.point.value for r in rows],
            experiment_ids=[r.point.experiment_id for r in rows],
            task_ids=[r.point.task_id for r in rows],
            tags=[json_text(r.point.tags) for r in rows],
            tiers=list(tiers),
        )

    async def raw_points(self, where: Range, after: RawAfter | None, limit: int) -> list[Record]:
        agent, ts, id = after or (None, None, None)
        return await self.run.fetch(
            Q["raw_points"], **where.params(), after_agent=agent, after_ts=ts, after_id=id, limit=limit
        )

    async def raw_buckets(
        self, where: Range, bucket_seconds: int, agg: Agg, after: BucketAfter | None, limit: int
    ) -> list[Record]:
        agent, bucket = after or (None, None)
        return await self.run.fetch(
            Q["raw_buckets"], **where.params(), bucket_seconds=bucket_seconds, agg=agg,
            after_agent=agent, after_bucket=bucket, limit=limit,
        )  # fmt: skip

    async def rollup_buckets(
        self, where: Range, bucket_seconds: int, agg: Agg, tier: int, after: BucketAfter | None, limit: int
    ) -> list[Record]:
        agent, bucket = after or (None, None)
        return await self.run.fetch(
            Q["rollup_buckets"], **where.params(), bucket_seconds=bucket_seconds, agg=agg, tier=tier,
            after_agent=agent, after_bucket=bucket, limit=limit,
        )  # fmt: skip

    async def sweep_points(self, before: datetime) -> None:
        await self.run.execute(Q["sweep_points"], before=before)

    async def sweep_rollups(self, tier: int, before: datetime) -> None:
        await self.run.execute(Q["sweep_rollups"], tier=tier, before=before)

    # -- profiles ----------------------------------------------------------------
    async def get_profile(self, agent_id: str) -> Record | None:
        return await self.run.fetchrow(Q["get_profile"], agent_id=agent_id)

    async def set_profile(self, agent_id: str, fields_json: str) -> Record | None:
        return await self.run.fetchrow(Q["set_profile"], agent_id=agent_id, fields=fields_json)

    async def all_profiles(self, after: str, limit: int) -> list[Record]:
        return await self.run.fetch(Q["all_profiles"], after=after, limit=limit)

    async def ensure_profile(self, agent_id: str) -> None:
        await self.run.execute(Q["ensure_profile"], agent_id=agent_id)

    async def apply_custody_test(
        self, agent_id: str, passed: bool, xp: int, tested_at: datetime, entry: dict[str, Any],
        history_size: int, xp_per_level: int,
    ) -> Record | None:  # fmt: skip
        return await self.run.fetchrow(
            Q["apply_custody_test"], agent_id=agent_id, passed=passed, xp=xp, tested_at=tested_at,
            entry=json_text(entry), history_size=history_size, xp_per_level=xp_per_level,
        )  # fmt: skip

    async def apply_learning(
        self, agent_id: str, learning_score: float | None, success_rate: float | None,
        failure_rate: float | None, pass_rate: float | None, patterns: list[str], suggestions: list[str],
        patterns_cap: int = 100, suggestions_cap: int = 50,
    ) -> Record | None:  # fmt: skip
        return await self.run.fetchrow(
            Q["apply_learning"], agent_id=agent_id, learning_score=learning_score, success_rate=success_rate,
            failure_rate=failure_rate, pass_rate=pass_rate, patterns=json_text(patterns),
            suggestions=json_text(suggestions), patterns_cap=patterns_cap, suggestions_cap=suggestions_cap,
        )  # fmt: skip

    async def update_profile(self, agent_id: str, updates: dict[str, Any]) -> Record | None:
        return await self.run.fetchrow(Q["update_profile"], agent_id=agent_id, updates=json_text(updates))

    async def reset_profile(self, agent_id: str) -> Record | None:
        return await self.run.fetchrow(Q["reset_profile"], agent_id=agent_id)

    async def summary(self) -> Record | None:
        return await self.run.fetchrow(Q["summary"])


__all__ = ["MIGRATIONS", "MetricsDb", "PointRow", "Q", "Range", "to_wire"]
