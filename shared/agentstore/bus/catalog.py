"""Every JetStream stream of the system, declared once.

Ingest subjects are ``agents.{agent}.{kind}``: exactly three tokens, so the
``agents.*.{kind}`` filters never capture ``agents.{agent}.rpc.>``
(request-reply, four or more tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_PREFIX = "deadletter"
DUPLICATE_WINDOW_SECONDS = 120.0
MAX_MESSAGE_BYTES = 1024 * 1024
INGEST_MAX_AGE_SECONDS = 7 * 24 * 3600.0
DEADLETTER_MAX_AGE_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """One stream: its name, the subjects it captures, who consumes it."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = INGEST_MAX_AGE_SECONDS

    @property
    def kinds(self) -> tuple[str, ...]:
        """The last subject token of each ingest subject (``logs``, ``memories`` ...)."""
        return tuple(s.rsplit(".", 1)[-1] for s in self.subjects)


def ingest_stream(name: str, *kinds: str) -> StreamSpec:
    return StreamSpec(name=name, subjects=tuple(f"agents.*.{k}" for k in kinds))


LOGS = ingest_stream("LOGS", "logs", "memories", "conversations", "messages", "events", "outputs")
TASKS = ingest_stream("TASKS", "tasks", "progress")
METRICS = ingest_stream("METRICS", "metrics")
ARTIFACTS = ingest_stream("ARTIFACTS", "artifacts", "uploads")
DEADLETTER = StreamSpec(
    name=DEADLETTER_STREAM,
    subjects=(f"{DEADLETTER_PREFIX}.>",),
    max_age_seconds=DEADLETTER_MAX_AGE_SECONDS,
)

INGEST_STREAMS: tuple[StreamSpec, ...] = (LOGS, TASKS, METRICS, ARTIFACTS)


def deadletter_subject(service: str) -> str:
    return f"{DEADLETTER_PREFIX}.{service}"


# The stream whose writes each query reads: a query's `after` names this stream.
QUERY_STREAMS: dict[str, str] = {
    **dict.fromkeys(("logs", "memories", "conversations", "conversation", "events", "outputs"), "LOGS"),
    **dict.fromkeys(("tasks", "task", "runs", "run"), "TASKS"),
    **dict.fromkeys(("files", "file_url"), "ARTIFACTS"),
    **dict.fromkeys(("metrics", "agent_metrics", "summary"), "METRICS"),
}
