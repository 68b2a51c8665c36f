"""The metrics service's declaration: time series with rollups, and agent profiles."""

from __future__ import annotations

from contextlib import AsyncExitStack

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
                "query.metrics": series.query,
                "query.metric_names": series.names,
                "query.latest_metrics": series.latest,
                "query.agent_metrics": profiles.query,
                "query.summary": profiles.summary,
                "eval.custody_test": profiles.custody_test,
                "eval.learning": profiles.learning,
                "eval.agent_metrics.update": profiles.update,
                "eval.agent_metrics.create_or_update": profiles.create_or_update,
                "query.custody_metrics": profiles.custody,
                "eval.agent_metrics.bulk": profiles.bulk,
                "eval.agent_metrics.reset": profiles.reset,
            },
        ),
        checks={"postgres": pg.ping},
        background=[series.sweeper(SWEEP_SECONDS)],
    )


SPEC = ServiceSpec(name="metrics", build=build)
