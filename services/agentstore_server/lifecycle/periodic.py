"""Periodic work of a service (retention sweeps, lease expiry), written once.

A `Periodic` runs `work` every `every_seconds` until cancelled. A store that
is down is a passing failure: logged with the task's name and tried again
next period. Anything else is a bug: logged with the name and re-raised, so
the runner stops the service (a dead loop must not go unnoticed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentstore.errors import StoreError

log = logging.getLogger("agentstore.periodic")


@dataclass(frozen=True)
class Periodic:
    name: str
    every_seconds: float
    work: Callable[[], Awaitable[Any]]

    async def __call__(self) -> None:
        while True:
            try:
                done = await self.work()
                if done:
                    log.info("%s: %s", self.name, done)
            except StoreError as exc:
                log.warning("%s failed, next try in %g s: %s", self.name, self.every_seconds, exc)
            except Exception:
                log.exception("%s died", self.name)
                raise
            await asyncio.sleep(self.every_seconds)  # the task's period
