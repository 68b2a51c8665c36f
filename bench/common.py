"""Shared bench plumbing: a throwaway stack of real servers and a result table."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentstore.config import Settings
from agentstore.stack import servers
from agentstore.stack.servers import Server


@dataclass
class BenchStack:
    root: Path
    nats: Server
    mongo: Server
    postgres: Server

    def settings(self, **extra: object) -> Settings:
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            nats_url=self.nats.url,
            mongodb_url=self.mongo.url,
            mongodb_db=f"bench{uuid.uuid4().hex[:8]}",
            postgres_url=self.postgres.url,
            **extra,  # type: ignore[arg-type]
        )

    def service_env(self, settings: Settings) -> dict[str, str]:
        return {**os.environ, **servers.service_env(settings)}


@contextlib.contextmanager
def bench_stack() -> Iterator[BenchStack]:
    """NATS, PostgreSQL, and FerretDB on that PostgreSQL: the stack `make up` runs."""
    with tempfile.TemporaryDirectory(prefix="agentstore-bench-") as tmp:
        root = Path(tmp)
        started: list[Server] = []
        try:
            nats = servers.start_nats(root / "nats", servers.free_port(), servers.free_port())
            started.append(nats)
            pg = servers.start_postgres(root / "pg", servers.free_port())
            started.append(pg)
            ferret_pg = servers.create_database(pg.address, "ferretdb")
            mongo = servers.start_mongo(
                root / "mongo", servers.free_port(), servers.free_port(), postgres_url=ferret_pg
            )
            started.append(mongo)
            yield BenchStack(root, nats, mongo, pg)
        finally:
            for server in reversed(started):
                server.stop()


def report(
    title: str, rows: list[tuple[str, float]], unit: str, ratios: list[tuple[str, str, str, float]]
) -> None:
    """Print figures, then each ratio a/b next to its target."""
    print(f"\n== {title}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>12,.0f} {unit}")
    values = dict(rows)
    for label, a, b, target in ratios:
        ratio = values[a] / values[b] if values[b] else float("inf")
        verdict = "meets" if ratio >= target else "BELOW"
        print(f"  {label}: {ratio:.2f} (target >= {target:g}: {verdict})")
