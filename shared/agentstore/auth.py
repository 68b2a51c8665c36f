"""`agentstore auth`: NATS authorization for a fleet, exactly per the contract's roles.

A fleet file names the agents, evaluators and frontends:

    {"agents": ["a1", "a2"], "evaluators": ["evaluator"], "frontends": ["web"]}

`generate` writes `auth.conf` (accounts and an `authorization` block to `include` in
nats-server's config) and `credentials/<identity>.json` ({"user", "password"}) for each
listed agent, evaluator, frontend, console and service, each with a fresh random password.
Agents may publish only their own ingest and rpc subjects and receive only on
`_INBOX.agents.{self}.>`; evaluators and frontends make the requests the contract opens to
their role; each service may use what it serves and consumes and nothing more. Every subject
comes from `agentstore.contract`.

Agents nobody listed get their identity at run time (NATS auth callout, nats-server >= 2.10):
every login that is not one of the static users above goes to the identity service, which
checks the agent's bootstrap credential (the fleet's enrollment token, `enrollment.token`, or
an agent's own token derived from it) and answers with a user JWT carrying exactly the
permissions `agent_identity` gives a listed agent. Adding an agent never touches this file.
Everything lives in the account AGENTSTORE; the identity service's callout login is in the
account IDENTITY and its kicks (revocation) in the system account SYS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import nkeys

from agentstore import contract
from agentstore.contract import DEADLETTER_STREAM, MAX_DELIVERIES_ADVISORY
from agentstore.private import write_private
from agentstore.schemas.common import AgentId

# The stream `agentstore mirror` follows (its conversations and messages).
MIRRORED_STREAM = "LOGS"
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$(?!\n)")]


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


def notices(service: str | None = None) -> list[str]:
    """The `stored.*.{kind}` notices (v1.14), all or one service's: evaluators and consoles
    may follow them; the service that stores the kind publishes them."""
    return [contract.wildcard(i.notice_address) for i in contract.INGEST
            if i.notice and service in (None, i.service)]  # fmt: skip


def service_jetstream(service: str) -> list[str]:
    """The JetStream API a service may use, and no more (not `$JS.API.>`): provision and read
    the streams it consumes, publishes into and dead-letters to; its own durable consumer on
    each stream it consumes (create, info, pull, ack) and reading a message back from it (a
    max-deliveries dead letter); its key-value buckets (info, create, direct get, watch). No
    service can purge or delete a stream or another's consumer, or touch another's bucket."""
    decl = contract.SERVICE_BY_NAME[service]
    api = "$JS.API"
    published = [contract.INGEST_BY_KIND[s.rsplit(".", 1)[-1]].stream for s in decl.publishes
                 if s.startswith("agents.")]  # fmt: skip
    streams = dict.fromkeys([*decl.streams, *published, DEADLETTER_STREAM])
    subjects = [f"{api}.INFO"]
    for stream in streams:
        subjects += [
            f"{api}.STREAM.INFO.{stream}",
            f"{api}.STREAM.CREATE.{stream}",
            f"{api}.STREAM.UPDATE.{stream}",
        ]
    for stream in decl.streams:
        durable = decl.durable
        subjects += [
            f"{api}.CONSUMER.CREATE.{stream}.{durable}", f"{api}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{durable}", f"{api}.CONSUMER.INFO.{stream}.{durable}",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}", f"$JS.ACK.{stream}.{durable}.>",
            f"{api}.STREAM.MSG.GET.{stream}", f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>",
        ]  # fmt: skip
    for bucket in decl.buckets:
        kv = f"KV_{bucket}"
        subjects += [
            f"{api}.STREAM.INFO.{kv}", f"{api}.STREAM.CREATE.{kv}", f"{api}.STREAM.MSG.GET.{kv}",
            f"{api}.DIRECT.GET.{kv}", f"{api}.DIRECT.GET.{kv}.>",
            # watches and key listings: ordered (ephemeral) consumers, their flow control
            f"{api}.CONSUMER.CREATE.{kv}", f"{api}.CONSUMER.CREATE.{kv}.>", f"{api}.CONSUMER.INFO.{kv}.>",
            f"{api}.CONSUMER.DELETE.{kv}.>", f"$JS.FC.{kv}.>",
        ]  # fmt: skip
    return subjects


def service_subjects(service: str) -> list[str]:
    """What a service subscribes to answer: every address of its endpoints."""
    return [contract.wildcard(address) for e in contract.endpoints_of(service) for address in e.addresses]


class Fleet(msgspec.Struct, forbid_unknown_fields=True):
    agents: list[AgentId]
    evaluators: list[Name] = msgspec.field(default_factory=lambda: ["evaluator"])
    frontends: list[Name] = msgspec.field(default_factory=lambda: ["frontend"])
    # Web consoles (the `web` service): a frontend's requests plus read-only queries.
    consoles: list[Name] = msgspec.field(default_factory=lambda: ["web"])
    # `agentstore mirror --durable NAME`: each name is one mirror's own LOGS consumer.
    mirrors: list[Name] = msgspec.field(default_factory=lambda: ["mirror"])

    def __post_init__(self) -> None:
        taken = {decl.durable for decl in contract.SERVICES} & set(self.mirrors)
        if taken:
            # A mirror may pull from and ack its consumer: named like a service's durable, it
            # would take (and acknowledge away) that service's messages.
            raise ValueError(f"mirror names {sorted(taken)} are the services' own consumers; pick others")


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


def mirror_inbox(mirror: str) -> str:
    return f"_INBOX.mirror.{mirror}"


def mirror_identity(mirror: str, password: str = "") -> Identity:
    """`agentstore mirror --durable {mirror}`: its own LOGS consumer and nothing else. It may
    create, read and pull from the consumer named `mirror` and ack what it pulled; no other
    consumer (the logs service's durable is out of reach, so it can never take the service's
    messages), no stream operations, no publishing of data. (A subject cannot bind the
    consumer's filter: the mirror reads what a LOGS consumer can, as an evaluator's queries do.)"""
    api = "$JS.API.CONSUMER"
    return Identity(
        f"mirror-{mirror}",
        password,
        publish=[
            f"{api}.CREATE.{MIRRORED_STREAM}.{mirror}",
            f"{api}.CREATE.{MIRRORED_STREAM}.{mirror}.>",
            f"{api}.DURABLE.CREATE.{MIRRORED_STREAM}.{mirror}",
            f"{api}.INFO.{MIRRORED_STREAM}.{mirror}",
            f"{api}.MSG.NEXT.{MIRRORED_STREAM}.{mirror}",
            f"$JS.ACK.{MIRRORED_STREAM}.{mirror}.>",
        ],  # fmt: skip
        subscribe=[f"{mirror_inbox(mirror)}.>"],
    )


def agent_identity(agent: str, password: str = "") -> Identity:
    """What an agent may do, listed or enrolled at run time: the same permissions."""
    return Identity(f"agent-{agent}", password, agent_publishes(agent), [f"_INBOX.agents.{agent}.>"])


def identities(fleet: Fleet) -> list[Identity]:
    def password() -> str:
        return secrets.token_urlsafe(24)

    found = [agent_identity(a, password()) for a in fleet.agents]
    found += [
        Identity(f"evaluator-{e}", password(), role_requests("evaluator"), ["_INBOX.evaluator.>", *notices()])
        for e in fleet.evaluators
    ]
    found += [
        Identity(f"frontend-{f}", password(), role_requests("frontend"), ["_INBOX.frontend.>"])
        for f in fleet.frontends
    ]
    found += [
        Identity(f"console-{c}", password(), console_requests(), [f"{service_inbox('web')}.>", *notices()])
        for c in fleet.consoles
    ]
    found += [mirror_identity(m, password()) for m in fleet.mirrors]
    for decl in contract.SERVICES:
        service = decl.name
        found.append(
            Identity(
                f"service-{service}",
                password(),
                publish=[
                    *service_jetstream(service),
                    f"deadletter.{service}",
                    # A message that reached max_deliver in a store outage goes back on its
                    # subject (bus/ingest.py, MaxDeliveries): the kinds the service stores.
                    *(i.filter for i in contract.ingest_of(service)),
                    "$SRV.>",
                    f"{service_inbox(service)}.>",
                    *decl.publishes,
                    *notices(service),
                    *(f"$KV.{bucket}.>" for bucket in decl.buckets),
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


ACCOUNT = "AGENTSTORE"  # everything agentstore does, static and run-time identities alike
IDENTITY_ACCOUNT = "IDENTITY"  # the identity service's callout login (nothing else)
SYSTEM_ACCOUNT = "SYS"  # nats-server's system account: the identity service kicks from it
IDENTITY_USER = "identity"
SYSTEM_USER = "system"
ISSUER_FILE = "issuer.nk"  # the seed of the account key that signs run-time identities
ENROLLMENT_FILE = "enrollment.token"


@dataclass(frozen=True)
class Secrets:
    """What only the identity service (and the operator) holds."""

    issuer_seed: str  # an account nkey seed (SA...): signs the user JWTs it issues
    enrollment: str  # the fleet's bootstrap token

    @property
    def issuer(self) -> str:
        return str(nkeys.from_seed(self.issuer_seed.encode()).public_key.decode())


def new_secrets() -> Secrets:
    seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_ACCOUNT).decode()
    return Secrets(seed, secrets.token_urlsafe(32))


def enrollment_tokens(setting: str | None) -> list[str]:
    """AGENTSTORE_ENROLLMENT_TOKEN as the services read it: one token, or several separated by
    commas while a rotation overlaps (`new,old`: both enroll, and agents' own tokens derived from
    either; drop `old` once every agent has the new one)."""
    return [t.strip() for t in (setting or "").split(",") if t.strip()]


def matches_enrollment(token: str, enrollments: list[str], agent: str | None = None) -> bool:
    """`token` is one of the fleet's tokens, or (with `agent`) that agent's own token derived
    from one of them; every candidate is compared in constant time."""
    found = False
    for enrollment in enrollments:
        found |= hmac.compare_digest(token.encode(), enrollment.encode())
        if agent is not None:
            found |= hmac.compare_digest(token.encode(), agent_token(enrollment, agent).encode())
    return found


def agent_token(enrollment: str, agent: str) -> str:
    """One agent's own bootstrap token: enrolls that agent id only (give it to one container
    instead of the fleet's token). Derived, so the identity service stores nothing per agent."""
    digest = hmac.new(enrollment.encode(), f"agent-{agent}".encode(), hashlib.sha256).hexdigest()
    return f"agent.{digest}"


