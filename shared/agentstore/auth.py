"""`agentstore auth`: NATS authorization for a fleet, exactly per the contract's roles.

A fleet file names the agents, evaluators and frontends:

    {"agents": ["a1", "a2"], "evaluators": ["evaluator"], "frontends": ["web"]}

`generate` writes `auth.conf` (an `authorization` block to `include` in
nats-server's config) and `credentials/<identity>.json` ({"user",
"password"}) for each agent, evaluator, frontend, console and service, each with a
fresh random password. Agents may publish only their own ingest and rpc subjects and
receive only on `_INBOX.agents.{self}.>`; evaluators and frontends make
the requests the contract opens to their role; each service may use what it
serves and consumes and nothing more. Every subject comes from
`agentstore.contract`.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agentstore import contract
from agentstore.contract import DEADLETTER_STREAM, MAX_DELIVERIES_ADVISORY
from agentstore.schemas.common import AgentId

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


def role_requests(role: contract.Role, agent: str = "*") -> list[str]:
    """The request subjects a role may publish: every address of every endpoint the
    contract opens to it (an agent's own `agents.{self}.rpc.*` forms)."""
    subjects: list[str] = []
    for e in contract.callable_by(role):
        for address in e.addresses:
            agent_form = address.startswith("agents.{agent}.")
            if agent_form == (role == "agent"):
                subjects.append(contract.concrete(address, agent))
    return subjects


def console_requests() -> list[str]:
    """The web console's requests: the frontend's, every evaluator `query.*` (read-only),
    and reading the DEADLETTER stream. Its write actions log in as an evaluator."""
    reads = [s for s in role_requests("evaluator") if s.startswith("query.")]
    dead = [f"$JS.API.STREAM.INFO.{DEADLETTER_STREAM}", f"$JS.API.STREAM.MSG.GET.{DEADLETTER_STREAM}"]
    return sorted({*role_requests("frontend"), *reads}) + dead


def agent_publishes(agent: str) -> list[str]:
    return [i.subject(agent) for i in contract.INGEST] + role_requests("agent", agent)


def service_subjects(service: str) -> list[str]:
    """What a service subscribes to answer: every address of its endpoints."""
    return [contract.wildcard(address) for e in contract.endpoints_of(service) for address in e.addresses]


class Fleet(msgspec.Struct, forbid_unknown_fields=True):
    agents: list[AgentId]
    evaluators: list[Name] = msgspec.field(default_factory=lambda: ["evaluator"])
    frontends: list[Name] = msgspec.field(default_factory=lambda: ["frontend"])
    # Web consoles (the `web` service): a frontend's requests plus read-only queries.
    consoles: list[Name] = msgspec.field(default_factory=lambda: ["web"])


@dataclass(frozen=True)
class Identity:
    user: str
    password: str
    publish: list[str]
    subscribe: list[str]
    responses: bool = False

    def entry(self) -> dict[str, Any]:
        perms: dict[str, Any] = {"publish": {"allow": self.publish}, "subscribe": {"allow": self.subscribe}}
        if self.responses:
            perms["allow_responses"] = True
        return {"user": self.user, "password": self.password, "permissions": perms}


def service_inbox(service: str) -> str:
    return f"_INBOX.service.{service}"


def identities(fleet: Fleet) -> list[Identity]:
    def password() -> str:
        return secrets.token_urlsafe(24)

    found = [
        Identity(f"agent-{a}", password(), agent_publishes(a), [f"_INBOX.agents.{a}.>"]) for a in fleet.agents
    ]
    found += [
        Identity(f"evaluator-{e}", password(), role_requests("evaluator"), ["_INBOX.evaluator.>"])
        for e in fleet.evaluators
    ]
    found += [
        Identity(f"frontend-{f}", password(), role_requests("frontend"), ["_INBOX.frontend.>"])
        for f in fleet.frontends
    ]
    found += [
        Identity(f"console-{c}", password(), console_requests(), [f"{service_inbox('web')}.>"])
        for c in fleet.consoles
    ]
    for decl in contract.SERVICES:
        service = decl.name
        found.append(
            Identity(
                f"service-{service}",
                password(),
                publish=[
                    "$JS.API.>",
                    "$JS.ACK.>",
                    f"deadletter.{service}",
                    "$SRV.>",
                    f"{service_inbox(service)}.>",
                    *decl.publishes,
                    *decl.calls,
                ],  # fmt: skip
                subscribe=[
                    *service_subjects(service),
                    "$SRV.>",
                    f"{service_inbox(service)}.>",
                    # JetStream's word that a message of its own consumers reached
                    # max_deliver (bus/ingest.py, MaxDeliveries).
                    *(f"{MAX_DELIVERIES_ADVISORY}.{stream}.{decl.durable}" for stream in decl.streams),
                ],  # fmt: skip
                responses=True,
            )
        )
    return found


def render(found: list[Identity]) -> str:
    users = ",\n".join("    " + json.dumps(i.entry()) for i in found)
    header = "# Generated by `agentstore auth`; do not edit by hand.\n"
    return f"{header}authorization {{\n  users = [\n{users}\n  ]\n}}\n"


def generate(fleet: Fleet, out: Path) -> list[Identity]:
    """Write auth.conf and one credentials file per identity (mode 0600)."""
    found = identities(fleet)
    (out / "credentials").mkdir(parents=True, exist_ok=True)
    _private(out / "auth.conf", render(found))
    for identity in found:
        creds = {"user": identity.user, "password": identity.password}
        _private(out / "credentials" / f"{identity.user}.json", json.dumps(creds) + "\n")
    return found


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def load_fleet(path: Path) -> Fleet:
    return msgspec.json.decode(path.read_bytes(), type=Fleet)


def read_credentials(path: Path) -> tuple[str, str]:
    data = json.loads(path.read_text())
    return data["user"], data["password"]
