"""Run-time identities (v1.6): what the identity service issued, and revoking one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from agentstore.schemas.common import AgentId, Reply, Strict

IdentityKind = Literal["agent"]


class RevokeIdentity(Strict):
    """Cut an identity's connections and refuse its logins from now on."""

    kind: IdentityKind
    id: AgentId


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


class Identities(Reply):
    items: list[IdentityItem]
