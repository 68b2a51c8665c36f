"""The metrics service's wire messages: metric points, series queries and agent profiles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from agentstore.schemas.common import (
    After,
    AgentId,
    AgentIds,
    EventId,
    FreeMap,
    Name,
    Reply,
    Strict,
    UtcTime,
)

Agg = Literal["avg", "min", "max", "sum", "count", "last"]
# A point is ~40 bytes of JSON: 20,000 of them stay well under the 1 MiB message limit.
DEFAULT_POINTS_PER_PAGE = 10_000
MAX_POINTS_PER_PAGE = 20_000
Difficulty = Literal["basic", "standard", "advanced", "expert", "master"]
Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]
Score = Annotated[float, msgspec.Meta(ge=0, le=100)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class MetricIn(Strict):
    """Body of `agents.{agent}.metrics`: one point of a named series."""

    id: EventId
    name: Name
    value: float
    ts: UtcTime | None = None
    experiment_id: EventId | None = None
    task_id: EventId | None = None
    tags: FreeMap | None = None
    agent_id: AgentId | None = None


class MetricsQuery(Strict):
    """`query.metrics`: raw points, or buckets of `bucket_seconds` aggregated by `agg`."""

    name: Name
    agent_ids: AgentIds | None = None
    experiment_id: EventId | None = None
    since: UtcTime | None = None
    until: UtcTime | None = None
    bucket_seconds: Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)] | None = None
    agg: Agg = "avg"
    # Points per page (a page always fits a NATS message); `cursor` from the last reply.
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_POINTS_PER_PAGE)] = DEFAULT_POINTS_PER_PAGE
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    after: After | None = None


class MetricNamesQuery(Strict):
    """`query.metric_names` (v1.3): the names of the series stored (of these agents)."""

    agent_ids: AgentIds | None = None
    after: After | None = None


class LatestMetricsQuery(Strict):
    """`query.latest_metrics` (v1.4, seed 000): each experiment's newest value of every metric
    published with that `experiment_id`, for `rpc.restore` and for anyone resuming one."""

    agent_id: AgentId
    experiment_ids: Annotated[list[EventId], msgspec.Meta(min_length=1, max_length=1000)]
    after: After | None = None


class ProfileQuery(Strict):
    agent_id: AgentId | None = None
    # Without agent_id (v1.3): every profile, by agent id, in pages.
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    cursor: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class SummaryQuery(Strict):
    pass


class CustodyTest(Strict):
    """`eval.custody_test`: one custody protocol test result (seed 002)."""

    agent_id: AgentId
    passed: bool
    score: Score
    duration: Annotated[float, msgspec.Meta(ge=0, le=86_400 * 7)]
    timestamp: UtcTime | None = None
    xp_awarded: Annotated[int, msgspec.Meta(ge=0, le=100_000)] | None = None


class Learning(Strict):
    """`eval.learning`: a learning cycle's results."""

    agent_id: AgentId
    learning_score: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    success_rate: Rate | None = None
    failure_rate: Rate | None = None
    pass_rate: Rate | None = None
    patterns: Annotated[list[Text], msgspec.Meta(max_length=100)] | None = None
    suggestions: Annotated[list[Text], msgspec.Meta(max_length=50)] | None = None


class ProfileUpdate(Strict):
    """The fields `eval.agent_metrics.update` may set; any other is a 400."""

    agent_type: Name | None = None
    learning_score: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    success_rate: Rate | None = None
    failure_rate: Rate | None = None
    pass_rate: Rate | None = None
    total_learning_cycles: Count | None = None
    xp: Count | None = None
    level: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    prestige: Count | None = None
    current_difficulty: Difficulty | None = None
    custody_level: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    custody_xp: Count | None = None
    adversarial_wins: Count | None = None
    status: Name | None = None
    is_active: bool | None = None
    priority: Literal["low", "medium", "high", "critical"] | None = None
    capabilities: Any = None  # any JSON (v1.3; seed 002 keeps lists here)
    config: Any = None  # any JSON


