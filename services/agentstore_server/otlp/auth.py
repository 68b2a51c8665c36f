"""Who may export for which agent: the OTLP receiver's per-agent tokens.

An OTLP export names its agent in a resource attribute, which anyone can write; without a
check the receiver would publish for any agent it is told, past the per-agent NATS
permissions. So, with a secret to check against (the fleet's enrollment token, or a
Kubernetes issuer), every export carries `Authorization: Bearer <token>` bound to one agent:
that agent's own token (`agentstore auth token agent ID`, an HMAC of the enrollment token;
the fleet's token itself is refused, since it is no one agent's), or the pod's projected
service-account token (its pod name is the agent). An export whose resources name any other
agent is refused whole (403), nothing of it stored. Exporters set the header with
`OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>`.
"""

from __future__ import annotations

from agentstore.auth import enrollment_tokens, matches_enrollment
from agentstore.errors import AgentstoreError, ConfigError
from agentstore_server.bus import service_accounts
from agentstore_server.bus.service_accounts import ServiceAccountTokens, looks_like_jwt
from agentstore_server.config import Settings


class Unauthorized(AgentstoreError):
    """No token (401): the exporter must send one."""


class Refused(AgentstoreError):
    """A token that does not let this export through (403)."""


class ExportAuth:
    def __init__(self, enrollment: str | None, k8s: ServiceAccountTokens | None) -> None:
        self.enrollments = enrollment_tokens(enrollment)
        self.k8s = k8s

    @classmethod
    def from_settings(cls, settings: Settings) -> ExportAuth | None:
        """The check the settings ask for; None when exports are open (OTLP_REQUIRE_TOKEN=false,
        or unset with nothing to check a token against: the local stack without auth)."""
        k8s = service_accounts.from_settings(settings)
        can_check = bool(settings.agentstore_enrollment_token) or k8s is not None
        required = settings.otlp_require_token if settings.otlp_require_token is not None else can_check
        if not required:
            return None
        if not can_check:
            raise ConfigError(
                "OTLP_REQUIRE_TOKEN is on but there is nothing to check a token against: set "
                "AGENTSTORE_ENROLLMENT_TOKEN (agents' own tokens) or IDENTITY_K8S_ISSUER"
            )
        return cls(settings.agentstore_enrollment_token, k8s)

    async def open(self) -> None:
        if self.k8s is not None:
            await self.k8s.open()

    @staticmethod
    def token_of(authorization: str) -> str:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "this receiver needs `Authorization: Bearer <the agent's token>` (`agentstore auth token "
                "agent ID`; OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>)"
            )
        return token.strip()

    async def check(self, token: str, agents: set[str]) -> None:
        """Refused unless the token is exactly one agent's and the export is only that agent's."""
        if looks_like_jwt(token) and self.k8s is not None:
            try:
                bound = await self.k8s.agent_of(token)
            except ValueError as exc:
                raise Refused(str(exc)) from None
            others = sorted(agents - {bound})
            if others:
                raise Refused(f"a token of agent {bound!r} may not export for {others}")
            return
        if matches_enrollment(token, self.enrollments):
            raise Refused("the fleet's enrollment token is no one agent's: export with the agent's own token")
        if not self.enrollments:
            raise Refused("this receiver takes Kubernetes service-account tokens only")
        for agent in sorted(agents):  # every resource's agent must be the token's (the fleet's is out, above)
            if not matches_enrollment(token, self.enrollments, agent):
                raise Refused(f"the token is not agent {agent!r}'s: an agent exports its own telemetry only")
