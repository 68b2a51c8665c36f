"""A JetStream pull fetch that waits per arrival, not per message.

nats-py's `PullSubscription.fetch` awaits `asyncio.wait_for(queue.get())` for every
message of a batch: a timer and a task each, which profiled as the largest share of
an ingest service's CPU (bench.ingest_metrics). The server sends a batch in a burst,
so its messages are already queued when the first one is: this fetch waits only
when the queue is empty and takes everything queued at once. The protocol is
nats-py's own (ADR-13): a `no_wait` request for what is there now, and only when
that finds nothing a lingering one that returns on its first messages.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError

# The server's word that a request will deliver nothing more.
_DONE = frozenset({api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT})
_TEMPORARY = frozenset({api.StatusCode.CONFLICT, "409"})
# Ask the server to end a lingering request a little before our own deadline.
_EXPIRES_MARGIN = 0.05


async def fetch(sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages; at least one, or `asyncio.TimeoutError` after `timeout`."""
    inner = sub._sub
    assert inner is not None and inner._pending_queue is not None
    queue: asyncio.Queue[Msg] = inner._pending_queue
    msgs: list[Msg] = []

    def take(msg: Msg) -> bool:
        """Keep a message; True when it is the status that ends the current request."""
        inner._pending_size -= len(msg.data)
        status = JetStreamContext.is_status_msg(msg)
        if not status:
            msgs.append(msg)
            return False
        if status in _DONE or status in _TEMPORARY:
            return True
        if status == api.StatusCode.CONTROL_MESSAGE:  # a heartbeat
            return False
        raise APIError.from_msg(msg)

    # What earlier requests delivered after their fetch returned (their statuses are stale).
    while not queue.empty() and len(msgs) < batch:
        msg = queue.get_nowait()
        inner._pending_size -= len(msg.data)
        if not JetStreamContext.is_status_msg(msg):
            msgs.append(msg)
    if len(msgs) >= batch:
        return msgs

    deadline = time.monotonic() + timeout

    async def drain(first_burst: bool) -> None:
        """Take messages until the request ends, the batch is full or the deadline passes;
        with `first_burst`, also stop once the queue runs dry after some arrived."""
        while len(msgs) < batch:
            if queue.empty():
                if first_burst and msgs:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    msg = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
            else:
                msg = queue.get_nowait()
            if take(msg):
                return

    nc = sub._nc
    await nc.publish(
        sub._nms, msgspec.json.encode({"batch": batch - len(msgs), "no_wait": True}), sub._deliver
    )
    await drain(first_burst=False)
    if msgs:
        return msgs
    remaining = deadline - time.monotonic() - _EXPIRES_MARGIN
    if remaining <= 0:
        raise TimeoutError
    await nc.publish(sub._nms, msgspec.json.encode({"batch": batch, "expires": int(remaining * 1e9)}),
                     sub._deliver)  # fmt: skip
    await drain(first_burst=True)
    if not msgs:
        raise TimeoutError
    return msgs
