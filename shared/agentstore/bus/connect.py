"""One way to connect to NATS, for the services, both clients and the CLI.

`NatsSettings` says where NATS is and who we are: a URL list, user and
password, a credentials file (a NATS `.creds` JWT file, or the JSON that
`agentstore auth` writes), an nkey seed file, a token, TLS (CA, client
certificate), or a context of the `nats` CLI. `NatsSettings.from_env()` reads
them from the environment and `.agentstore/stack.env`; `connect_nats` opens
the connection with reconnects and errors that say what to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from agentstore.errors import ConfigError

log = logging.getLogger("agentstore.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"

# Environment variable -> NatsSettings field.
ENV_FIELDS = {
    "NATS_URL": "url",
    "NATS_USER": "user",
    "NATS_PASSWORD": "password",
    "NATS_CREDS": "creds",
    "NATS_NKEY": "nkey",
    "NATS_TOKEN": "token",
    "NATS_TLS_CA": "tls_ca",
    "NATS_TLS_CERT": "tls_cert",
    "NATS_TLS_KEY": "tls_key",
    "NATS_CONTEXT": "context",
    # `make up AUTH=1`: the folder of per-identity credentials (`agentstore auth`).
    "AGENTSTORE_CREDENTIALS": "credentials_dir",
    # An agent's bootstrap credential for a run-time identity: the fleet's enrollment token
    # (stack.env, or a Kubernetes Secret), or its own (`agentstore auth token agent ID`).
    "AGENTSTORE_ENROLLMENT_TOKEN": "enrollment",
    # In Kubernetes: the file of the pod's projected service-account token (audience
    # `agentstore`), the agent's login bound to its pod; read again at every (re)connect,
    # since the kubelet rotates it.
    "AGENTSTORE_SERVICE_ACCOUNT_TOKEN_FILE": "service_account_token",
}


@dataclass(frozen=True)
class NatsSettings:
    """Where NATS is and how to log in; every field optional but the URL."""

    url: str = DEFAULT_URL  # one URL or a comma-separated list (a cluster)
    user: str | None = None
    password: str | None = None
    creds: str | None = None  # a NATS .creds file, or {"user", "password"} JSON from `agentstore auth`
    nkey: str | None = None  # a file holding an nkey seed (SU...)
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    context: str | None = None  # a `nats` CLI context name; its values fill what is unset
    credentials_dir: str | None = None
    enrollment: str | None = None
    service_account_token: str | None = None  # a file: the password, read at each connect

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, env_file: Path | None = None) -> NatsSettings:
        """Settings from the environment, then the local stack's `stack.env`
        (`$AGENTSTORE_HOME/stack.env`, default `.agentstore/stack.env`); the environment wins."""
        environ = os.environ if env is None else env
        env_file = env_file or Path(environ.get("AGENTSTORE_HOME") or ".agentstore") / "stack.env"
        values: dict[str, str] = {}
        if env_file.is_file():
            values.update(read_env_file(env_file))
        values.update(environ)
        fields = {field: values[var] for var, field in ENV_FIELDS.items() if values.get(var)}
        return cls(**fields).with_context(environ)

    def with_context(self, env: Mapping[str, str] | None = None) -> NatsSettings:
        """Fill unset fields from the `nats` CLI context (`NATS_CONTEXT` or its selected one)."""
        path = context_file(self.context, os.environ if env is None else env)
        if path is None:
            return self
        try:
            ctx: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read nats context {path}: {exc}") from exc
        given = {
            "url": ctx.get("url"), "user": ctx.get("user"), "password": ctx.get("password"),
            "creds": ctx.get("creds"), "nkey": ctx.get("nkey"), "token": ctx.get("token"),
            "tls_ca": ctx.get("ca"), "tls_cert": ctx.get("cert"), "tls_key": ctx.get("key"),
        }  # fmt: skip
        unset = {k: v for k, v in given.items() if v and getattr(self, k) in (None, DEFAULT_URL)}
        return replace(self, context=None, **unset)

    def as_identity(self, identity: str) -> NatsSettings:
        """These settings logged in as `identity` (`agent-a1`, `evaluator-evaluator`): its own
        file in the credentials folder when it has one; else, for an agent with an enrollment
        token, a run-time identity (the identity service issues it at login); else, with a
        folder, a ConfigError: a client never borrows another identity's login (the
        evaluator's, from stack.env). Without either, unchanged (NATS_USER, NATS_CREDS ... are
        then the identity)."""
        path = Path(self.credentials_dir) / f"{identity}.json" if self.credentials_dir else None
        if path is not None and path.is_file():
            return replace(self, creds=str(path), user=None, password=None, token=None, nkey=None)
        if self.service_account_token and identity.startswith("agent-"):
            return replace(self, user=identity, password=None, creds=None, token=None, nkey=None)
        if self.enrollment and identity.startswith("agent-"):
            return replace(self, user=identity, password=self.enrollment, creds=None, token=None, nkey=None)
        if path is not None and identity.startswith("agent-"):
            raise ConfigError(
                f"no NATS credentials for {identity} in {self.credentials_dir} and no enrollment token: "
                f"set AGENTSTORE_ENROLLMENT_TOKEN (an agent gets its identity at login; `make up AUTH=1` "
                f"writes it to .agentstore/stack.env), or list it in .agentstore/fleet.json"
            )
        if path is not None:
            kind, _, name = identity.partition("-")
            raise ConfigError(
                f"no NATS credentials for {identity} in {self.credentials_dir}: list {name!r} under "
                f'"{kind}s" in the fleet file and run `agentstore auth generate FLEET --out '
                f"{path.parent.parent}` (then restart the stack: every password is new)"
            )
        return self


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def context_file(name: str | None, env: Mapping[str, str]) -> Path | None:
    """The `nats` CLI's context file: the one named, else the selected one, else None."""
    root = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "nats"
    if not name:
        selected = root / "context.txt"
        name = selected.read_text().strip() if selected.is_file() else None
        if not name:
            return None
        path = root / "context" / f"{name}.json"
        return path if path.is_file() else None
    path = root / "context" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no nats context {name!r} (looked for {path}); `nats context ls` lists them")
    return path


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py options for the identity and TLS of `settings`."""
    options: dict[str, Any] = {}
    if settings.creds:
        if settings.creds.endswith(".json"):
            try:
                data = json.loads(Path(settings.creds).read_text())
                options["user"], options["password"] = data["user"], data["password"]
            except (OSError, ValueError, KeyError) as exc:
                raise ConfigError(f"cannot read credentials {settings.creds}: {exc!r}") from exc
        else:
            options["user_credentials"] = settings.creds
    elif settings.user and settings.service_account_token and settings.password is None:
        options["user"], options["password"] = settings.user, _file_reader(settings.service_account_token)
    elif settings.user:
        options["user"], options["password"] = settings.user, settings.password
    if settings.nkey:
        options["nkeys_seed"] = settings.nkey
    if settings.token:
        options["token"] = settings.token
    if settings.tls_ca or settings.tls_cert:
        context = ssl.create_default_context(cafile=settings.tls_ca)
        if settings.tls_cert:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
        options["tls"] = context
    return options


def _file_reader(path: str) -> Callable[[], str]:
    """A password nats-py reads at each (re)connect: a rotated token file is picked up."""

    def read() -> str:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the service-account token {path}: {exc}") from exc

    read()  # unreadable now: fail the connect with that, not with a refused login
    return read


_PERMISSIONS = "permissions violation"


class Denials:
    """The subjects the server refused this connection (its permission violations), so a
    client raises one clear error for them instead of waiting for replies that never come,
    and the log says it once per subject instead of once per message."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def record(self, error: Exception) -> bool:
        """Take a connection error; True when it was a permission violation (logged once)."""
        text = str(error).removeprefix("nats: ")
        if _PERMISSIONS not in text.lower():
            return False
        subject = text.rsplit(" ", 1)[-1].strip('"')
        if subject not in self._reasons:
            self._reasons[subject] = text
            log.error("NATS refused this identity %s", text)
        return True

    def of(self, subject: str) -> str | None:
        """Why publishing or requesting on `subject` was refused, if it was; for a request,
        also a refused subscription (its reply inbox), which no reply can pass."""
        reason = self._reasons.get(subject)
        if reason is None:
            reason = next((r for r in self._reasons.values() if "subscription" in r), None)
        return reason


