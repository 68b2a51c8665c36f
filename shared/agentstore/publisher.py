"""Durable publishing at batch speed: what an agent publishes goes out as JetStream atomic
batches, one stream at a time, and every message keeps its own `Nats-Msg-Id`.

Why: with `sync_interval: always` a PubAck means "fsynced", and per-message
publishing is bound by the Python client's work per PubAck (~3-4k/s here);
one PubAck per batch of up to 1,000 messages keeps the same durability at
~10x the rate (MEASUREMENTS.md, batch publishing).

How (ADR-50): messages carry `Nats-Batch-Id` and `Nats-Batch-Sequence`; the
last one adds `Nats-Batch-Commit: 1` and is the only request. Its PubAck
(`seq` of the last message, `count`) acknowledges the whole batch, which is
stored entirely or not at all.

- A batch closes at `max_batch` messages or `linger` seconds after its first
  message, whichever comes first; at most `max_inflight` batches per stream
  are unacknowledged at once, and at most `window` messages are held
  (queued or unacknowledged), so a hot loop stays bounded.
- A commit that times out (or a connection lost mid-batch, a restarted
  server that abandoned the batch) is re-sent with the same message ids
  under a new batch id: if the first one was stored after all, JetStream
  refuses the second as a duplicate and nothing is stored twice.
- A batch JetStream refuses (a duplicate id inside it, a stream without
  `allow_atomic`, too many batches in flight on the server, one message too
  large) is published message by message: per-message deduplication keeps
  the neighbours of a duplicate, and only a message that can never be
  stored fails.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import PubAck
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from nats.protocol.command import hpub_cmd

from agentstore.bus.connect import Denials
from agentstore.errors import AgentstoreError, Forbidden, Unavailable
from agentstore.ids import new_id

log = logging.getLogger("agentstore.publisher")

MAX_BATCH = 1000  # the server's limit per atomic batch
# The nats-py internals `_post` writes through (checked once; otherwise plain `publish`).
_FAST_PATH = all(hasattr(Client, a) for a in ("_send_command", "_flush_pending", "is_draining_pubs"))
# Worth another try: a late PubAck, a stream leader being elected (on a cluster that is
# "no responders" for a moment too), a reconnect.
_TRANSIENT = (
    TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError, ServiceUnavailableError,
    ConnectionClosedError,
)  # fmt: skip


class BatchRefused(AgentstoreError):
    """JetStream refused an atomic batch as a whole (the reply's error)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('description', error)} (err_code {error.get('err_code')})")
        self.error = error


@dataclass
class _Message:
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass
class _Batch:
    stream: str
    messages: list[_Message] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    acked: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    sealed: bool = False


class _AckReply(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    count: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


class BatchPublisher:
    """Atomic-batch publishing for one connection; `publish` queues, `flush` waits."""

    def __init__(
        self,
        nc: Client,
        *,
        window: int = 10_000,
        max_batch: int = MAX_BATCH,
        linger: float = 0.005,
        max_inflight: int = 8,
        timeout: float = 10.0,
        retries: int = 5,
        denials: Denials | None = None,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be 1..{MAX_BATCH}")
        self.nc = nc
        self.max_batch = min(max_batch, window)  # a batch never waits for room it cannot get
        self.linger = linger
        self.timeout = timeout
        self.retries = retries
        self.denials = denials
        self._js = nc.jetstream(timeout=timeout, publish_async_max_pending=max(window, 1))
        self._window = asyncio.Semaphore(window)
        self._window_size = window
        self._inflight: dict[str, asyncio.Semaphore] = {}
        self._max_inflight = max_inflight
        self._open: dict[str, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.acked: dict[str, int] = {}  # stream -> highest acknowledged sequence
        self.failure: BaseException | None = None
        # What happened, for operators and tests: batches re-sent after a lost or late
        # PubAck, and batches published one by one after JetStream refused them.
        self.resent = 0
        self.unbatched = 0

    @property
    def full(self) -> bool:
        """Whether `publish` would wait for room in the window."""
        return self._window.locked()

    @property
    def held(self) -> int:
        """Messages queued or not yet acknowledged (at most `window`)."""
        return self._window_size - self._window._value

    async def publish(
        self,
        stream: str,
        subject: str,
        data: bytes,
        msg_id: str,
        headers: dict[str, str] | None = None,
        *,
        alone: bool = False,
    ) -> asyncio.Future[int]:
        """Queue one message into its stream's open batch (or, `alone`, send it by itself:
        large artifacts); returns the batch's future (the stream sequence its PubAck
        acknowledged up to)."""
        self._refuse_denied(subject)
        await self._window.acquire()
        if alone:
            single = _Batch(stream, [_Message(subject, data, {**(headers or {}), "Nats-Msg-Id": msg_id})])
            self._seal(single)
            return single.acked
        batch = self._open.get(stream)
        if batch is not None and msg_id in batch.ids:
            # The same id twice in one batch would make JetStream refuse the batch: close it,
            # so the repeat goes into the next one (and is deduplicated there).
            self._seal(batch)
            batch = None
        if batch is None:
            batch = self._open[stream] = _Batch(stream)
            if self.linger > 0:
                asyncio.get_running_loop().call_later(self.linger, self._seal, batch)
        batch.messages.append(_Message(subject, data, {**(headers or {}), "Nats-Msg-Id": msg_id}))
        batch.ids.add(msg_id)
        if len(batch.messages) >= self.max_batch or self.linger <= 0:
            self._seal(batch)
        return batch.acked

    def _seal(self, batch: _Batch) -> None:
        if batch.sealed:
            return
        batch.sealed = True
        if self._open.get(batch.stream) is batch:
            del self._open[batch.stream]
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def flush(self) -> dict[str, int]:
        """Send what is queued and wait for every PubAck; raises the first failure."""
        for batch in list(self._open.values()):
            self._seal(batch)
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
        self.check()
        return dict(self.acked)

    def _refuse_denied(self, *subjects: str) -> None:
        """Raise Forbidden when the server refused this connection a subject: waiting for a
        PubAck that cannot come, and retrying, would hide it for minutes."""
        if self.denials is None:
            return
        for subject in subjects:
            reason = self.denials.of(subject)
            if reason is not None:
                raise Forbidden(
                    f"{reason}: this connection's identity may not publish "
                    f"on {subject} (an agent publishes only on agents.<its id>.*)"
                )

    def check(self) -> None:
        """Raise (once) a failure of an earlier publish."""
        if self.failure is not None:
            failure, self.failure = self.failure, None
            if isinstance(failure, Forbidden):
                raise Forbidden(failure.message) from failure  # what to fix, said once
            raise AgentstoreError(f"an earlier publish failed: {failure}") from failure

    async def _send(self, batch: _Batch) -> None:
        limit = self._inflight.setdefault(batch.stream, asyncio.Semaphore(self._max_inflight))
        try:
            async with limit:
                seq = await self._deliver(batch)
            self.acked[batch.stream] = max(self.acked.get(batch.stream, 0), seq)
            batch.acked.set_result(seq)
        except Exception as exc:
            self.failure = self.failure or exc
            batch.acked.set_exception(exc)
            batch.acked.exception()  # retrieved: the failure is reported by check()/flush()
        finally:
            for _ in batch.messages:
                self._window.release()

    async def _deliver(self, batch: _Batch) -> int:
        if len(batch.messages) == 1:
            return await self._one_by_one(batch)
        for attempt in range(self.retries + 1):
            try:
                return await self._atomic(batch, self.timeout * 2**attempt)
            except BatchRefused as exc:
                log.debug("batch of %d refused (%s); publishing one by one", len(batch.messages), exc)
                self.unbatched += 1
                return await self._one_by_one(batch)
            except (*_TRANSIENT, NatsError) as exc:
                self._refuse_denied(*{m.subject for m in batch.messages})
                if attempt == self.retries:
                    raise Unavailable(
                        f"no PubAck for a batch of {len(batch.messages)} on {batch.stream} after "
                        f"{attempt + 1} tries: {exc!r}; is NATS up, and is the {batch.stream} stream "
                        "there (its service creates it)?"
                    ) from exc
                log.info("batch on %s not acknowledged (%r); re-sending it", batch.stream, exc)
                self.resent += 1
                await asyncio.sleep(0.05 * 2**attempt)  # back off before re-sending the batch
        raise AssertionError("unreachable")

    async def _atomic(self, batch: _Batch, timeout: float) -> int:
        """One try: the messages as one atomic batch under a fresh batch id."""
        batch_id = new_id()
        last = len(batch.messages)
        for n, message in enumerate(batch.messages, 1):
            headers = {**message.headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n)}
            if n < last:
                await self._post(message.subject, message.data, headers)
                continue
            headers["Nats-Batch-Commit"] = "1"
            reply = await self.nc.request(message.subject, message.data, timeout=timeout, headers=headers)
        ack = msgspec.json.decode(reply.data, type=_AckReply)
        if ack.error is not None:
            raise BatchRefused(ack.error)
        if ack.count != last:
            raise BatchRefused({"description": f"PubAck counted {ack.count} of {last} messages"})
        return ack.seq

    async def _post(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """A plain publish with headers, written straight to the connection's buffer.

        nats-py's `publish` validates and re-encodes every header of every message,
        which is a third of the client's time at batch speed; our header names and
        values are fixed ASCII tokens and ids (no CR/LF), so the HPUB frame is built
        here. Falls back to `publish` if the client's internals ever change.
        """
        nc: Any = self.nc
        if not _FAST_PATH or nc.is_closed or nc.is_draining_pubs or len(data) > nc.max_payload:
            await self.nc.publish(subject, data, headers=headers)
            return
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        hdr = f"NATS/1.0\r\n{head}\r\n".encode()
        await nc._send_command(hpub_cmd(subject, "", hdr, data))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    async def _one_by_one(self, batch: _Batch) -> int:
        """Per-message publishes with their ids: JetStream deduplicates each one, so a
        message retried after a lost PubAck is stored once."""
        pending, highest = list(batch.messages), 0
        refused: list[BaseException] = []
        for attempt in range(self.retries + 1):
            sent = [(m, await self._js.publish_async(m.subject, m.data, headers=m.headers)) for m in pending]
            pending, transient = [], None
            for message, future in sent:
                try:
                    ack: PubAck = await asyncio.wait_for(future, self.timeout * 2**attempt)
                    highest = max(highest, ack.seq)
                except _TRANSIENT as exc:
                    pending.append(message)
                    transient = exc
                except Exception as exc:  # JetStream refused this message for good
                    refused.append(exc)
            if not pending:
                break
            self._refuse_denied(*{m.subject for m in pending})
            if attempt == self.retries:
                raise Unavailable(f"no PubAck for {len(pending)} messages on {batch.stream}: {transient!r}")
            await asyncio.sleep(0.05 * 2**attempt)  # back off before re-sending
        if refused:
            total = len(batch.messages)
            log.warning("%d of %d messages on %s refused: %r", len(refused), total, batch.stream, refused[0])
            raise AgentstoreError(f"{len(refused)} message(s) refused by JetStream: {refused[0]!r}")
        return highest
