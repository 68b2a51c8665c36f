"""The console's sessions: who may see it, and the form token of each browser.

Every browser gets a signed session cookie (HttpOnly, SameSite=Strict): `expires.nonce.login.mac`,
the MAC an HMAC-SHA256 under a key derived from `WEB_LOGIN_TOKEN` (so every replica verifies
every replica's cookies, and changing the token ends every session), or under a key of this
process when the console has no login. A form's token is an HMAC of the session's nonce:
per browser, never printed for anyone else, compared in constant time.

With `WEB_LOGIN_TOKEN` set, a page needs a logged-in session: `/login` takes the token (compared
in constant time) and marks the session. Behind an auth proxy (OIDC: oauth2-proxy, an
ingress's external auth), leave the login to the proxy and keep the console unreachable but
through it (bind it to 127.0.0.1 or a NetworkPolicy); the token login is the built-in gate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "agentstore_session"


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    logged_in: bool


class Sessions:
    def __init__(self, login_token: str | None, lifetime_seconds: float) -> None:
        self.login_token = (login_token or "").strip() or None
        self.lifetime = int(lifetime_seconds)
        self._key = (
            hashlib.sha256(b"agentstore console sessions\0" + self.login_token.encode()).digest()
            if self.login_token
            else secrets.token_bytes(32)
        )

    @property
    def login_required(self) -> bool:
        return self.login_token is not None

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new(self, *, logged_in: bool = False) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        session = Session(secrets.token_urlsafe(18), int(time.time()) + self.lifetime, logged_in)
        body = f"{session.expires}.{session.nonce}.{int(logged_in)}"
        return session, f"{body}.{self._mac(body)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds; None when absent, forged, or expired."""
        if not cookie or cookie.count(".") != 3:
            return None
        expires, nonce, login, mac = cookie.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(f"{expires}.{nonce}.{login}").encode()):
            return None
        if not expires.isdigit() or int(expires) < time.time() or login not in ("0", "1"):
            return None
        return Session(nonce, int(expires), login == "1")

    def form_token(self, session: Session) -> str:
        return self._mac(f"form.{session.nonce}")

    def form_token_ok(self, session: Session, sent: object) -> bool:
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), self.form_token(session).encode())

    def login_ok(self, sent: object) -> bool:
        return (
            self.login_token is not None
            and isinstance(sent, str)
            and hmac.compare_digest(sent.encode(), self.login_token.encode())
        )


def host_allowed(host: str, allowed: list[str]) -> bool:
    """The request's Host (name, no port) is one this console serves: loopback names always,
    and WEB_ALLOWED_HOSTS (`*` for any; `.example.com` for it and its subdomains). Refusing
    the rest stops DNS rebinding: another site's name pointed at this address."""
    name = _host_name(host)
    if name in ("localhost", "127.0.0.1", "::1") or "*" in allowed:
        return True
    for entry in (a.lower() for a in allowed):
        if name == entry or (entry.startswith(".") and (name.endswith(entry) or name == entry[1:])):
            return True
    return False


def _host_name(host: str) -> str:
    """A Host header's name without its port (`[::1]:8080` -> `::1`, `a.b:80` -> `a.b`)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.split(":", 1)[0] if host.count(":") == 1 else host
