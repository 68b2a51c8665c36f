"""The batching consumer loop and the one place that decides ack, nak or dead letter.

For each fetched batch: decode every message (invalid ones are dead-lettered
and acked), write the valid ones of each kind in one bulk idempotent
operation, and ack them only after the write committed. A transient store
failure naks the batch with a growing delay and pauses the worker; it is
never dead-lettered. Cancellation never acks.

A write that fails otherwise (the store refused the batch, or raised
something no adapter classified) is split in halves until the failing
message is alone, so its neighbours are stored; a message that fails alone
the same way POISON_ATTEMPTS times is dead-lettered with the exception as
its reason. Nothing one agent sends can hold up the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from agentstore import contract
from agentstore.contract import MAX_DELIVERIES_ADVISORY, StreamSpec, deadletter_subject
from agentstore.errors import InvalidMessage, StoreMisconfigured, StoreRejected, StoreUnavailable
from agentstore.schemas.common import AGENT_ID_PATTERN, EPOCH, StoredNotice, decode_message
from agentstore_server.bus.fetch import fetch
from agentstore_server.bus.hooks import FaultReporter, IngestMetrics, NoFaults
from agentstore_server.bus.provision import MAX_DELIVER

log = logging.getLogger("agentstore.ingest")

S = TypeVar("S", bound=msgspec.Struct)

_AGENT_RE = re.compile(AGENT_ID_PATTERN)


class Envelope:
    """An ingest message as a handler sees it (a plain slotted class: one is made per
    message on the hot path)."""

    __slots__ = ("_ts_ns", "agent", "data", "headers", "kind", "stream_seq")

    def __init__(
        self, agent: str, kind: str, data: bytes, headers: Mapping[str, str], stream_seq: int, ts_ns: int
    ) -> None:
        self.agent, self.kind, self.data, self.headers = agent, kind, data, headers
        self.stream_seq, self._ts_ns = stream_seq, ts_ns

    @property
    def received(self) -> datetime:
        """JetStream's timestamp of the message: the default `ts`, stable across redelivery."""
        return EPOCH + timedelta(microseconds=self._ts_ns // 1000)

    def decode(self, kind: type[S]) -> S:
        """The body as `kind`, validated; a body naming another agent than the subject's
        is refused (services never trust an agent id from a body)."""
        message = decode_message(self.data, kind)
        body_agent = getattr(message, "agent_id", None)
        if body_agent is not None and body_agent != self.agent:
            raise InvalidMessage(
                f"body agent_id {body_agent!r} differs from the subject's agent {self.agent!r}"
            )
        return message


# decode: Envelope -> item, raising InvalidMessage. write: items -> {index: reason}
# for items the store refused for good; raises StoreUnavailable when it is down.
# follow_up: the stored items -> None, for what is derived from them (an agent marked seen).
Decode = Callable[[Envelope], Any]
Write = Callable[[Sequence[Any]], Awaitable[Mapping[int, str]]]
FollowUp = Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    decode: Decode
    write: Write
    # Run on the items `write` stored, before their acks (so a redelivery repeats it: it
    # must be idempotent). Its own stage, timed apart from the write.
    follow_up: FollowUp | None = None


@dataclass(frozen=True)
class Ingest:
    """One durable pull consumer on one stream, with a handler per subject kind."""

    stream: StreamSpec
    durable: str
    handlers: Mapping[str, Handler]


def ingests(service: str, handlers: Mapping[str, Handler]) -> list[Ingest]:
    """The service's consumers, one per stream the contract gives it, each with the
    handlers of that stream's kinds; a missing or undeclared kind is a ConfigError."""
    declared = {i.kind: i for i in contract.ingest_of(service)}
    contract.require_bound(service, "ingest handler", declared, handlers)
    decl = contract.SERVICE_BY_NAME[service]
    return [
        Ingest(
            contract.STREAMS[stream],
            decl.durable,
            {kind: handlers[kind] for kind, i in declared.items() if i.stream == stream},
        )
        for stream in decl.streams
    ]


def ack_info(msg: Msg) -> tuple[int, int, int]:
    """(stream sequence, timestamp in ns, deliveries) of a JetStream message, read from its
    reply subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
    (or the v2 form with domain and account hash first). Cheaper than `msg.metadata`,
    which builds objects the hot path never uses; falls back to it for another form."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[7]), int(tokens[4])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[9]), int(tokens[6])
    meta = msg.metadata
    ts = meta.timestamp or datetime.now(UTC)
    return meta.sequence.stream, (ts - EPOCH) // timedelta(microseconds=1) * 1000, meta.num_delivered or 1


# Times a message must fail alone, the same way, before it is dead-lettered as poison: an
# unclassified error once may be a passing glitch; the same one three times, a second apart
# or more (the nak delays), is the message.
POISON_ATTEMPTS = 3
# Suspects remembered per worker (stream sequence -> failure): a bound, not a working set.
_MAX_SUSPECTS = 10_000


def retry_delay(num_delivered: int) -> float:
    """0.5 s, 1 s, 2 s ... capped at 10 s."""
    return float(min(0.5 * 2 ** max(num_delivered - 1, 0), 10.0))


def dead_headers(
    reason: str, subject: str, stream: str, seq: int, original: Mapping[str, str] | None
) -> dict[str, str]:
    """The headers of a dead letter (docs/CONTRACT.md): why, where from, and the original's
    own headers that a redrive needs back. Its Nats-Msg-Id makes a second dead-lettering of
    the same message (two workers, a retried publish) a duplicate JetStream drops."""
    headers = {
        "Dead-Reason": reason[:1024],
        "Dead-Subject": subject,
        "Dead-Stream": stream,
        "Dead-Seq": str(seq),
        "Nats-Msg-Id": f"dead:{stream}:{seq}",
    }
    for name in ("Nats-Msg-Id", "Content-Type", "Artifact-Name", "Task-Id"):
        if original and name in original:
            headers[f"Original-{name}"] = original[name]
    return headers


@dataclass
class IngestWorker:
    """Fetches from a bound pull subscription until told to stop."""

    service: str
    ingest: Ingest
    js: JetStreamContext
    metrics: IngestMetrics
    batch: int
    stopping: asyncio.Event
    faults: FaultReporter = field(default_factory=NoFaults)
    fetch_timeout: float = 1.0
    # Where `stored.{agent}.{kind}` notices go (kinds the contract marks `notice`); None: nowhere.
    nc: Client | None = None
    _failures: int = field(default=0, init=False)
    # Messages that failed alone with an unclassified error: seq -> (failure, times).
    _suspects: dict[int, tuple[str, int]] = field(default_factory=dict, init=False)

    @property
    def failing(self) -> bool:
        """The last batch or fetch failed for want of the store or the bus (not the data)."""
        return self._failures > 0

    async def run(self) -> None:
        sub = await self.js.pull_subscribe_bind(self.ingest.durable, stream=self.ingest.stream.name)
        try:
            while not self.stopping.is_set():
                try:
                    msgs = await fetch(sub, self.batch, self.fetch_timeout)
                except (TimeoutError, NatsTimeoutError):
                    continue
                except ConnectionClosedError:
                    if self.stopping.is_set():
                        return
                    raise
                except NatsError as exc:
                    # A node lost, a leader being elected, a reconnect: wait, fetch again.
                    log.warning("fetch from %s failed, retrying: %r", self.ingest.stream.name, exc)
                    await self._pause()
                    continue
                # A stop request lets the batch in hand finish; only a hard
                # cancel (drain deadline passed) interrupts it, and then nothing is acked.
                try:
                    ok = await self.process(msgs)
                except NatsError as exc:
                    # Acks or naks could not be sent: the unacked messages come back after
                    # ack_wait, and their writes are idempotent.
                    log.warning("lost the connection mid-batch, messages will be redelivered: %r", exc)
                    ok = False
                if not ok:
                    await self._pause()
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()

    async def _pause(self) -> None:
        """After a transient failure, wait before fetching again (or until stop)."""
        self._failures += 1
        delay = retry_delay(self._failures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=delay)

    async def process(self, msgs: Sequence[Msg]) -> bool:
        """Store one batch. Returns False when the store was unavailable."""
        started = time.perf_counter()
        stages = self.metrics.stage_seconds
        # The batch's oldest message (a worker's fetches come in stream order) waited from
        # the stream's store to here: "queued"; to its ack, below: "stored", the freshness a
        # reader sees (same host clocks; across hosts it also holds their skew).
        in_stream = ack_info(msgs[0])[1] / 1e9 if msgs else time.time()
        stages.labels(stage="queued").observe(max(time.time() - in_stream, 0.0))
        groups: dict[str, list[tuple[Msg, Any]]] = {}
        for msg in msgs:
            try:
                kind, item = self._decode(msg)
            except InvalidMessage as exc:
                await self._dead_letter(msg, str(exc))
                continue
            except Exception as exc:
                # Decoding is pure: what fails once fails every time. A bug for this input,
                # never a reason to hold the stream.
                log.exception("decoding %s raised; dead-lettering it", msg.subject)
                await self._dead_letter(msg, f"decoding raised {type(exc).__name__}: {exc}")
                continue
            groups.setdefault(kind, []).append((msg, item))
        stages.labels(stage="decode").observe(time.perf_counter() - started)
        healthy = True
        for kind, pairs in groups.items():
            healthy &= await self._write(kind, pairs)
        if healthy:
            self._failures = 0
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        stages.labels(stage="stored").observe(max(time.time() - in_stream, 0.0))
        return healthy

    def _decode(self, msg: Msg) -> tuple[str, Any]:
        tokens = msg.subject.split(".")
        if len(tokens) != 3 or not _AGENT_RE.match(tokens[1]):
            raise InvalidMessage(f"subject {msg.subject!r} is not agents.{{agent}}.{{kind}}")
        kind = tokens[2]
        handler = self.ingest.handlers.get(kind)
        if handler is None:
            raise InvalidMessage(f"{self.service} has no handler for {msg.subject!r}")
        stream_seq, ts_ns, _ = ack_info(msg)
        envelope = Envelope(tokens[1], kind, msg.data, msg.headers or {}, stream_seq, ts_ns)
        return kind, handler.decode(envelope)

    async def _write(self, kind: str, pairs: list[tuple[Msg, Any]]) -> bool:
        handler = self.ingest.handlers[kind]
        where = f"{self.ingest.stream.name}/{kind}"
        stages = self.metrics.stage_seconds
        started = time.perf_counter()
        try:
            rejected = await handler.write([item for _, item in pairs])
            stages.labels(stage="write").observe(time.perf_counter() - started)
            if handler.follow_up is not None:
                started = time.perf_counter()
                stored = [item for i, (_, item) in enumerate(pairs) if i not in rejected]
                await self._follow_up(handler.follow_up, stored)
                stages.labels(stage="follow_up").observe(time.perf_counter() - started)
        except StoreMisconfigured as exc:
            # The deployment, not the data: keep every message (nak) and say so in readiness.
            self.faults.report(where, str(exc))
            await self._nak_all(kind, pairs)
            return False
        except StoreUnavailable as exc:
            log.warning("store unavailable for %s (%d messages), will retry: %s", kind, len(pairs), exc)
            await self._nak_all(kind, pairs)
            return False
        except StoreRejected as exc:
            if len(pairs) > 1:
                return await self._split(kind, pairs)  # a whole-batch refusal: find whose
            rejected = {0: str(exc)}
        except Exception as exc:
            # Not classified by any adapter: a bug, or data a driver chokes on. Isolated,
            # so that it holds up nobody else.
            if len(pairs) > 1:
                return await self._split(kind, pairs)
            await self._suspect(kind, pairs[0][0], exc)
            return True  # the store works: no pause for the others
        self.faults.clear(where)
        started = time.perf_counter()
        for index, (msg, _) in enumerate(pairs):
            reason = rejected.get(index)
            if reason is not None:
                await self._dead_letter(msg, f"store refused it: {reason}")
            else:
                await msg.ack()
                if self._suspects:
                    self._suspects.pop(ack_info(msg)[0], None)
        stages.labels(stage="ack").observe(time.perf_counter() - started)
        self.metrics.ingested.labels(kind=kind, outcome="stored").inc(len(pairs) - len(rejected))
        if self.nc is not None and contract.INGEST_BY_KIND[kind].notice:
            await self._notify(kind, [msg for i, (msg, _) in enumerate(pairs) if i not in rejected])
        return True

    async def _notify(self, kind: str, stored: Sequence[Msg]) -> None:
        """`stored.{agent}.{kind}` per agent of the batch, after its acks: live views wake on
        it. Core NATS, at most once: a lost notice only delays a view until the next one."""
        assert self.nc is not None
        newest: dict[str, tuple[int, int]] = {}  # agent -> (count, highest seq)
        for msg in stored:
            agent = msg.subject.split(".")[1]
            count, _ = newest.get(agent, (0, 0))
            newest[agent] = (count + 1, ack_info(msg)[0])  # a batch comes in stream order
        address = contract.INGEST_BY_KIND[kind].notice_address
        with contextlib.suppress(NatsError):  # closing or reconnecting: the data is stored anyway
            for agent, (count, seq) in newest.items():
                notice = StoredNotice(stream=self.ingest.stream.name, seq=seq, count=count)
                await self.nc.publish(contract.concrete(address, agent), msgspec.json.encode(notice))

    async def _follow_up(self, follow_up: FollowUp, stored: Sequence[Any]) -> None:
        """A handler's follow-up. The store being down or misconfigured keeps the batch (the
        write's own handling: nak, pause); anything else is logged and the batch still
        acked, since its data is stored and what is derived from it must not hold it."""
        if not stored:
            return
        try:
            await follow_up(stored)
        except (StoreUnavailable, StoreMisconfigured):
            raise
        except Exception:
            log.exception("the follow-up of a stored %s batch raised; acking the batch anyway",
                          self.ingest.stream.name)  # fmt: skip

    async def _split(self, kind: str, pairs: list[tuple[Msg, Any]]) -> bool:
        """Write each half on its own (in order), down to single messages: log2(n) rounds
        find one bad message among n, and every good one is stored."""
        half = len(pairs) // 2
        first = await self._write(kind, pairs[:half])
        second = await self._write(kind, pairs[half:])
        return first and second

    async def _suspect(self, kind: str, msg: Msg, exc: Exception) -> None:
        """A message that failed alone: nak it for another try later, or dead-letter it
        once it has failed the same way POISON_ATTEMPTS times."""
        seq, _, delivered = ack_info(msg)
        failure = f"{type(exc).__name__}: {exc}"
        before, times = self._suspects.get(seq, (failure, 0))
        times = times + 1 if before == failure else 1
        if times >= POISON_ATTEMPTS:
            self._suspects.pop(seq, None)
            await self._dead_letter(msg, f"writing it failed {times} times alone: {failure}")
            return
        if times == 1:
            log.error(
                "writing %s seq %d failed alone, will retry: %s", msg.subject, seq, failure, exc_info=exc
            )
        if len(self._suspects) >= _MAX_SUSPECTS:
            self._suspects.pop(next(iter(self._suspects)))
        self._suspects[seq] = (failure, times)
        await msg.nak(delay=retry_delay(delivered))
        self.metrics.ingested.labels(kind=kind, outcome="retried").inc()

    async def _nak_all(self, kind: str, pairs: list[tuple[Msg, Any]]) -> None:
        for msg, _ in pairs:
            await msg.nak(delay=retry_delay(ack_info(msg)[2]))
        self.metrics.ingested.labels(kind=kind, outcome="retried").inc(len(pairs))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        """Republish to deadletter.{service}, then ack; if that fails, nak."""
        seq = ack_info(msg)[0]
        headers = dead_headers(reason, msg.subject, self.ingest.stream.name, seq, msg.headers)
        try:
            await self.js.publish(deadletter_subject(self.service), msg.data, headers=headers)
        except Exception as exc:
            log.warning("dead-letter publish failed, will retry %s: %s", msg.subject, exc)
            await msg.nak(delay=retry_delay(ack_info(msg)[2]))
            return
        await msg.ack()
        kind = msg.subject.rsplit(".", 1)[-1]
        self.metrics.ingested.labels(kind=kind, outcome="deadlettered").inc()
        log.info("dead-lettered %s seq %d: %s", msg.subject, seq, reason)


@dataclass
class MaxDeliveries:
    """Subscribes to JetStream's max-deliveries advisories of a service's consumers (a queue
    group: one replica acts) and settles each message JetStream gave up on."""

    service: str
    nc: Client
    ingests: Sequence[Ingest]
    # True while the service's store or bus is failing: then a message reaching max_deliver
    # is not at fault, and goes back on its subject to be stored once the store is back.
    store_failing: Callable[[], bool]
    metrics: IngestMetrics
    _subs: list[Any] = field(default_factory=list, init=False)

    async def start(self) -> None:
        for ingest in self.ingests:
            subject = f"{MAX_DELIVERIES_ADVISORY}.{ingest.stream.name}.{ingest.durable}"
            self._subs.append(await self.nc.subscribe(subject, queue=f"agentstore-{self.service}",
                                                      cb=self._on_advisory))  # fmt: skip

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
        self._subs.clear()

    async def _on_advisory(self, advisory: Msg) -> None:
        try:
            event = msgspec.json.decode(advisory.data)
            stream, seq, deliveries = event["stream"], int(event["stream_seq"]), int(event["deliveries"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable max-deliveries advisory: %r", advisory.data[:200])
            return
        js = self.nc.jetstream()
        try:
            original = await js.get_msg(stream, seq)
        except NatsError as exc:
            log.warning("max deliveries reached for %s seq %d, but it cannot be read: %s", stream, seq, exc)
            return
        subject, data = original.subject or "", original.data or b""
        headers = dict(original.headers or {})
        kind = subject.rsplit(".", 1)[-1]
        try:
            if self.store_failing():
                # Not the message's fault: again at the end of the stream, without its
                # Nats-Msg-Id (the dedupe window would drop it); writes are idempotent.
                headers.pop("Nats-Msg-Id", None)
                await js.publish(subject, data, headers=headers or None)
                log.warning(
                    "%s seq %d reached max_deliver during an outage: put back on %s", stream, seq, subject
                )
                self.metrics.ingested.labels(kind=kind, outcome="requeued").inc()
                return
            reason = (f"delivered {deliveries} times without being stored or refused (max_deliver "
                      f"{MAX_DELIVER}): the service may have crashed or hung on it")  # fmt: skip
            await js.publish(deadletter_subject(self.service), data,
                             headers=dead_headers(reason, subject, stream, seq, headers))  # fmt: skip
        except NatsError as exc:
            log.error("could not settle %s seq %d after max deliveries: %s", stream, seq, exc)
            return
        self.metrics.ingested.labels(kind=kind, outcome="deadlettered").inc()
        log.error("dead-lettered %s seq %d: %s", subject, seq, reason)
