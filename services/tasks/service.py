"""The tasks service's declaration.

Its stream is provisioned so agents' publishes are durably accepted now;
the handlers that store them arrive with the tasks service issue, and then
consume everything that waited in the stream (deliver policy: all).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentstore.bus.catalog import TASKS
from agentstore.config import Settings
from agentstore.lifecycle.runner import ServiceSpec, Wiring


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    return Wiring(streams=[TASKS])


SPEC = ServiceSpec(name="tasks", build=build)
