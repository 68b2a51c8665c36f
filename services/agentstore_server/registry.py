"""All services by name: what `agentstore serve` can run."""

from __future__ import annotations

from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.identity.service import SPEC as IDENTITY
from agentstore_server.lifecycle.runner import ServiceSpec
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.metrics.service import SPEC as METRICS
from agentstore_server.otlp.service import SPEC as OTLP
from agentstore_server.tasks.service import SPEC as TASKS
from agentstore_server.web.service import SPEC as WEB

SERVICES: dict[str, ServiceSpec] = {s.name: s for s in (LOGS, TASKS, ARTIFACTS, METRICS, WEB, OTLP, IDENTITY)}
