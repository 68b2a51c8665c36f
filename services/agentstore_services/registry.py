"""All services by name: what `agentstore serve` can run."""

from __future__ import annotations

from agentstore.lifecycle.runner import ServiceSpec
from agentstore_services.artifacts.service import SPEC as ARTIFACTS
from agentstore_services.logs.service import SPEC as LOGS
from agentstore_services.metrics.service import SPEC as METRICS
from agentstore_services.otlp.service import SPEC as OTLP
from agentstore_services.tasks.service import SPEC as TASKS
from agentstore_services.web.service import SPEC as WEB

SERVICES: dict[str, ServiceSpec] = {s.name: s for s in (LOGS, TASKS, ARTIFACTS, METRICS, WEB, OTLP)}
