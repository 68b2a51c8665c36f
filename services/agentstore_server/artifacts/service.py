"""The artifacts service's declaration: inline and presigned uploads, metadata queries."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentstore import contract
from agentstore_server.artifacts.checkpoints import Checkpoints, Views
from agentstore_server.artifacts.db import MIGRATIONS
from agentstore_server.artifacts.files import Artifacts
from agentstore_server.bus.handle import BusHandle
from agentstore_server.bus.ingest import Handler, ingests
from agentstore_server.bus.rpc import bind
from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring
from agentstore_server.stores.objects import ObjectStore
from agentstore_server.stores.postgres import PostgresStore


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    pg = await stack.enter_async_context(PostgresStore(settings.postgres_url))
    await pg.migrate("artifacts", MIGRATIONS)
    objects = await stack.enter_async_context(
        ObjectStore(
            settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
            secure=settings.s3_secure, public=settings.s3_public(), region=settings.s3_region,
        )
    )  # fmt: skip
    bus = BusHandle()
    artifacts = Artifacts(pg, objects, settings.s3_buckets, bus)
    await artifacts.setup()
    checkpoints = Checkpoints(pg, objects, settings.s3_checkpoints_bucket)
    await checkpoints.setup()
    views = Views(pg)
    return Wiring(
        ingests=ingests(
            "artifacts",
            {
                "artifacts": Handler(artifacts.decode_inline, artifacts.write_inline),
                "uploads": Handler(artifacts.decode_upload, artifacts.write_uploads),
            },
        ),
        endpoints=bind(
            "artifacts",
            {
                contract.PRESIGN: artifacts.presign,
                contract.QUERY_FILES: artifacts.query_files,
                contract.QUERY_SCREENSHOTS: artifacts.query_screenshots,
                contract.QUERY_FILE_URL: artifacts.file_url,
                contract.FILES_DELETE: artifacts.delete_files,
                contract.CHECKPOINT_PUT: checkpoints.put,
                contract.CHECKPOINT_WRITES: checkpoints.put_writes,
                contract.CHECKPOINT_GET: checkpoints.get,
                contract.CHECKPOINT_LIST: checkpoints.listing,
                contract.CHECKPOINT_VALUES: checkpoints.values,
                contract.CHECKPOINT_HISTORY: checkpoints.history,
                contract.CHECKPOINT_DELETE: checkpoints.delete,
                contract.CHECKPOINT_COPY: checkpoints.copy,
                contract.CHECKPOINT_PRUNE: checkpoints.prune,
                contract.QUERY_THREADS: views.threads,
                contract.QUERY_CHECKPOINTS: views.steps,
            },
        ),
        checks={"postgres": pg.ping, "s3": objects.ping},
        background=[checkpoints.sweeper(settings.checkpoint_ttl_sweep_seconds)],
        bus=bus,
    )


SPEC = ServiceSpec(name="artifacts", build=build)
