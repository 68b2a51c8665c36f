"""The logs service's declaration: its stream, handlers, endpoints and store."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentstore.bus.catalog import LOGS
from agentstore.bus.ingest import Handler, Ingest
from agentstore.bus.rpc import query_endpoints
from agentstore.config import Settings
from agentstore.lifecycle.runner import ServiceSpec, Wiring
from agentstore.schemas.logs import LogsQuery
from agentstore.stores.mongo import MongoStore
from services.logs.logs import Logs, decode_log


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    mongo = await stack.enter_async_context(MongoStore(settings.mongodb_url, settings.mongodb_db))
    logs = Logs(mongo)
    await logs.setup()
    return Wiring(
        ingests=[Ingest(LOGS, durable="logs", handlers={"logs": Handler(decode_log, logs.write)})],
        endpoints=query_endpoints("logs", LogsQuery, logs.query),
        checks={"mongodb": mongo.ping},
    )


SPEC = ServiceSpec(name="logs", build=build)