class ProfileFields(ProfileUpdate):
    """Every column of seed 002's `agent_metrics` an importer or orchestrator may set
    (v1.3): ProfileUpdate's fields, the counters, streaks, histories and the last test."""

    total_tests_given: Count | None = None
    total_tests_passed: Count | None = None
    total_tests_failed: Count | None = None
    consecutive_successes: Count | None = None
    consecutive_failures: Count | None = None
    last_test_date: UtcTime | None = None
    test_history: Annotated[list[Any], msgspec.Meta(max_length=1000)] | None = None
    learning_patterns: Annotated[list[Any], msgspec.Meta(max_length=1000)] | None = None
    improvement_suggestions: Annotated[list[Any], msgspec.Meta(max_length=1000)] | None = None


class CreateOrUpdateProfile(Strict):
    """`eval.agent_metrics.create_or_update` (v1.3, seed 002): creates the agent's profile
    when it has none, then sets exactly the fields given."""

    agent_id: AgentId
    metrics: ProfileFields


class CustodyQuery(Strict):
    """`query.custody_metrics` (v1.3, seed 002): one agent's custody protocol figures."""

    agent_id: AgentId


class UpdateProfile(Strict):
    agent_id: AgentId
    updates: ProfileUpdate


class BulkUpdate(Strict):
    updates: Annotated[dict[AgentId, ProfileUpdate], msgspec.Meta(min_length=1, max_length=1000)]


class ResetProfile(Strict):
    agent_id: AgentId


def update_fields(update: ProfileUpdate) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(update).items() if v is not None}


# -- replies -------------------------------------------------------------------


class MetricNames(Reply):
    names: list[str]


class LatestValue(Reply):
    value: float
    ts: str


class LatestMetrics(Reply):
    """`query.latest_metrics`: `experiments[experiment_id][name]` is the newest point's value
    and time; an experiment without points is absent."""

    agent_id: str
    experiments: dict[str, dict[str, LatestValue]]


class Series(Reply):
    """One agent's points: `[ts, value]` pairs, oldest first."""

    agent_id: str
    points: list[tuple[str, float]]


class MetricSeries(Reply):
    """`query.metrics`: `tier_seconds` says which tier answered (3600, 60, or 0 for raw points).
    Long ranges come in pages of `limit` points, ordered by agent then time; `next_cursor`
    (null on the last page) continues where this page ended."""

    name: str
    tier_seconds: int
    series: list[Series]
    next_cursor: str | None  # always present: null on the last page


class Profile(Reply):
    """An agent's metrics profile (seed 002's `agent_metrics` row)."""

    agent_id: str
    learning_score: float
    success_rate: float
    failure_rate: float
    pass_rate: float
    total_learning_cycles: int
    xp: int
    level: int
    prestige: int
    current_difficulty: Difficulty
    total_tests_given: int
    total_tests_passed: int
    total_tests_failed: int
    consecutive_successes: int
    consecutive_failures: int
    test_history: list[Any]
    custody_level: int
    custody_xp: int
    adversarial_wins: int
    learning_patterns: list[Any]
    improvement_suggestions: list[Any]
    status: str
    is_active: bool
    priority: str
    created_at: str
    updated_at: str
    agent_type: str | None = None
    last_test_date: str | None = None
    capabilities: Any = None
    config: Any = None


class Profiles(Reply):
    """`query.agent_metrics` without `agent_id`: every profile, in pages (v1.3)."""

    items: list[Profile]
    next_cursor: str | None  # always present: null on the last page


class BulkUpdated(Reply):
    updated: dict[str, Profile]


class SummaryFigures(Reply):
    total_learning_score: float
    total_xp: int
    total_tests_given: int
    total_tests_passed: int
    average_level: float
    # v1.3: the custody protocol's figures beside the seed's five.
    total_tests_failed: int = 0
    total_custody_xp: int = 0
    average_custody_level: float = 0.0
    total_adversarial_wins: int = 0


class Custody(Reply):
    agent_id: str
    total_tests_given: int
    total_tests_passed: int
    total_tests_failed: int
    consecutive_successes: int
    consecutive_failures: int
    current_difficulty: str
    custody_level: int
    custody_xp: int
    adversarial_wins: int
    test_history: list[Any]
    last_test_date: str | None = None


class Summary(Reply):
    """`query.summary`: fleet analytics (seed 002)."""

    total_agents: int
    agents: list[str]
    summary: SummaryFigures
