"""Kubernetes projected service-account tokens as an agent's bootstrap credential (here, below
the services: the identity service's logins and the OTLP receiver's exports check them alike).

Instead of the fleet's enrollment Secret, an agent pod presents the token the kubelet
projects for it (a `serviceAccountToken` volume with audience `agentstore`), and its login
is bound to what the token says: the pod's name (or its service account's) is the one agent
id it may log in as. The token is checked here as the API server signed it: RS256 or ES256
against the cluster issuer's JWKS (`IDENTITY_K8S_JWKS_URL`, the issuer's
`/openid/v1/jwks`, or a file), with its issuer, audience, expiry and not-before. A key id
the set does not hold makes one refetch (the cluster rotated its keys), at most every
`REFETCH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any, Literal

import aiohttp
import jwt

from agentstore.errors import ConfigError
from agentstore_server.config import Settings

log = logging.getLogger("agentstore.identity")
# What the API server signs projected tokens with (RSA or ECDSA keys); nothing else is tried,
# so a token cannot choose its own algorithm (`none`, or HS256 keyed by the public key).
ALGORITHMS = ["RS256", "ES256"]
REFETCH_SECONDS = 30.0
LEEWAY_SECONDS = 30  # clock skew between the API server and this service
# In a pod: its own token (the issuer's discovery endpoints may need one) and the cluster CA.
POD_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
POD_CA = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")

AgentIdFrom = Literal["pod", "serviceaccount"]


def looks_like_jwt(token: str) -> bool:
    """A JWT (three dot-separated parts), not an enrollment token (none or one dot)."""
    return token.count(".") == 2 and token.startswith("eyJ")


class ServiceAccountTokens:
    """Verifies projected service-account tokens and names the agent each one may be."""

    def __init__(
        self, *, issuer: str, audience: str, jwks_url: str | None = None, jwks_file: str | None = None,
        agent_id_from: AgentIdFrom = "pod", namespaces: list[str] | None = None, ca_file: str | None = None,
        refetch_seconds: float = REFETCH_SECONDS,
    ) -> None:  # fmt: skip
        if (jwks_url is None) == (jwks_file is None):
            raise ConfigError(
                "Kubernetes token login needs exactly one of IDENTITY_K8S_JWKS_URL (the issuer's "
                "/openid/v1/jwks) and IDENTITY_K8S_JWKS_FILE"
            )
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.jwks_file = jwks_file
        self.agent_id_from = agent_id_from
        self.namespaces = set(namespaces or ())
        self.refetch_seconds = refetch_seconds
        self.ca_file = ca_file or (str(POD_CA) if POD_CA.exists() else None)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._fetching = asyncio.Lock()

    async def open(self) -> None:
        """Load the key set once at start: a wrong URL or file fails the start, clearly."""
        await self._refresh()
        if not self._keys:
            raise ConfigError(f"the JWKS at {self.jwks_url or self.jwks_file} holds no usable key")

    async def _refresh(self) -> None:
        async with self._fetching:
            if time.monotonic() - self._fetched_at < self.refetch_seconds and self._keys:
                return
            data = await self._read()
            try:
                found = jwt.PyJWKSet.from_dict(data).keys
            except jwt.PyJWKError as exc:
                raise ConfigError(
                    f"the JWKS at {self.jwks_url or self.jwks_file} does not parse: {exc}"
                ) from exc
            self._keys = {str(k.key_id): k for k in found if k.key_id}
            self._fetched_at = time.monotonic()
            log.info("Kubernetes token keys: %s", ", ".join(sorted(self._keys)) or "none")

    async def _read(self) -> dict[str, Any]:
        if self.jwks_file is not None:
            return await asyncio.to_thread(self._read_file, self.jwks_file)
        assert self.jwks_url is not None
        headers = {"Accept": "application/json"}
        bearer = await asyncio.to_thread(_pod_token)
        if bearer:  # the API server's discovery endpoint may ask who is reading
            headers["Authorization"] = f"Bearer {bearer}"
        https = self.jwks_url.startswith("https")
        context: ssl.SSLContext | bool = ssl.create_default_context(cafile=self.ca_file) if https else True
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
                http.get(self.jwks_url, headers=headers, ssl=context) as reply,
            ):
                reply.raise_for_status()
                fetched: dict[str, Any] = await reply.json(content_type=None)
                return fetched
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot fetch the JWKS at {self.jwks_url}: {exc}") from exc

    @staticmethod
    def _read_file(path: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read IDENTITY_K8S_JWKS_FILE {path}: {exc}") from exc
        return data

    async def agent_of(self, token: str) -> str:
        """The agent id this token may log in as; ValueError saying why it may not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise ValueError(f"not a service-account token: {exc}") from None
        kid, alg = str(header.get("kid") or ""), header.get("alg")
        if alg not in ALGORITHMS:
            raise ValueError(f"a service-account token signed with {alg!r}; only {ALGORITHMS} are accepted")
        if kid not in self._keys:
            try:
                await self._refresh()  # rotated keys: one refetch, rate-limited
            except ConfigError as exc:
                raise ValueError(f"cannot check the token's key {kid!r}: {exc}") from None
        key = self._keys.get(kid)
        if key is None:
            raise ValueError(f"a service-account token signed by key {kid!r}, which the cluster's JWKS lacks")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            raise ValueError(f"service-account token refused: {exc}") from None
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, dict):
            raise ValueError("a service-account token without its kubernetes.io claims")
        namespace = str(k8s.get("namespace") or "")
        if self.namespaces and namespace not in self.namespaces:
            raise ValueError(f"service accounts of namespace {namespace!r} may not log in as agents")
        bound = k8s.get(self.agent_id_from) if self.agent_id_from == "pod" else k8s.get("serviceaccount")
        name = bound.get("name") if isinstance(bound, dict) else None
        if not name:
            raise ValueError(
                f"the token is not bound to a {self.agent_id_from} (IDENTITY_K8S_AGENT_ID="
                f"{self.agent_id_from}: mount a projected serviceAccountToken volume in the agent's pod)"
            )
        return str(name)


def _pod_token() -> str | None:
    return POD_TOKEN.read_text().strip() if POD_TOKEN.exists() else None


def from_settings(settings: Settings) -> ServiceAccountTokens | None:
    """The verifier the settings describe (IDENTITY_K8S_*), or None when none is set: the
    identity service's logins and the OTLP receiver's exports check tokens alike."""
    if not settings.identity_k8s_issuer:
        return None
    return ServiceAccountTokens(
        issuer=settings.identity_k8s_issuer, audience=settings.identity_k8s_audience,
        jwks_url=settings.identity_k8s_jwks_url, jwks_file=settings.identity_k8s_jwks_file,
        agent_id_from=settings.identity_k8s_agent_id, namespaces=settings.identity_k8s_namespaces,
        ca_file=settings.identity_k8s_ca_file, refetch_seconds=settings.identity_k8s_jwks_refetch_seconds,
    )  # fmt: skip
