"""Run-time identities (v1.6): what the identity service issued, and revoking one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from agentstore.schemas.common import AgentId, Name, Reply, Strict

IdentityKind = Literal["agent"]


class RevokeIdentity(Strict):
    """Cut an identity's connections and refuse its logins from now on."""

    kind: IdentityKind
    id: AgentId
    # Who asks (v1.14), as the caller says (`agentstore auth revoke` sends user@host and its
    # NATS identity): NATS tells a responder nothing of its caller, so it is a record, not a
    # proof. Who may revoke at all is the evaluator role's permission.
    by: Name | None = None


class Revoked(Reply):
    kind: IdentityKind
    id: AgentId
    revoked_at: datetime
    # Connections the server was asked to close (its live logins).
    kicked: int


class UnrevokeIdentity(Strict):
    """Let a revoked identity log in again (v1.13): an operator's undo of a revoke."""

    kind: IdentityKind
    id: AgentId


class Unrevoked(Reply):
    kind: IdentityKind
    id: AgentId
    # When it had been revoked; None when it was not revoked (nothing changed).
    revoked_at: datetime | None = None


class IdentitiesQuery(Strict):
    kind: IdentityKind | None = None
    revoked: bool | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


class IdentityItem(Reply):
    kind: IdentityKind
    id: str
    issued_at: datetime  # the first login
    last_login: datetime
    logins: int
    revoked_at: datetime | None = None
    revoked_by: str | None = None  # v1.14: the revoke's `by`


class Identities(Reply):
    items: list[IdentityItem]
