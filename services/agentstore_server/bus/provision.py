"""Declarative, idempotent provisioning of streams and durable pull consumers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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

# The backstop behind the ingest loop's own isolation: a message delivered this many times
# without being settled (a process that dies on it, a write that hangs past ack_wait) is
# given up by JetStream, which says so in an advisory; `agentstore_server.bus.ingest.MaxDeliveries`
# dead-letters it. Deliveries during a store outage count too (one per ~10 s, the nak
# delay's cap), so those messages are put back on their subject instead.
MAX_DELIVER = 20


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
    """Create the stream, or bring an existing one to the declared config.

    Streams allow atomic batch publishes (`allow_atomic`, nats-server 2.12+): clients
    publish in batches with one fsynced PubAck each. nats-py's StreamConfig has no
    such field, so the config goes out as a raw `$JS.API.STREAM.CREATE|UPDATE`.
    """
    config = stream_config(spec)
    config.num_replicas = replicas
    body = {**config.as_dict(), "allow_atomic": True}

    async def provision() -> None:
        try:
            await js.stream_info(spec.name)
        except NotFoundError:
            await _stream_api(js, "CREATE", spec.name, body)
            return
        await _stream_api(js, "UPDATE", spec.name, body)

    await _patiently(provision, f"for stream {spec.name}")


async def _stream_api(js: JetStreamContext, verb: str, name: str, body: dict[str, Any]) -> None:
    # JetStreamContext keeps its connection and API prefix private; the raw request is the
    # documented JetStream API all the same.
    nc, prefix = js._nc, js._prefix
    reply = await nc.request(f"{prefix}.STREAM.{verb}.{name}", json.dumps(body).encode(), timeout=js._timeout)
    answer = json.loads(reply.data)
    error = answer.get("error")
    if error:
        if error.get("code") == 503:
            raise ServiceUnavailableError(description=error.get("description"))
        raise ConfigError(f"JetStream refused to {verb.lower()} stream {name}: {error.get('description')}")


def consumer_config(
    durable: str, max_ack_pending: int, ack_wait: float, max_deliver: int = MAX_DELIVER
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        # The backstop: JetStream gives up after this many deliveries and says so in an
        # advisory, which the service turns into a dead letter (or, during an outage, puts
        # the message back): `agentstore_server.bus.ingest.MaxDeliveries`.
        max_deliver=max_deliver,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
    )


async def ensure_consumer(
    js: JetStreamContext, stream: str, durable: str, *, max_ack_pending: int, ack_wait: float,
    max_deliver: int = MAX_DELIVER,
) -> None:  # fmt: skip
    """Create the durable pull consumer or update it in place (same name, new limits)."""
    config = consumer_config(durable, max_ack_pending, ack_wait, max_deliver)
    await _patiently(lambda: js.add_consumer(stream, config), f"for consumer {stream}/{durable}")
