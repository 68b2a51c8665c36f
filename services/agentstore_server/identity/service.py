"""The identity service: NATS's auth callout for agents nobody listed, and revocation.

nats-server (auth.conf from `agentstore auth`) sends every login that is not a static user to
`$SYS.REQ.USER.AUTH` in the IDENTITY account. This service answers: a login as
`agent-<id>` presenting the fleet's enrollment token (or that agent's own token) gets a user
JWT of the AGENTSTORE account with exactly the permissions a listed agent has; anything else,
and a revoked id, is refused with a reason the server logs. Replicas share the work (a queue
group) and the registry (a key-value bucket). `identity.revoke` marks an identity revoked and
asks the server (system account) to close its recorded connections; its reconnects then meet
the refusal.
"""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import msgspec
import nkeys
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentstore import auth, contract
from agentstore.bus.connect import connect_nats
from agentstore.errors import ConfigError
from agentstore.schemas.common import AGENT_ID_PATTERN
from agentstore.schemas.identity import (
    Identities,
    IdentitiesQuery,
    Revoked,
    RevokeIdentity,
    Unrevoked,
    UnrevokeIdentity,
)
from agentstore_server.bus import service_accounts
from agentstore_server.bus.handle import BusHandle
from agentstore_server.bus.rpc import RequestContext, bind
from agentstore_server.bus.service_accounts import looks_like_jwt
from agentstore_server.config import Settings
from agentstore_server.identity import tokens
from agentstore_server.identity.registry import Registry
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring

log = logging.getLogger("agentstore.identity")
CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
AGENT_USER = re.compile(AGENT_ID_PATTERN.replace("^", "^agent-", 1))
# A revocation kicks again after this, for a login that was being admitted while it ran.
SECOND_KICK_SECONDS = 1.0


