"""What the bus's loops need from the service around them, as interfaces (arq's `typing.py`
way): the lifecycle supplies them (`lifecycle.metrics.ServiceMetrics`, `lifecycle.health.
Faults`), so imports run one way, lifecycle -> bus, never back."""

from __future__ import annotations

from typing import Any, Protocol


class IngestMetrics(Protocol):
    """Prometheus families the ingest loop counts into."""

    @property
    def ingested(self) -> Any: ...  # Counter[kind, outcome]

    @property
    def batch_seconds(self) -> Any: ...  # Histogram

    @property
    def stage_seconds(self) -> Any: ...  # Histogram[stage]


class RequestMetrics(Protocol):
    """Prometheus families the request-reply server counts into."""

    @property
    def requests(self) -> Any: ...  # Counter[endpoint, code]

    @property
    def request_seconds(self) -> Any: ...  # Histogram[endpoint]


class FaultReporter(Protocol):
    """Where the ingest loop reports faults of the deployment (readiness false while any is
    active) and their clearing."""

    def report(self, where: str, reason: str) -> None: ...

    def clear(self, where: str) -> None: ...


class NoFaults:
    """A FaultReporter for a loop run without a service around it (benches, tests)."""

    def report(self, where: str, reason: str) -> None:
        pass

    def clear(self, where: str) -> None:
        pass
