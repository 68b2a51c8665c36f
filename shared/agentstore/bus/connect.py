"""Connecting to NATS with reconnects and errors that say what to do."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client

from agentstore.errors import ConfigError

log = logging.getLogger("agentstore.nats")


async def connect_nats(
    url: str,
    *,
    name: str,
    creds: str | None = None,
    user: str | None = None,
    password: str | None = None,
    inbox_prefix: str | None = None,
    connect_timeout: float = 5.0,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> Client:
    """Connect with unlimited reconnects; fail fast with a clear message if unreachable."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        # Also fires on a deliberate close/drain; a lost server shows as reconnects.
        log.info("nats disconnected from %s", url)

    async def on_reconnect() -> None:
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
    }
    if creds:
        options["user_credentials"] = creds
    if user:
        options["user"], options["password"] = user, password
    if tls_ca or tls_cert:
        context = ssl.create_default_context(cafile=tls_ca)
        if tls_cert:
            context.load_cert_chain(tls_cert, tls_key)
        options["tls"] = context
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if inbox_prefix:
        options["inbox_prefix"] = inbox_prefix
    try:
        # nats-py retries the first connection as long as later ones (forever): bound it.
        return await asyncio.wait_for(nats.connect(servers, **options), timeout=connect_timeout * 3)
    except Exception as exc:
        raise ConfigError(
            f"cannot connect to NATS at {url} ({exc}); is `make up` running, "
            "or is NATS_URL set to the right server?"
        ) from exc
