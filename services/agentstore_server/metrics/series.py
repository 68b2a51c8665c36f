"""Time series: `agents.{agent}.metrics` → PostgreSQL `metric_points` with rollups, and
`query.metrics`.

Rollups are kept at ingest in two tiers, 1 minute and 1 hour, each with its
own retention. A bucketed query reads the coarsest tier that answers it
exactly: the bucket width and the since/until bounds must be multiples of
the tier, and the tier must still hold the range (raw points and 1-minute
rollups age out sooner).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from agentstore.errors import BadRequest
from agentstore.schemas.common import decode_cursor, encode_cursor, iso, ms_of, to_ms
from agentstore.schemas.metrics import LatestMetricsQuery, MetricIn, MetricNamesQuery, MetricsQuery
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.metrics.db import MetricsDb, PointRow, Range

log = logging.getLogger("agentstore.metrics")

TIERS = (3600, 60)  # coarsest first


@dataclass(frozen=True)
class Retention:
    """Days each tier keeps; rollups outlive the raw points they summarise."""

    raw_days: float = 7
    minute_days: float = 30
    hour_days: float = 400

    def days(self, tier: int) -> float:
        return {0: self.raw_days, 60: self.minute_days, 3600: self.hour_days}[tier]


def decode_point(envelope: Envelope) -> PointRow:
    point = envelope.decode(MetricIn)
    return PointRow(envelope.agent, point, to_ms(point.ts or envelope.received))


class Series:
    def __init__(self, db: MetricsDb, retention: Retention) -> None:
        self.db = db
        self.retention = retention

    async def write(self, rows: Sequence[PointRow]) -> Mapping[int, str]:
        # A point repeated inside one batch would be inserted once but counted twice.
        unique = list({(r.agent, r.point.id): r for r in rows}.values())
        await self.db.ingest_points(unique, TIERS)
        return {}

    async def names(self, ctx: RequestContext, q: MetricNamesQuery) -> dict[str, Any]:
        return {"names": await self.db.metric_names(ctx.scope(q.agent_ids))}

    async def latest(self, ctx: RequestContext, q: LatestMetricsQuery) -> dict[str, Any]:
        ctx.check_agent(q.agent_id)
        experiments: dict[str, dict[str, dict[str, Any]]] = {}
        for row in await self.db.latest_values(q.agent_id, q.experiment_ids):
            experiments.setdefault(row["experiment_id"], {})[row["name"]] = {
                "value": row["value"], "ts": iso(row["ts"])}  # fmt: skip
        return {"agent_id": q.agent_id, "experiments": experiments}

    async def query(self, ctx: RequestContext, q: MetricsQuery) -> dict[str, Any]:
        agents = ctx.scope(q.agent_ids)
        where = Range(q.name, agents, q.experiment_id, q.since, q.until)
        next_cursor = None
        if q.bucket_seconds is None:
            tier = 0
            rows = await self.db.raw_points(where, raw_after(q.cursor), q.limit + 1)
            if len(rows) > q.limit:
                last = rows[q.limit - 1]
                next_cursor = encode_cursor("raw", last["agent_id"], last["ts"].isoformat(), last["id"])
        else:
            tier = self.tier_for(q.bucket_seconds, q.since, q.until)
            after = bucket_after(q.cursor, tier)
            if tier == 0:
                rows = await self.db.raw_buckets(where, q.bucket_seconds, q.agg, after, q.limit + 1)
            else:
                rows = await self.db.rollup_buckets(where, q.bucket_seconds, q.agg, tier, after, q.limit + 1)
            if len(rows) > q.limit:
                last = rows[q.limit - 1]
                next_cursor = encode_cursor(f"bucket{tier}", last["agent_id"], last["at"])
        series: dict[str, list[list[Any]]] = {}
        for row in rows[: q.limit]:
            series.setdefault(row["agent_id"], []).append([row["at"], row["value"]])
        return {
            "name": q.name,
            "tier_seconds": tier,
            "series": [{"agent_id": a, "points": p} for a, p in series.items()],
            "next_cursor": next_cursor,
        }

    def tier_for(self, bucket: int, since: datetime | None, until: datetime | None) -> int:
        """The coarsest tier that answers exactly (0: raw points).

        A tier is exact when the bucket width and both bounds are multiples of
        it; rollups are built from every point at ingest and outlive the finer
        tiers, so the coarsest aligned tier is also the one that still holds
        the range longest.
        """
        for tier in TIERS:
            bounds = (t for t in (since, until) if t is not None)
            if bucket % tier == 0 and all(ms_of(t) % (tier * 1000) == 0 for t in bounds):
                return tier
        return 0

    def sweeper(self, every_seconds: float) -> Periodic:
        return Periodic("metrics retention sweep", every_seconds, self.sweep_once)

    async def sweep_once(self) -> None:
        now = datetime.now(UTC)
        await self.db.sweep_points(now - timedelta(days=self.retention.raw_days))
        for tier in TIERS:
            await self.db.sweep_rollups(tier, now - timedelta(days=self.retention.days(tier)))


def raw_after(cursor: str | None) -> tuple[str, datetime, str] | None:
    """The last raw point of the previous page; 400 for a cursor of another kind of query."""
    if cursor is None:
        return None
    kind, agent, ts, id = decode_cursor(cursor, 4)
    return (
        (agent, _when(ts), id) if kind == "raw" and isinstance(agent, str) and isinstance(id, str) else _bad()
    )


def bucket_after(cursor: str | None, tier: int) -> tuple[str, datetime] | None:
    """The last bucket of the previous page (same tier); 400 for a cursor of another query."""
    if cursor is None:
        return None
    kind, agent, at = decode_cursor(cursor, 3)
    return (agent, _when(at)) if kind == f"bucket{tier}" and isinstance(agent, str) else _bad()


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        _bad()


def _bad() -> NoReturn:
    raise BadRequest("malformed cursor; pass back next_cursor of the same query exactly as received")
