"""Prometheus metrics of one service, in its own registry (several services may share a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # CPU, memory, open files, GC and the Python version of this process.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.pending = Gauge(
            "agentstore_consumer_pending",
            "Messages in the stream not yet delivered to the service's consumer (read at scrape)",
            ["stream", "consumer"],
            registry=self.registry,
        )
        self.ack_pending = Gauge(
            "agentstore_consumer_ack_pending",
            "Messages delivered to the consumer and not yet acknowledged (read at scrape)",
            ["stream", "consumer"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "agentstore_consumer_backlog",
            "Pending + unacknowledged messages of the service's consumer: what KEDA scales on",
            ["stream", "consumer"],
            registry=self.registry,
        )
        self.deadletters = Gauge(
            "agentstore_deadletters",
            "Dead letters of this service waiting in DEADLETTER (read at scrape)",
            ["service"],
            registry=self.registry,
        )
        self.ingested = Counter(
            "agentstore_ingest_messages",
            "Ingest messages by subject kind and outcome (stored, deadlettered, retried)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "agentstore_ingest_batch_seconds",
            "Time to decode, store and ack one fetched batch",
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "agentstore_ingest_stage_seconds",
            "Time of one stage of a fetched batch (decode, write, follow_up, ack); queued, stored:"
            " its oldest message from the stream to fetched, to acked",
            ["stage"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.requests = Counter(
            "agentstore_requests",
            "Request-reply calls by endpoint and reply code",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "agentstore_request_seconds",
            "Request-reply latency by endpoint",
            ["endpoint"],
            registry=self.registry,
        )


class CountsCollector(Collector):
    """A counter family read at each scrape from a store's own tally (a store knows nothing
    of Prometheus): `counts()` maps label values to totals."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str],
        counts: Callable[[], Mapping[Any, float]],
    ) -> None:  # fmt: skip
        self._name, self._documentation, self._labels, self._counts = name, documentation, labels, counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=list(self._labels))
        for values, total in self._counts().items():
            family.add_metric(list(values), total)
        yield family