def render(
    found: list[Identity], *, keys: Secrets | None = None, passwords: dict[str, str] | None = None
) -> str:
    """auth.conf: the static users in AGENTSTORE; with `keys`, run-time identities through the
    identity service (auth callout), which static users bypass."""
    header = "# Generated by `agentstore auth`; do not edit by hand.\n"
    users = ",\n".join("      " + json.dumps(i.entry()) for i in found)
    if keys is None or passwords is None:
        return f"{header}authorization {{\n  users = [\n{users}\n  ]\n}}\n"
    identity = json.dumps({"user": IDENTITY_USER, "password": passwords[IDENTITY_USER]})
    system = json.dumps({"user": SYSTEM_USER, "password": passwords[SYSTEM_USER]})
    bypass = json.dumps([IDENTITY_USER, SYSTEM_USER, *(i.user for i in found)])
    return (
        f"{header}accounts {{\n"
        f"  {ACCOUNT} {{\n    jetstream: enabled\n    users = [\n{users}\n    ]\n  }}\n"
        f"  {IDENTITY_ACCOUNT} {{ users = [ {identity} ] }}\n"
        f"  {SYSTEM_ACCOUNT} {{ users = [ {system} ] }}\n"
        f"}}\n"
        f"system_account: {SYSTEM_ACCOUNT}\n"
        f"authorization {{\n  auth_callout {{\n"
        f'    issuer: "{keys.issuer}"\n'
        f"    account: {IDENTITY_ACCOUNT}\n"
        f"    auth_users: {bypass}\n"
        f"  }}\n}}\n"
    )


