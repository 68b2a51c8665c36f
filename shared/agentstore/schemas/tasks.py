"""The tasks service's wire messages: tasks, progress, evaluations and runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from agentstore.schemas.common import (
    DEFAULT_LIMIT,
    After,
    AgentId,
    AgentIds,
    EventId,
    FreeMap,
    Limit,
    Name,
    Reply,
    Strict,
    UtcTime,
)
from agentstore.schemas.metrics import LatestValue, Profile

# v1.3 adds "paused": open like pending and running (restore returns it).
TaskStatus = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ReleaseStatus = Literal["succeeded", "failed", "queued"]
Phase = Literal["bundle", "execute", "extract", "done"]
# A study's SHA-256 (hex) of its canonical spec; seed 004's own hashes keep their value.
SpecHash = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8,128}$(?!\n)")]
Cursor = Annotated[str, msgspec.Meta(max_length=512)]
Step = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
LeaseSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Attempt = Annotated[int, msgspec.Meta(ge=1)]
Title = Annotated[str, msgspec.Meta(max_length=1024)]
Notes = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
TERMINAL_TASK = ("completed", "failed", "cancelled")


class TaskIn(Strict):
    """Body of `agents.{agent}.tasks`: upsert; the newest `ts` wins."""

    id: EventId
    status: TaskStatus
    ts: UtcTime | None = None
    kind: Name | None = None
    title: Title | None = None
    meta: FreeMap | None = None
    agent_id: AgentId | None = None


class ProgressIn(Strict):
    """Body of `agents.{agent}.progress`: one step of a task."""

    id: EventId
    task_id: EventId
    step: Step
    status: Name
    ts: UtcTime | None = None
    percent: Percent | None = None
    detail: FreeMap | None = None
    agent_id: AgentId | None = None


class TasksQuery(Strict):
    agent_ids: AgentIds | None = None
    status: TaskStatus | None = None
    kind: Name | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class TaskQuery(Strict):
    agent_id: AgentId
    task_id: EventId
    after: After | None = None


class EvalRecord(Strict):
    """`eval.record`: idempotent on id."""

    id: EventId
    agent_id: AgentId
    task_id: EventId
    evaluator: Name
    score: float
    passed: bool
    notes: Notes | None = None
    details: FreeMap | None = None


class RestoreRequest(Strict):
    after: After | None = None
    # v1.3: the open tasks come in pages (newest updated first); runs and the profile
    # come with the first page.
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000
    cursor: Cursor | None = None


class SubmitRun(Strict):
    """`runs.submit`: the study is deduplicated by the SHA-256 of its canonical JSON."""

    spec: FreeMap
    run_id: EventId | None = None
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] = 0
    kind: Name = "run"
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3


class CancelRun(Strict):
    run_id: EventId


class ClaimRun(Strict):
    lease_seconds: LeaseSeconds = 300.0
    kinds: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=64)] | None = None


class RenewLease(Strict):
    """`attempt` (from the claim) fences a worker whose lease expired and was re-claimed."""

    run_id: EventId
    lease_seconds: LeaseSeconds = 300.0
    attempt: Attempt | None = None


class MovePhase(Strict):
    run_id: EventId
    phase: Phase
    attempt: Attempt | None = None


class ReleaseRun(Strict):
    run_id: EventId
    status: ReleaseStatus
    error: FreeMap | None = None
    summary: FreeMap | None = None
    artifacts: FreeMap | None = None
    attempt: Attempt | None = None


class RunsQuery(Strict):
    status: RunStatus | None = None
    spec_hash: SpecHash | None = None  # v1.3
    phase: Phase | None = None
    claimed_by: AgentId | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class RunQuery(Strict):
    run_id: EventId


class ProgressQuery(Strict):
    """`query.progress` (v1.3): a task's progress steps in order (step, ts), in pages."""

    agent_id: AgentId
    task_id: EventId
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    after: After | None = None


class RunEventsQuery(Strict):
    """`query.run_events` (v1.3): a run's audit trail, oldest first, in pages."""

    run_id: EventId
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class StudyQuery(Strict):
    """`query.study` (v1.3, seed 004): a study by its spec hash, with its runs counted."""

    spec_hash: SpecHash


class UpdateRun(Strict):
    """`runs.update` (v1.3, seed 004): an orchestrator sets a run's status, phase, summary,
    error or artifacts outside a lease; the change is recorded in the run's audit trail.
    A run set to a terminal status loses its lease holder."""

    run_id: EventId
    status: RunStatus | None = None
    phase: Phase | None = None
    summary: FreeMap | None = None
    error: FreeMap | None = None
    artifacts: FreeMap | None = None


