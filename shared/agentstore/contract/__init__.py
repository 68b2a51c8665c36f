"""The wire contract as code: declared once in ``declaration.py``, looked up here.

Everything that names a subject (streams, permissions, AsyncAPI, clients,
the services' endpoint binding) asks this package; nothing lists a subject
twice.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

# Every endpoint by its constant (contract.QUERY_LOGS ...), ENDPOINTS, INGEST and SERVICES: the
# declaration is the one place an endpoint is written.
from agentstore.contract.declaration import *  # noqa: F403
from agentstore.contract.declaration import ENDPOINTS, INGEST, SERVICES
from agentstore.contract.model import (
    DEADLETTER_MAX_AGE_SECONDS,
    DEADLETTER_PREFIX,
    DEADLETTER_STREAM,
    DUPLICATE_WINDOW_SECONDS,
    IDENTITIES_BUCKET,
    MAX_DELIVERIES_ADVISORY,
    MAX_MESSAGE_BYTES,
    ROLES,
    Endpoint,
    IngestSubject,
    Role,
    ServiceDecl,
    StreamSpec,
    concrete,
    deadletter_subject,
    micro_name,
    wildcard,
)
from agentstore.errors import ConfigError


def _streams() -> dict[str, StreamSpec]:
    names = dict.fromkeys(i.stream for i in INGEST)
    return {name: StreamSpec(name, tuple(i.filter for i in INGEST if i.stream == name)) for name in names}


# Every ingest stream, in declaration order, with the subjects its kinds give it.
STREAMS: dict[str, StreamSpec] = _streams()
INGEST_STREAMS: tuple[StreamSpec, ...] = tuple(STREAMS.values())
DEADLETTER = StreamSpec(DEADLETTER_STREAM, (f"{DEADLETTER_PREFIX}.>",), DEADLETTER_MAX_AGE_SECONDS)

INGEST_BY_KIND: dict[str, IngestSubject] = {i.kind: i for i in INGEST}
# The kind whose body a Struct is (raw artifacts have none).
KIND_OF_BODY: dict[type[msgspec.Struct], str] = {i.body: i.kind for i in INGEST if i.body is not None}
# By short name: `query.logs`, `claim`, `eval.record` ...
ENDPOINT_BY_NAME: dict[str, Endpoint] = {e.name: e for e in ENDPOINTS}  # type: ignore[type-arg]
SERVICE_BY_NAME: dict[str, ServiceDecl] = {s.name: s for s in SERVICES}


def endpoint(name: str) -> Endpoint:  # type: ignore[type-arg]
    """An endpoint by short name (`query.logs`, `claim`); KeyError names the known ones."""
    try:
        return ENDPOINT_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no endpoint {name!r}; the contract has {sorted(ENDPOINT_BY_NAME)}") from None


def endpoints_of(service: str) -> tuple[Endpoint, ...]:  # type: ignore[type-arg]
    return tuple(e for e in ENDPOINTS if e.service == service)


def ingest_of(service: str) -> tuple[IngestSubject, ...]:
    return tuple(i for i in INGEST if i.service == service)


def require_bound(service: str, what: str, declared: Iterable[str], given: Iterable[str]) -> None:
    """A service binds exactly what the contract gives it: a missing or undeclared name is a
    ConfigError at start (`what`: "handler" for endpoints, "ingest handler" for kinds)."""
    declared, given = set(declared), set(given)
    missing, unknown = declared - given, given - declared
    if missing or unknown:
        raise ConfigError(
            f"service {service}: no {what} for {sorted(missing)}; "
            f"{what}s for names the contract does not give it: {sorted(unknown)}"
        )


def callable_by(role: Role) -> tuple[Endpoint, ...]:  # type: ignore[type-arg]
    return tuple(e for e in ENDPOINTS if role in e.roles)


__all__ = [
    "DEADLETTER",
    "DEADLETTER_MAX_AGE_SECONDS",
    "DEADLETTER_PREFIX",
    "DEADLETTER_STREAM",
    "DUPLICATE_WINDOW_SECONDS",
    "ENDPOINTS",
    "ENDPOINT_BY_NAME",
    "IDENTITIES_BUCKET",
    "INGEST",
    "INGEST_BY_KIND",
    "INGEST_STREAMS",
    "KIND_OF_BODY",
    "MAX_DELIVERIES_ADVISORY",
    "MAX_MESSAGE_BYTES",
    "ROLES",
    "SERVICES",
    "SERVICE_BY_NAME",
    "STREAMS",
    "Endpoint",
    "IngestSubject",
    "Role",
    "ServiceDecl",
    "StreamSpec",
    "callable_by",
    "concrete",
    "deadletter_subject",
    "endpoint",
    "endpoints_of",
    "ingest_of",
    "micro_name",
    "require_bound",
    "wildcard",
]
