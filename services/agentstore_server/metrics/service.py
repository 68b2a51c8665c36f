"""The metrics service's declaration: time series with rollups, and agent profiles."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentstore import contract
from agentstore.errors import ConfigError
from agentstore_server.bus.ingest import Handler, ingests
from agentstore_server.bus.rpc import bind
from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring
from agentstore_server.metrics.db import MIGRATIONS, MetricsDb
from agentstore_server.metrics.profiles import HISTORY_CAPS, Profiles
from agentstore_server.metrics.series import Retention, Series, decode_point
from agentstore_server.stores.postgres import PostgresStore

SWEEP_SECONDS = 3600.0


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    pg = await stack.enter_async_context(PostgresStore(settings.postgres_url))
    await pg.migrate("metrics", MIGRATIONS)
    db = MetricsDb(pg)
    series = Series(db, Retention(**settings.metrics_retention_days))
    unknown = set(settings.metrics_history_caps) - set(HISTORY_CAPS)
    if unknown:
        raise ConfigError(f"METRICS_HISTORY_CAPS names unknown histories {sorted(unknown)}; "
                          f"the histories are {sorted(HISTORY_CAPS)}")  # fmt: skip
    profiles = Profiles(db, settings.metrics_history_caps)
    return Wiring(
        ingests=ingests("metrics", {"metrics": Handler(decode_point, series.write)}),
        endpoints=bind(
            "metrics",
            {
                contract.QUERY_METRICS: series.query,
                contract.QUERY_METRIC_NAMES: series.names,
                contract.QUERY_LATEST_METRICS: series.latest,
                contract.QUERY_AGENT_METRICS: profiles.query,
                contract.QUERY_SUMMARY: profiles.summary,
                contract.EVAL_CUSTODY_TEST: profiles.custody_test,
                contract.EVAL_LEARNING: profiles.learning,
                contract.EVAL_AGENT_METRICS_UPDATE: profiles.update,
                contract.EVAL_AGENT_METRICS_CREATE_OR_UPDATE: profiles.create_or_update,
                contract.QUERY_CUSTODY_METRICS: profiles.custody,
                contract.EVAL_AGENT_METRICS_BULK: profiles.bulk,
                contract.EVAL_AGENT_METRICS_RESET: profiles.reset,
            },
        ),
        checks={"postgres": pg.ping},
        background=[series.sweeper(SWEEP_SECONDS)],
    )


SPEC = ServiceSpec(name="metrics", build=build)
