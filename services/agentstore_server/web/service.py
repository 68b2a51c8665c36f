"""The web service's declaration: no stream, no endpoint; an HTTP console over NATS."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentstore_server.bus.handle import BusHandle
from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring
from agentstore_server.web.console import Console


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    bus = BusHandle()
    started: list[Console] = []

    async def serve() -> None:
        # The runner binds `bus` to the service's NATS connection before background loops start.
        console = Console(settings, bus.nc)
        started.append(console)
        await console.serve()

    async def listening() -> None:
        if not started or started[0].port is None:
            raise ConnectionError(f"not listening on {settings.web_host}:{settings.web_port} yet")

    return Wiring(background=[serve], bus=bus, checks={"http": listening})


SPEC = ServiceSpec(name="web", build=build)