class Callout:
    """Answers nats-server's authorization requests."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        if not settings.identity_issuer_seed or not (
            settings.agentstore_enrollment_token or settings.identity_k8s_issuer
        ):
            raise ConfigError(
                "the identity service needs IDENTITY_ISSUER_SEED and AGENTSTORE_ENROLLMENT_TOKEN "
                "(`agentstore auth` writes issuer.nk and enrollment.token), or IDENTITY_K8S_ISSUER "
                "for Kubernetes service-account tokens"
            )
        self.settings = settings
        self.registry = registry
        self.issuer = nkeys.from_seed(settings.identity_issuer_seed.strip().encode())
        self.enrollments = auth.enrollment_tokens(settings.agentstore_enrollment_token)
        self.k8s = service_accounts.from_settings(settings)
        self.nc: Client | None = None  # the callout login (IDENTITY account)
        self.system: Client | None = None  # the system login (SYS account)
        self.issued = 0
        self.refused = 0
        self._recording: set[asyncio.Task[None]] = set()

    async def _accepts(self, user: str, token: str) -> str:
        """The agent id a login may have, or a ValueError saying why not."""
        match = AGENT_USER.match(user)
        if match is None:
            raise ValueError(
                f"{user!r} is not an agent login (agent-<id>); static users need their own password"
            )
        agent = user.removeprefix("agent-")
        if self.k8s is not None and looks_like_jwt(token):
            bound = await self.k8s.agent_of(token)
            if bound != agent:
                raise ValueError(
                    f"a service-account token of {bound!r} may log in as agent-{bound} only, not {user}"
                )
            return agent
        if not self.enrollments:
            raise ValueError(
                f"{user}: this fleet's agents log in with their Kubernetes service-account token"
            )
        if not auth.matches_enrollment(token, self.enrollments, agent):
            raise ValueError(f"wrong enrollment token for {user}")
        return agent

    async def answer(self, msg: Msg) -> None:
        try:
            request = tokens.claims_of(msg.data)["nats"]
            user_nkey, server = request["user_nkey"], request["server_id"]["id"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("an authorization request that does not parse: %s", exc)
            return  # nothing to answer to: the server times the login out
        opts = request.get("connect_opts") or {}
        user, token = str(opts.get("user") or ""), str(opts.get("pass") or opts.get("auth_token") or "")
        admitted: str | None = None
        try:
            agent = await self._accepts(user, token)
            if not self.registry.primed.is_set():  # just started: the revocations are on their way
                await asyncio.wait_for(self.registry.primed.wait(), timeout=5)
            if self.registry.is_revoked("agent", agent):
                raise ValueError(f"{user} is revoked")
            grant = auth.agent_identity(agent)
            user_jwt = tokens.encode(tokens.user_claims(user_nkey, grant.user, auth.ACCOUNT, grant.publish,
                                                        grant.subscribe, self.settings.identity_ttl_seconds),
                                     self.issuer)  # fmt: skip
            response = tokens.response_claims(user_nkey, server, user_jwt=user_jwt)
            admitted = agent
            self.issued += 1
        except Exception as exc:  # every refusal is answered, with its reason (the server logs it)
            reason = (
                str(exc) if isinstance(exc, ValueError) else f"identity service: {type(exc).__name__}: {exc}"
            )
            log.info("refused a login: %s", reason)
            response = tokens.response_claims(user_nkey, server, error=reason)
            self.refused += 1
        await msg.respond(tokens.encode(response, self.issuer).encode())
        if admitted is not None:
            # Recorded beside the answers, not before the next one: nats-py hands a subscription's
            # messages over one at a time, and the record is a key-value round trip.
            task = asyncio.create_task(self._record(admitted, server, int(request["client_info"]["id"])))
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)

    async def _record(self, agent: str, server: str, cid: int) -> None:
        try:
            await self.registry.login("agent", agent, server, cid)
        except Exception as exc:  # the login stands; only its record (for revocation) is missing
            log.warning("could not record the login of agent-%s (connection %s): %s", agent, cid, exc)

    async def kick(self, connections: list[tuple[str, int]]) -> int:
        """Ask each server to close these connections; how many it closed."""
        if self.system is None:
            return 0
        kicked = 0
        for server, cid in connections:
            try:
                reply = await self.system.request(f"$SYS.REQ.SERVER.{server}.KICK",
                                                  msgspec.json.encode({"cid": cid}), timeout=2)  # fmt: skip
            except Exception as exc:  # a server gone or not answering: its connections went with it
                log.warning("could not ask server %s to close connection %s: %s", server, cid, exc)
                continue
            kicked += b'"error"' not in reply.data
        return kicked

    async def open(self) -> None:
        """Log in to the IDENTITY and SYS accounts and take authorization requests (a queue
        group: replicas share them)."""
        s = self.settings
        base = replace(s.nats, creds=None, nkey=None, token=None)
        callout = replace(base, user=s.identity_nats_user, password=s.identity_nats_password)
        system = replace(base, user=s.system_nats_user, password=s.system_nats_password)
        if self.k8s is not None:
            await self.k8s.open()  # a wrong JWKS fails the start, not every login
        self.nc = await connect_nats(callout, name="agentstore-identity-callout")
        self.system = await connect_nats(system, name="agentstore-identity-system")
        await self.nc.subscribe(CALLOUT_SUBJECT, queue="identity", cb=self.answer)
        await self.nc.flush()
        log.info("answering NATS auth callout as issuer %s", self.issuer.public_key.decode())

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.drain()  # no new logins; then the records of those answered
        await asyncio.gather(*self._recording, return_exceptions=True)
        for nc in (self.nc, self.system):
            if nc is not None and not nc.is_closed:
                await nc.drain()

    async def ready(self) -> None:
        if self.nc is None or not self.nc.is_connected:
            raise ConnectionError("the callout login (IDENTITY account) is not connected")
        if not self.registry.primed.is_set():
            raise ConnectionError("the revocations are not read yet")


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    bus = BusHandle()
    registry = Registry(bus, replicas=settings.stream_replicas)
    callout = Callout(settings, registry) if settings.identity_issuer_seed else None
    if callout is not None:
        await callout.open()
        stack.push_async_callback(callout.close)

    async def revoke(ctx: RequestContext, q: RevokeIdentity) -> Revoked:
        record = await registry.revoke(q.kind, q.id, q.by)
        kicked = 0
        if callout is not None:
            kicked = await callout.kick(record.connections)
            # A login admitted while this ran was recorded after the read above: kick again.
            await asyncio.sleep(SECOND_KICK_SECONDS)
            again = await registry.revoke(q.kind, q.id, q.by)
            kicked += await callout.kick([c for c in again.connections if c not in record.connections])
        log.warning("revoked %s %s (%d connections closed), asked by %s", q.kind, q.id, kicked, q.by or "-")
        assert record.revoked_at is not None
        return Revoked(kind=q.kind, id=q.id, revoked_at=record.revoked_at, kicked=kicked)

    async def unrevoke(ctx: RequestContext, q: UnrevokeIdentity) -> Unrevoked:
        since = await registry.unrevoke(q.kind, q.id)
        if since is not None:
            log.warning("unrevoked %s %s (revoked since %s)", q.kind, q.id, since.isoformat())
        return Unrevoked(kind=q.kind, id=q.id, revoked_at=since)

    async def listing(ctx: RequestContext, q: IdentitiesQuery) -> Identities:
        return Identities(items=await registry.list(q))

    checks: dict[str, Any] = {}
    if callout is not None:
        checks["callout"] = callout.ready
    else:
        log.warning(
            "no IDENTITY_ISSUER_SEED: run-time identities are off (listing and revoking still answer)"
        )
    return Wiring(
        endpoints=bind(
            "identity",
            {
                contract.IDENTITY_REVOKE: revoke,
                contract.IDENTITY_UNREVOKE: unrevoke,
                contract.IDENTITY_LIST: listing,
            },
        ),
        checks=checks,
        background=[registry.watch_revocations],
        bus=bus,
    )


SPEC = ServiceSpec(name="identity", build=build)
