"""NATS JWTs (`alg: ed25519-nkey`), as nats-server's auth callout exchanges them (ADR-26):
the server's authorization request, the user claims this service issues, and the signed
response. Only what the callout needs; the claims' shapes are nats-io/jwt v2's."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import msgspec
import nkeys

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], issuer: nkeys.KeyPair) -> str:
    """`claims` signed by `issuer` (iss, iat and jti filled in as nats-io/jwt does)."""
    body = {**claims, "iss": issuer.public_key.decode(), "iat": int(time.time())}
    body["jti"] = base64.b32encode(hashlib.sha256(msgspec.json.encode(body)).digest()).decode().rstrip("=")
    signed = f"{_b64(msgspec.json.encode(HEADER))}.{_b64(msgspec.json.encode(body))}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def claims_of(token: str | bytes) -> dict[str, Any]:
    """The claims of a JWT, unverified: the server's requests reach this service only on the
    callout subject of its own account, which nothing else can publish to."""
    text = token.decode() if isinstance(token, bytes) else token
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    claims = msgspec.json.decode(_unb64(parts[1]))
    if not isinstance(claims, dict):
        raise ValueError("a JWT's claims are an object")
    return claims


def user_claims(
    user_nkey: str, name: str, account: str, publish: list[str], subscribe: list[str], ttl: float
) -> dict[str, Any]:
    """A user of `account` with exactly these permissions, for `ttl` seconds."""
    return {
        "sub": user_nkey, "name": name, "aud": account, "exp": int(time.time() + ttl),
        "nats": {"pub": {"allow": publish}, "sub": {"allow": subscribe}, "subs": -1, "data": -1,
                 "payload": -1, "type": "user", "version": 2},
    }  # fmt: skip


def response_claims(
    user_nkey: str, server_id: str, *, user_jwt: str | None = None, error: str = ""
) -> dict[str, Any]:
    """The answer to one authorization request: a user JWT, or why not."""
    nats: dict[str, Any] = {"type": "authorization_response", "version": 2}
    if user_jwt is not None:
        nats["jwt"] = user_jwt
    else:
        nats["error"] = error or "not authorized"
    return {"sub": user_nkey, "aud": server_id, "nats": nats}