def generate(fleet: Fleet, out: Path, *, run_time: bool = True) -> list[Identity]:
    """Write auth.conf, one credentials file per identity (mode 0600) and, with `run_time`
    (the default), the identity service's secrets: `issuer.nk`, `enrollment.token` and the
    logins `identity.json` and `system.json` (its `service-identity.json` is a service's, above)."""
    found = identities(fleet)
    (out / "credentials").mkdir(parents=True, exist_ok=True)
    keys = passwords = None
    if run_time:
        keys = new_secrets()
        passwords = {IDENTITY_USER: secrets.token_urlsafe(24), SYSTEM_USER: secrets.token_urlsafe(24)}
        write_private(out / ISSUER_FILE, keys.issuer_seed + "\n")
        write_private(out / ENROLLMENT_FILE, keys.enrollment + "\n")
        for user, password in passwords.items():
            write_private(
                out / "credentials" / f"{user}.json", json.dumps({"user": user, "password": password}) + "\n"
            )
    write_private(out / "auth.conf", render(found, keys=keys, passwords=passwords))
    for identity in found:
        creds = {"user": identity.user, "password": identity.password}
        write_private(out / "credentials" / f"{identity.user}.json", json.dumps(creds) + "\n")
    return found


def read_secrets(folder: Path) -> Secrets:
    """The identity service's secrets, as `generate` wrote them into `folder`."""
    return Secrets((folder / ISSUER_FILE).read_text().strip(), (folder / ENROLLMENT_FILE).read_text().strip())


def load_fleet(path: Path) -> Fleet:
    return msgspec.json.decode(path.read_bytes(), type=Fleet)


def read_credentials(path: Path) -> tuple[str, str]:
    data = json.loads(path.read_text())
    return data["user"], data["password"]
