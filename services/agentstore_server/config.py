"""Typed settings, read from the environment (and `.agentstore/stack.env`).

Build them in ``main()`` with ``Settings()``; nothing reads ``os.environ`` at
import time.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentstore.bus.connect import NatsSettings
from agentstore.errors import ConfigError

# deploy/k8s/base/config.yaml's placeholders: a service refuses to run on them unless told
# (ALLOW_PLACEHOLDER_SECRETS=1, the dev overlay), so a cluster never goes live with them.
PLACEHOLDER = "change-me"


class Settings(BaseSettings):
    """Where the servers are and how a service behaves."""

    model_config = SettingsConfigDict(
        env_file=".agentstore/stack.env", extra="ignore", frozen=True, env_prefix=""
    )

    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None
    # User and password from `agentstore auth` (credentials/service-<name>.json).
    nats_user: str | None = None
    nats_password: str | None = None
    # TLS to NATS (tls:// URLs): a CA bundle, and a client certificate for mutual TLS.
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    # An nkey seed file, a token, or a `nats` CLI context (see agentstore.bus.connect).
    nats_nkey: str | None = None
    nats_token: str | None = None
    nats_context: str | None = None
    # JetStream replicas for the streams a service provisions (3 on a 3-node cluster).
    stream_replicas: int = Field(default=1, ge=1, le=5)
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/agentstore"
    mongodb_url: str = "mongodb://127.0.0.1:27017"
    mongodb_db: str = "agentstore"
    # FerretDB's PostgreSQL database (FerretDB 1.24 on PostgreSQL only): the logs service
    # then reads with SQL that its indexes serve (stores/ferretsql.py). Unset for MongoDB.
    mongodb_sql_url: str | None = None
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "agentstore"
    s3_secret_key: str = "agentstore-secret"
    allow_placeholder_secrets: bool = False
    # HTTPS to S3; S3_CA_BUNDLE is honoured through the environment by the S3 client.
    s3_secure: bool = False
    # Where a browser or an agent outside the cluster reaches S3 (`https://files.example.com`,
    # `http://127.0.0.1:9000`): presigned URLs are signed for this address; unset, for
    # S3_ENDPOINT. The service itself still talks to S3_ENDPOINT.
    s3_public_url: str | None = None
    # The buckets' region. Presigning for S3_PUBLIC_URL signs with it rather than asking the
    # public address (which a pod may not reach); MinIO's and most servers' is us-east-1.
    s3_region: str | None = None
    # Buckets agents may write to (Artifact-Bucket / bucket); created at start.
    s3_buckets: list[str] = Field(default_factory=lambda: ["screenshots", "artifacts"])
    # LangGraph checkpoints' large values, content-addressed (`{agent}/{sha256}`; CONTRACT v1.8).
    s3_checkpoints_bucket: str = "checkpoints"

    # Ingest tuning: see MEASUREMENTS (batches of 500-1000 are the sweet spot).
    ingest_batch: int = Field(default=500, ge=1, le=5000)
    ingest_workers: int = Field(default=2, ge=1, le=64)
    # Processes per `agentstore serve` (each one like a replica): Python uses one core each.
    service_processes: int = Field(default=1, ge=1, le=64)
    # How long a graceful stop may take before in-flight work is cancelled;
    # keep it below Kubernetes' terminationGracePeriodSeconds.
    drain_seconds: float = Field(default=20.0, gt=0)
    # `after` (read your writes): how long a query waits for ingest to catch up.
    after_wait_seconds: float = Field(default=5.0, gt=0, le=60)
    # Port of the /healthz, /readyz and /metrics HTTP endpoint; 0 picks a free one.
    health_port: int = Field(default=0, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    log_level: str = "INFO"

    # web console: its HTTP address, and the evaluator identity its write actions
    # (cancel a run, redrive a dead letter) use; unset, the console is read-only.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    web_evaluator: str | None = None
    # The console's login: the token an operator types at /login (unset: no login, a warning
    # at start); its sessions' lifetime; the Host names it answers beside loopback ones.
    web_login_token: str | None = None
    web_session_hours: float = Field(default=12.0, gt=0)
    web_allowed_hosts: list[str] = Field(default_factory=list)
    # otlp service: the OTLP/HTTP receiver (4318 is OpenTelemetry's standard port).
    otlp_host: str = "127.0.0.1"
    otlp_port: int = Field(default=4318, ge=0, le=65535)
    # Exports carry a per-agent bearer token (otlp/auth.py); unset: required when there is a
    # secret to check it against (AGENTSTORE_ENROLLMENT_TOKEN or IDENTITY_K8S_ISSUER).
    otlp_require_token: bool | None = None
    # The folder of `agentstore auth` credentials files (the write identity's is read from it).
    agentstore_credentials: str | None = None

    # identity service (run-time identities, `make up AUTH=1`): the account key that signs the
    # user JWTs it issues (an nkey seed, SA...; `agentstore auth` writes issuer.nk), the fleet's
    # enrollment token agents present, its callout login (account IDENTITY) and its system
    # login (account SYS, to cut a revoked identity's connections). Unset seed: no callout.
    identity_issuer_seed: str | None = None
    agentstore_enrollment_token: str | None = None
    identity_nats_user: str | None = None
    identity_nats_password: str | None = None
    system_nats_user: str | None = None
    system_nats_password: str | None = None
    # How long an issued identity's login lasts before NATS asks again (a reconnect re-asks).
    identity_ttl_seconds: float = Field(default=12 * 3600.0, gt=0)
    # Kubernetes projected service-account tokens as agents' bootstrap credential (instead of,
    # or beside, the enrollment token), verified against the cluster issuer's keys: set the
    # issuer (the API server's --service-account-issuer) and the JWKS (its /openid/v1/jwks,
    # or a file). The pod's name (or its service account's) is the agent id it may log in as.
    identity_k8s_issuer: str | None = None
    identity_k8s_audience: str = "agentstore"
    identity_k8s_jwks_url: str | None = None
    identity_k8s_jwks_file: str | None = None
    identity_k8s_agent_id: Literal["pod", "serviceaccount"] = "pod"
    identity_k8s_namespaces: list[str] = Field(default_factory=list)  # empty: any namespace
    identity_k8s_ca_file: str | None = None  # the issuer's CA (default: the pod's cluster CA)
    # A token of a key id the set lacks refetches the JWKS (a rotation), at most this often.
    identity_k8s_jwks_refetch_seconds: float = Field(default=30.0, ge=0)

    # logs service: days to keep per collection (logs, memories, conversations,
    # messages, events, agent_outputs, and traces with their spans); absent means forever.
    # JSON in the env: RETENTION_DAYS='{"logs": 30, "messages": 365}'.
    retention_days: dict[str, float] = Field(default_factory=lambda: {"logs": 30.0, "traces": 30.0})
    # logs service: what a model's tokens cost, USD per million (input, output), by model name
    # or a prefix of it, for the traces' cost (priced when a span is stored):
    # MODEL_PRICES='{"gpt-4o": [2.5, 10], "claude-sonnet-4": [3, 15]}'. None is shipped:
    # prices change, and a wrong figure is worse than none.
    model_prices: dict[str, tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]] = Field(
        default_factory=dict
    )
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # How often the artifacts service deletes checkpoint threads whose TTL passed.
    checkpoint_ttl_sweep_seconds: float = Field(default=60.0, gt=0)
    # metrics service: days per tier, e.g. METRICS_RETENTION_DAYS='{"raw_days": 7,
    # "minute_days": 30, "hour_days": 400}' (those are the defaults).
    metrics_retention_days: dict[str, float] = Field(default_factory=dict)
    # metrics service: entries each profile history keeps, e.g. METRICS_HISTORY_CAPS=
    # '{"test_history": 200}' (defaults: test_history 50, learning_patterns 100,
    # improvement_suggestions 50, seed 002's max_*_size settings).
    metrics_history_caps: dict[str, int] = Field(default_factory=dict)

    @property
    def nats(self) -> NatsSettings:
        """The NATS connection settings, as clients and the CLI build them too."""
        return NatsSettings(
            url=self.nats_url, user=self.nats_user, password=self.nats_password, creds=self.nats_creds,
            nkey=self.nats_nkey, token=self.nats_token, tls_ca=self.nats_tls_ca,
            tls_cert=self.nats_tls_cert, tls_key=self.nats_tls_key, context=self.nats_context,
        ).with_context()  # fmt: skip

    def s3_public(self) -> tuple[str, bool] | None:
        """S3_PUBLIC_URL as the S3 client takes it, (host[:port], https), or None when unset;
        a ConfigError naming the fix when it is not a bare http(s) address."""
        if not self.s3_public_url:
            return None
        url = urlsplit(self.s3_public_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.path.strip("/") or url.query:
            raise ConfigError(
                f"S3_PUBLIC_URL={self.s3_public_url!r} is not an S3 address: give scheme, host and "
                "optionally port, no path (`https://files.example.com`, `http://127.0.0.1:9000`); "
                "S3 signs the path, so a server behind a path prefix cannot be presigned for"
            )
        return url.netloc, url.scheme == "https"

    def refuse_placeholder_secrets(self) -> None:
        """A ConfigError when a secret is still deploy/k8s's placeholder."""
        if self.allow_placeholder_secrets:
            return
        named = [name.upper() for name in ("postgres_url", "mongodb_url", "mongodb_sql_url", "s3_secret_key")
                 if PLACEHOLDER in (getattr(self, name) or "")]  # fmt: skip
        if named:
            raise ConfigError(
                f"{', '.join(named)} still hold the placeholder {PLACEHOLDER!r} of "
                "deploy/k8s/base/config.yaml: put real secrets in agentstore-secrets "
                "(deploy/k8s/README.md), or set ALLOW_PLACEHOLDER_SECRETS=1 for a throw-away cluster"
            )
