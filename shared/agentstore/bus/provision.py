"""Declarative, idempotent provisioning of streams and durable pull consumers."""

from __future__ import annotations

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
from nats.js.errors import NotFoundError

from agentstore.bus.catalog import DUPLICATE_WINDOW_SECONDS, MAX_MESSAGE_BYTES, StreamSpec


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


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int = 1) -> None:
    """Create the stream, or bring an existing one to the declared config."""
    config = stream_config(spec)
    config.num_replicas = replicas
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


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
    await js.add_consumer(stream, consumer_config(durable, max_ack_pending, ack_wait))