async def connect_nats(
    settings: NatsSettings | str,
    *,
    name: str,
    inbox_prefix: str | None = None,
    connect_timeout: float = 5.0,
    denials: Denials | None = None,
) -> Client:
    """Connect with unlimited reconnects; fail fast with a clear message if unreachable or
    if the server refuses the login (within `connect_timeout`, not after nats-py's retries)."""
    if isinstance(settings, str):
        settings = NatsSettings(url=settings)
    url = settings.url
    refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    said_refused = False  # a refused re-login is said once, not at every retry

    async def on_error(exc: Exception) -> None:
        # At the first connection nats-py reports a refused login as a plain Error with the
        # server's words, then retries for ever.
        nonlocal said_refused
        text = str(exc).lower()
        login_refused = isinstance(exc, nats.errors.AuthorizationError) or (
            "authorization violation" in text or "authentication" in text)  # fmt: skip
        if login_refused and not refused.done():
            refused.set_result(exc)
            return
        if login_refused:
            # Connected once, refused now: revoked, or the identity service is down. Retrying
            # (a revoked identity stays out; a restarted identity service lets it back in).
            if not said_refused:
                log.error("NATS at %s refused the login as %s on reconnect (revoked, or the identity "
                          "service is down); retrying", url, _who(settings))  # fmt: skip
            said_refused = True
            return
        if denials is not None and denials.record(exc):
            return
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        # Also fires on a deliberate close/drain; a lost server shows as reconnects.
        log.info("nats disconnected from %s", url)

    async def on_reconnect() -> None:
        nonlocal said_refused
        said_refused = False
        log.info("nats reconnected to %s", url)

    options: dict[str, Any] = {
        "name": name,
        "connect_timeout": connect_timeout,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "allow_reconnect": True,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        **connect_options(settings),
    }
    if inbox_prefix:
        options["inbox_prefix"] = inbox_prefix
    servers = [u.strip() for u in url.split(",") if u.strip()]
    # nats-py retries the first connection as long as later ones (forever): bound it, and end
    # it at the server's first refusal of the login.
    connecting: asyncio.Future[Any] = asyncio.ensure_future(nats.connect(servers, **options))
    done, _ = await asyncio.wait([connecting, refused], timeout=connect_timeout * 3,
                                 return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    if connecting not in done:
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        if refused.done():
            raise ConfigError(
                f"NATS at {url} refused the login as {_who(settings)}: check the credentials "
                "(NATS_USER/NATS_PASSWORD, NATS_CREDS, NATS_NKEY or AGENTSTORE_CREDENTIALS)"
            )
        raise ConfigError(
            f"cannot connect to NATS at {url} within {connect_timeout * 3:g} s; is `make up` running, "
            "or is NATS_URL set to the right server?"
        )
    try:
        client: Client = connecting.result()
        return client
    except Exception as exc:
        who = " (check the credentials: NATS_USER/NATS_PASSWORD, NATS_CREDS, NATS_NKEY)" if (
            "authorization" in str(exc).lower()) else ""  # fmt: skip
        raise ConfigError(
            f"cannot connect to NATS at {url} ({exc!r}){who}; is `make up` running, "
            "or is NATS_URL set to the right server?"
        ) from exc


def _who(settings: NatsSettings) -> str:
    """The identity the settings log in as, for an error message (never a secret)."""
    if settings.creds:
        return f"the credentials file {settings.creds}"
    if settings.user:
        return f"user {settings.user!r}"
    if settings.nkey:
        return f"the nkey seed {settings.nkey}"
    return "an anonymous client (no user, credentials, nkey or token is set)"
