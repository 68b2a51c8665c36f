"""Prometheus metrics of one service, in its own registry (several services may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
