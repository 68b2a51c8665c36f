"""Declarative, idempotent provisioning of streams and durable pull consumers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError, ServiceUnavailableError

from agentstore.contract import DUPLICATE_WINDOW_SECONDS, MAX_MESSAGE_BYTES, StreamSpec
from agentstore.errors import ConfigError

T = TypeVar("T")


def stream_config(spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_seconds,
        max_msg_size=MAX_MESSAGE_BYTES,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=1,
    )


async def _patiently(call: Callable[[], Awaitable[T]], what: str, timeout: float = 60.0) -> T:
    """JetStream answers only once it has a meta leader (a cluster starting, a node
    restarting): retry timeouts and "unavailable" until `timeout`, then give up loudly."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return await call()
        except (NatsTimeoutError, ServiceUnavailableError) as exc:
            if time.monotonic() + delay > deadline:
                raise ConfigError(f"JetStream did not answer {what} within {timeout:g} s: {exc}") from exc
            await asyncio.sleep(delay)  # back off while JetStream elects its leaders
            delay = min(delay * 2, 2.0)


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    """Create the stream, or bring an existing one to the declared config."""
    config = stream_config(spec)
    config.num_replicas = replicas

    async def provision() -> None:
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(config)
            return
        await js.update_stream(config)

    await _patiently(provision, f"for stream {spec.name}")


def consumer_config(durable: str, max_ack_pending: int, ack_wait: float) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        # Transient failures are retried until stored: never give up on a message.
        max_deliver=-1,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
    )


async def ensure_consumer(
    js: JetStreamContext, stream: str, durable: str, *, max_ack_pending: int, ack_wait: float
) -> None:
    """Create the durable pull consumer or update it in place (same name, new limits)."""
    config = consumer_config(durable, max_ack_pending, ack_wait)
    await _patiently(lambda: js.add_consumer(stream, config), f"for consumer {stream}/{durable}")
