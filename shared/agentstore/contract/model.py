"""The shapes the contract is declared with: ingest subjects, endpoints, services, streams.

Only types and pure derivations live here; the declaration itself is in
``declaration.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import msgspec

Role = Literal["agent", "evaluator", "frontend"]
ROLES: tuple[Role, ...] = ("agent", "evaluator", "frontend")

DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_PREFIX = "deadletter"
# JetStream's advisory that a consumer gave up on a message (`.{stream}.{consumer}`): the
# services turn it into a dead letter (agentstore_server.bus.ingest.MaxDeliveries).
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
DUPLICATE_WINDOW_SECONDS = 120.0
# The identity service's registry of run-time identities (a JetStream key-value bucket).
IDENTITIES_BUCKET = "AGENTSTORE_IDENTITIES"
MAX_MESSAGE_BYTES = 1024 * 1024
INGEST_MAX_AGE_SECONDS = 7 * 24 * 3600.0
DEADLETTER_MAX_AGE_SECONDS = 30 * 24 * 3600.0

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)


@dataclass(frozen=True)
class IngestSubject:
    """`agents.{agent}.{kind}`: what an agent publishes and which stream keeps it.

    `body` is None for raw bytes (inline artifacts). For an `upsert` kind the
    body's `id` names an entity (a task, a conversation), not one update, so
    each update gets its own `Nats-Msg-Id` (`{agent}:{id}@{update}`).
    """

    kind: str
    body: type[msgspec.Struct] | None
    stream: str
    service: str
    summary: str
    upsert: bool = False
    # The service says `stored.{agent}.{kind}` (StoredNotice) once a batch of it is stored
    # (v1.14): live views (the console's tail) follow it instead of polling.
    notice: bool = False

    @property
    def address(self) -> str:
        return f"agents.{{agent}}.{self.kind}"

    @property
    def notice_address(self) -> str:
        return f"stored.{{agent}}.{self.kind}"

    @property
    def filter(self) -> str:
        """The stream's subject filter: exactly three tokens, so rpc subjects never match."""
        return f"agents.*.{self.kind}"

    def subject(self, agent: str) -> str:
        return f"agents.{agent}.{self.kind}"


@dataclass(frozen=True)
class Endpoint(Generic[Req, Rep]):
    """One request-reply endpoint.

    `subject` is how evaluators and frontends call it (`query.logs`), or the
    agent form for agent-only endpoints (`agents.{agent}.rpc.claim`). With the
    `agent` role, a `query.*`/`eval.*` endpoint is also served, scoped to the
    caller's own data, as `agents.{agent}.rpc.{subject}`. `after` names the
    stream whose writes `after: {stream, seq}` waits for. `replies` lists
    further reply shapes when one request can answer in two (a profile, or
    all profiles).
    """

    subject: str
    request: type[Req]
    reply: type[Rep]
    service: str
    roles: frozenset[Role]
    summary: str
    after: str | None = None
    replies: tuple[type[msgspec.Struct], ...] = ()

    @property
    def agent_only(self) -> bool:
        return self.subject.startswith("agents.{agent}.rpc.")

    @property
    def name(self) -> str:
        """The endpoint's short name: `query.logs`, `claim`, `eval.record` ..."""
        return self.subject.removeprefix("agents.{agent}.rpc.")

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every subject it is served on, `{agent}` as a parameter."""
        if self.agent_only:
            return (self.subject,)
        scoped = (f"agents.{{agent}}.rpc.{self.subject}",) if "agent" in self.roles else ()
        return (self.subject, *scoped)

    @property
    def reply_types(self) -> tuple[type[msgspec.Struct], ...]:
        return (self.reply, *self.replies)


def wildcard(address: str) -> str:
    """A subscription subject of an address: `{agent}` becomes `*`."""
    return address.replace("{agent}", "*")


def micro_name(address: str) -> str:
    """The NATS micro endpoint name of an address (`agents.{agent}.rpc.claim` → `agent_claim`)."""
    return address.replace("agents.{agent}.rpc.", "agent_").replace(".", "_")


def concrete(address: str, agent: str) -> str:
    return address.replace("{agent}", agent)


@dataclass(frozen=True)
class ServiceDecl:
    """A service: the streams it consumes (its durable consumer is named after it),
    and what it publishes or calls beyond its replies, acks and dead letters."""

    name: str
    streams: tuple[str, ...]
    publishes: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    # JetStream key-value buckets it keeps (its own state, not agents' data).
    buckets: tuple[str, ...] = ()

    @property
    def durable(self) -> str:
        return self.name


@dataclass(frozen=True)
class StreamSpec:
    """One JetStream stream: its name and the subjects it captures."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = INGEST_MAX_AGE_SECONDS

    @property
    def kinds(self) -> tuple[str, ...]:
        """The last subject token of each ingest subject (`logs`, `memories` ...)."""
        return tuple(s.rsplit(".", 1)[-1] for s in self.subjects)


def deadletter_subject(service: str) -> str:
    return f"{DEADLETTER_PREFIX}.{service}"
