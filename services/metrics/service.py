"""The metrics service's declaration: time series with rollups, and agent profiles."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentstore.bus.catalog import METRICS
from agentstore.bus.ingest import Handler, Ingest
from agentstore.bus.rpc import Endpoint, query_endpoints
from agentstore.config import Settings
from agentstore.lifecycle.runner import ServiceSpec, Wiring
from agentstore.schemas.metrics import (
    BulkUpdate,
    CustodyTest,
    Learning,
    MetricsQuery,
    ProfileQuery,
    ResetProfile,
    SummaryQuery,
    UpdateProfile,
)
from agentstore.stores.postgres import PostgresStore
from services.metrics.profiles import Profiles
from services.metrics.rows import MIGRATIONS
from services.metrics.series import Retention, Series, decode_point

SWEEP_SECONDS = 3600.0


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    pg = await stack.enter_async_context(PostgresStore(settings.postgres_url))
    await pg.migrate("metrics", MIGRATIONS)
    series = Series(pg, Retention(**settings.metrics_retention_days))
    profiles = Profiles(pg)
    return Wiring(
        ingests=[
            Ingest(
                METRICS,
                durable="metrics",
                handlers={"metrics": Handler(decode_point, series.write)},
            )
        ],
        endpoints=[
            *query_endpoints("metrics", MetricsQuery, series.query),
            *query_endpoints("agent_metrics", ProfileQuery, profiles.query),
            Endpoint("query_summary", "query.summary", SummaryQuery, profiles.summary),
            Endpoint("eval_custody_test", "eval.custody_test", CustodyTest, profiles.custody_test),
            Endpoint("eval_learning", "eval.learning", Learning, profiles.learning),
            Endpoint("eval_metrics_update", "eval.agent_metrics.update", UpdateProfile, profiles.update),
            Endpoint("eval_metrics_bulk", "eval.agent_metrics.bulk", BulkUpdate, profiles.bulk),
            Endpoint("eval_metrics_reset", "eval.agent_metrics.reset", ResetProfile, profiles.reset),
        ],
        checks={"postgres": pg.ping},
        background=[series.sweeper(SWEEP_SECONDS)],
    )


SPEC = ServiceSpec(name="metrics", build=build)
