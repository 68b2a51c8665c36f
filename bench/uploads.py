"""Screenshot uploads: 200 KiB images per second through the artifacts service
(inline `agents.{agent}.artifacts` → MinIO put → metadata row → ack), next to
direct miniopy-async puts into the same MinIO in the same run. Target >= 0.5.

    python -m bench.uploads [--files 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from agentstore.contract import STREAMS
from agentstore_server.devstack import servers
from agentstore_server.stores.objects import ObjectStore
from bench.common import bench_stack, report, service_drain


async def direct(endpoint: str, images: list[bytes], concurrency: int = 16) -> float:
    async with ObjectStore(endpoint, servers.S3_ACCESS_KEY, servers.S3_SECRET_KEY, secure=False) as s3:
        await s3.ensure_bucket("direct")
        sem = asyncio.Semaphore(concurrency)

        async def put(i: int, data: bytes) -> None:
            async with sem:
                await s3.put("direct", f"agent/_/{i}-shot.png", data, "image/png")

        started = time.perf_counter()
        await asyncio.gather(*(put(i, d) for i, d in enumerate(images)))
        return len(images) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    images = [os.urandom(200 * 1024) for _ in range(args.files)]
    with bench_stack() as stack:
        minio = servers.start_minio(stack.root / "minio", servers.free_port(), servers.free_port())
        try:
            baseline = await direct(minio.address, images)
            db = servers.create_database(stack.postgres.address, f"u{uuid.uuid4().hex[:8]}")
            settings = stack.settings(postgres_url=db, s3_endpoint=minio.address, ingest_batch=50)
            items = [
                (f"agents.agent{i % 10}.artifacts", data,
                 {"Nats-Msg-Id": f"agent{i % 10}:{i}", "Content-Type": "image/png",
                  "Artifact-Name": "shot.png"})
                for i, data in enumerate(images)
            ]  # fmt: skip
            service = await service_drain(stack, "artifacts", STREAMS["ARTIFACTS"], items, settings)
        finally:
            minio.stop()
    report(
        f"200 KiB screenshots, {args.files:,} files",
        [("artifacts service", service), ("direct puts", baseline)],
        "files/s",
        [("service / direct", "artifacts service", "direct puts", 0.5)],
    )


if __name__ == "__main__":
    asyncio.run(main())