class RunEventIn(Strict):
    """`runs.event` (v1.3, seed 004): an orchestrator's event appended to a run's trail."""

    run_id: EventId
    type: Name
    payload: FreeMap | None = None


class TaskCountsQuery(Strict):
    """`query.task_counts` (v1.3): tasks counted by status in SQL, never by paging;
    with `agent_ids`, also per agent."""

    agent_ids: AgentIds | None = None
    kind: Name | None = None
    after: After | None = None


class RunCountsQuery(Strict):
    """`query.run_counts` (v1.3): runs counted by status, optionally of one study."""

    spec_hash: SpecHash | None = None


# -- replies -------------------------------------------------------------------


class Progress(Reply):
    id: str
    step: int
    status: str
    ts: str
    percent: float | None = None
    detail: FreeMap | None = None


class TaskItem(Reply):
    """A task as `query.tasks` lists it, with its latest progress."""

    id: str
    agent_id: str
    status: TaskStatus
    kind: str
    created_at: str
    updated_at: str
    title: str | None = None
    meta: FreeMap | None = None
    latest_progress: Progress | None = None
    # v1.4, in `rpc.restore` only: the newest value of each metric published with this task's
    # id as `experiment_id` (seed 000's experiments resume with their metrics).
    latest_metrics: dict[str, LatestValue] | None = None


class Evaluation(Reply):
    id: str
    agent_id: str
    task_id: str
    evaluator: str
    score: float
    passed: bool
    created_at: str
    notes: str | None = None
    details: FreeMap | None = None


class Task(TaskItem):
    """`query.task`: the task, all its progress (by step) and its evaluations."""

    progress: list[Progress] = msgspec.field(default_factory=list)
    evaluations: list[Evaluation] = msgspec.field(default_factory=list)
    # v1.3: set when there are more steps than shown; `query.progress` pages the rest.
    progress_next_cursor: str | None = None


class Run(Reply):
    run_id: str
    spec_hash: str
    kind: str
    priority: int
    status: RunStatus
    phase: Phase
    attempt: int
    max_attempts: int
    created_at: str
    updated_at: str
    claimed_by: str | None = None
    lease_expires_at: str | None = None
    error: FreeMap | None = None
    summary: FreeMap | None = None
    artifacts: FreeMap | None = None
    started_at: str | None = None
    ended_at: str | None = None


class ClaimedRun(Run):
    """A claimed run carries its study's spec, so the worker needs no second request."""

    spec: FreeMap = msgspec.field(default_factory=dict)


class Claimed(Reply):
    """`rpc.claim`: the run, or null when none is queued."""

    run: ClaimedRun | None


class Renewed(Reply):
    run_id: str
    lease_expires_at: str


class Submitted(Reply):
    run_id: str
    spec_hash: str
    study_created: bool


class Study(Reply):
    spec_hash: str
    spec: FreeMap
    created_at: str


class RunEvent(Reply):
    id: int
    ts: str
    type: str
    attempt: int
    agent_id: str | None = None
    payload: FreeMap | None = None


class RunDetail(Run):
    """`query.run`: the run, its study, its events."""

    study: Study | None = None
    events: list[RunEvent] = msgspec.field(default_factory=list)
    # v1.3: set when the trail is longer than shown; `query.run_events` pages the rest.
    events_next_cursor: str | None = None


class TaskCounts(Reply):
    counts: dict[str, int]
    by_agent: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)


class RunCounts(Reply):
    counts: dict[str, int]


class StudyDetail(Study):
    runs: dict[str, int] = msgspec.field(default_factory=dict)  # runs of it by status


class Restored(Reply):
    """`rpc.restore`: what an agent needs to resume after a restart."""

    agent_id: str
    tasks: list[TaskItem]
    runs: list[Run]
    metrics: Profile | None
    # v1.3: more open tasks than this page holds: pass it back as `cursor`.
    next_cursor: str | None = None


# Seed 004's summary fields (OpenMC results): typed when present; other keys stay free.
SUMMARY_FIELDS: dict[str, Any] = {
    "keff": float,
    "keff_std": Annotated[float, msgspec.Meta(ge=0)],
    "keff_uncertainty_pcm": Annotated[float, msgspec.Meta(ge=0)],
    "n_batches": Annotated[int, msgspec.Meta(ge=1)],
    "n_inactive": Annotated[int, msgspec.Meta(ge=0)],
    "n_particles": Annotated[int, msgspec.Meta(ge=1)],
}


def check_summary(summary: dict[str, Any] | None) -> None:
    """Raise ValueError naming the field when a typed summary field has the wrong type."""
    for name, kind in SUMMARY_FIELDS.items():
        if summary is not None and name in summary:
            try:
                msgspec.convert(summary[name], kind)
            except msgspec.ValidationError as exc:
                raise ValueError(f"summary.{name}: {exc}") from None
