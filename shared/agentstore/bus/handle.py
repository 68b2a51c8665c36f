"""A service's handle on NATS for its handlers: bound by the runner once connected."""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck

from agentstore.errors import Unavailable


class BusHandle:
    def __init__(self) -> None:
        self._nc: Client | None = None

    def bind(self, nc: Client) -> None:
        self._nc = nc

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise Unavailable("not connected to NATS yet")
        return self._nc

    async def publish(self, subject: str, body: Any, msg_id: str) -> PubAck:
        """A JetStream publish, deduplicated by msg_id."""
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return await self.nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": msg_id})

    async def request(self, subject: str, body: Any, timeout: float) -> Msg:
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return await self.nc.request(subject, data, timeout=timeout)
