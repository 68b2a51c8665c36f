"""The wire contract, declared once: every ingest subject, every endpoint, every service.

The stream catalogue, the NATS permissions (`agentstore auth`), the AsyncAPI
document, both clients and the services' endpoint binding are all derived
from these three tuples; `tests/test_contract.py` proves each derived
artefact matches them. docs/CONTRACT.md is the prose of the same contract.
"""

from __future__ import annotations

from agentstore.contract.model import IDENTITIES_BUCKET, Endpoint, IngestSubject, Role, ServiceDecl
from agentstore.schemas import artifacts as a
from agentstore.schemas import checkpoints as cp
from agentstore.schemas import identity as ident
from agentstore.schemas import logs as lg
from agentstore.schemas import metrics as m
from agentstore.schemas import sessions as ss
from agentstore.schemas import store as st
from agentstore.schemas import tasks as t
from agentstore.schemas import traces as tr
from agentstore.schemas.common import Page

AGENT: frozenset[Role] = frozenset({"agent"})
EVALUATOR: frozenset[Role] = frozenset({"evaluator"})
EVALUATOR_AGENT: frozenset[Role] = frozenset({"evaluator", "agent"})
EVERYONE: frozenset[Role] = frozenset({"evaluator", "agent", "frontend"})
EVALUATOR_FRONTEND: frozenset[Role] = frozenset({"evaluator", "frontend"})
# Seed 003's access matrix: evaluators read file metadata only; frontends (and an agent,
# its own) get presigned URLs.
FRONTEND_AGENT: frozenset[Role] = frozenset({"frontend", "agent"})

INGEST: tuple[IngestSubject, ...] = (
    IngestSubject("logs", lg.LogIn, "LOGS", "logs", "a log line", notice=True),
    IngestSubject("memories", lg.MemoryIn, "LOGS", "logs", "a memory; keyed ones: the newest ts wins"),
    IngestSubject("conversations", lg.ConversationIn, "LOGS", "logs", "a conversation (upsert)", upsert=True),
    IngestSubject("messages", lg.MessageIn, "LOGS", "logs", "a message of a conversation"),
    IngestSubject("events", lg.EventIn, "LOGS", "logs", "an audit event (append-only)"),
    IngestSubject("outputs", lg.OutputIn, "LOGS", "logs", "a structured, versioned output (upsert)", upsert=True),
    IngestSubject("spans", tr.SpanIn, "LOGS", "logs", "a finished span of a trace (v1.12; the first stored wins)"),
    IngestSubject("tasks", t.TaskIn, "TASKS", "tasks", "a task's state (upsert, newest ts wins)", upsert=True),
    IngestSubject("progress", t.ProgressIn, "TASKS", "tasks", "a progress step of a task"),
    IngestSubject("metrics", m.MetricIn, "METRICS", "metrics", "a point of a named metric series"),
    IngestSubject("artifacts", None, "ARTIFACTS", "artifacts", "an inline artifact (raw bytes, headers)"),
    IngestSubject("uploads", a.UploadIn, "ARTIFACTS", "artifacts", "registers a presigned upload"),
)  # fmt: skip

# fmt: off
# logs service
QUERY_LOGS = Endpoint("query.logs", lg.LogsQuery, Page[lg.LogItem], "logs", EVALUATOR_AGENT, "logs, newest first", after="LOGS")
QUERY_MEMORIES = Endpoint("query.memories", lg.MemoriesQuery, Page[lg.MemoryItem], "logs", EVALUATOR_AGENT, "memories, newest first", after="LOGS")
QUERY_CONVERSATIONS = Endpoint("query.conversations", lg.ConversationsQuery, Page[lg.ConversationItem], "logs", EVALUATOR_AGENT, "conversations, newest updated_at first", after="LOGS")
QUERY_CONVERSATION = Endpoint("query.conversation", lg.ConversationQuery, lg.Conversation, "logs", EVALUATOR_AGENT, "one conversation with its messages", after="LOGS")
QUERY_MESSAGES = Endpoint("query.messages", lg.MessagesQuery, Page[lg.MessageItem], "logs", EVALUATOR_AGENT, "a conversation's messages in pages, oldest first", after="LOGS")
QUERY_EVENTS = Endpoint("query.events", lg.EventsQuery, Page[lg.EventItem], "logs", EVALUATOR_AGENT, "audit events, oldest first", after="LOGS")
QUERY_OUTPUTS = Endpoint("query.outputs", lg.OutputsQuery, Page[lg.OutputItem], "logs", EVALUATOR_AGENT, "agent outputs, newest first", after="LOGS")
SESSION_ADD = Endpoint("agents.{agent}.rpc.session.add", ss.AddSessionItems, ss.SessionAdded, "logs", AGENT, "appends items to one of the agent's sessions (idempotent on batch_id)")
SESSION_ITEMS = Endpoint("agents.{agent}.rpc.session.items", ss.SessionItemsQuery, ss.SessionItems, "logs", AGENT, "a session's latest items, in the order added")
SESSION_POP = Endpoint("agents.{agent}.rpc.session.pop", ss.PopSessionItem, ss.PoppedSessionItem, "logs", AGENT, "removes and returns a session's newest item")
SESSION_CLEAR = Endpoint("agents.{agent}.rpc.session.clear", ss.ClearSession, ss.SessionCleared, "logs", AGENT, "removes every item of a session")
STORE_BATCH = Endpoint("agents.{agent}.rpc.store.batch", st.StoreBatch, st.StoreResults, "logs", AGENT, "the agent's long-term memory store: gets, searches, puts, deletes and namespace lists in one batch")
QUERY_STORE = Endpoint("query.store", st.StoreQuery, st.StoreFound, "logs", EVALUATOR, "search one agent's memory store by text, vector (both: fused) or filter (v1.9)")
QUERY_SESSIONS = Endpoint("query.sessions", ss.SessionsQuery, Page[ss.SessionSummary], "logs", EVALUATOR, "an agent's sessions with their item counts")
QUERY_SESSION = Endpoint("query.session", ss.SessionQuery, ss.SessionItems, "logs", EVALUATOR, "an agent's session: its latest items in the order added")
QUERY_TRACES = Endpoint("query.traces", tr.TracesQuery, Page[tr.TraceItem], "logs", EVALUATOR_AGENT, "traces, newest (or slowest) first, with their spans, errors, models, tokens and cost (v1.12)", after="LOGS")
QUERY_TRACE = Endpoint("query.trace", tr.TraceQuery, tr.Trace, "logs", EVALUATOR_AGENT, "one trace: its summary and its spans in start order, in pages (v1.12)", after="LOGS")
QUERY_AGENTS = Endpoint("query.agents", lg.AgentsQuery, Page[lg.AgentItem], "logs", EVALUATOR, "agents, most recently seen first, with their recent errors", after="LOGS")
# tasks service
QUERY_TASKS = Endpoint("query.tasks", t.TasksQuery, Page[t.TaskItem], "tasks", EVERYONE, "tasks with their latest progress", after="TASKS")
QUERY_TASK = Endpoint("query.task", t.TaskQuery, t.Task, "tasks", EVERYONE, "a task, its progress and evaluations", after="TASKS")
QUERY_PROGRESS = Endpoint("query.progress", t.ProgressQuery, Page[t.Progress], "tasks", EVERYONE, "a task's progress steps in pages", after="TASKS")
QUERY_RUN_EVENTS = Endpoint("query.run_events", t.RunEventsQuery, Page[t.RunEvent], "tasks", EVALUATOR, "a run's audit trail in pages")
QUERY_TASK_COUNTS = Endpoint("query.task_counts", t.TaskCountsQuery, t.TaskCounts, "tasks", EVERYONE, "tasks counted by status (and per agent)", after="TASKS")
QUERY_RUN_COUNTS = Endpoint("query.run_counts", t.RunCountsQuery, t.RunCounts, "tasks", EVALUATOR, "runs counted by status")
QUERY_STUDY = Endpoint("query.study", t.StudyQuery, t.StudyDetail, "tasks", EVALUATOR, "a study by spec hash, its runs counted")
RUNS_UPDATE = Endpoint("runs.update", t.UpdateRun, t.Run, "tasks", EVALUATOR, "sets a run's status, phase, summary, error or artifacts (audited)")
RUNS_EVENT = Endpoint("runs.event", t.RunEventIn, t.RunEvent, "tasks", EVALUATOR, "appends an orchestrator event to a run's trail")
QUERY_RUNS = Endpoint("query.runs", t.RunsQuery, Page[t.Run], "tasks", EVALUATOR, "runs, newest first")
QUERY_RUN = Endpoint("query.run", t.RunQuery, t.RunDetail, "tasks", EVALUATOR, "a run, its study and its events")
EVAL_RECORD = Endpoint("eval.record", t.EvalRecord, t.Evaluation, "tasks", EVALUATOR, "records an evaluation (idempotent on id)")
RUNS_SUBMIT = Endpoint("runs.submit", t.SubmitRun, t.Submitted, "tasks", EVALUATOR, "queues a run of a study spec")
RUNS_CANCEL = Endpoint("runs.cancel", t.CancelRun, t.Run, "tasks", EVALUATOR, "cancels a queued or running run")
CLAIM = Endpoint("agents.{agent}.rpc.claim", t.ClaimRun, t.Claimed, "tasks", AGENT, "claims the next queued run")
RENEW = Endpoint("agents.{agent}.rpc.renew", t.RenewLease, t.Renewed, "tasks", AGENT, "renews a held lease")
PHASE = Endpoint("agents.{agent}.rpc.phase", t.MovePhase, t.Run, "tasks", AGENT, "moves a held run to a phase")
RELEASE = Endpoint("agents.{agent}.rpc.release", t.ReleaseRun, t.Run, "tasks", AGENT, "releases a held run")
RESTORE = Endpoint("agents.{agent}.rpc.restore", t.RestoreRequest, t.Restored, "tasks", AGENT, "what an agent needs to resume", after="TASKS")
# artifacts service
QUERY_FILES = Endpoint("query.files", a.FilesQuery, Page[a.FileItem], "artifacts", EVERYONE, "file metadata", after="ARTIFACTS")
QUERY_FILE_URL = Endpoint("query.file_url", a.FileUrlQuery, a.FileUrl, "artifacts", FRONTEND_AGENT, "a presigned GET of a file")
QUERY_SCREENSHOTS = Endpoint("query.screenshots", a.ScreenshotsQuery, Page[a.FileItem], "artifacts", FRONTEND_AGENT, "files with a presigned GET each", after="ARTIFACTS")
FILES_DELETE = Endpoint("files.delete", a.DeleteFiles, a.FilesDeleted, "artifacts", EVALUATOR, "deletes an agent's files under a prefix (audited)")
PRESIGN = Endpoint("agents.{agent}.rpc.presign", a.PresignRequest, a.Presigned, "artifacts", AGENT, "a presigned PUT under the agent's prefix")
# artifacts service: checkpoints (v1.8), an agent's graph state per step (LangGraph's model)
CHECKPOINT_PUT = Endpoint("agents.{agent}.rpc.checkpoint.put", cp.PutCheckpoint, cp.CheckpointStored, "artifacts", AGENT, "stores a checkpoint and its new channel values (large ones by digest, uploaded once)")
CHECKPOINT_WRITES = Endpoint("agents.{agent}.rpc.checkpoint.writes", cp.PutWrites, cp.CheckpointStored, "artifacts", AGENT, "stores pending writes of a checkpoint's tasks")
CHECKPOINT_GET = Endpoint("agents.{agent}.rpc.checkpoint.get", cp.GetCheckpoint, cp.CheckpointFound, "artifacts", AGENT, "a checkpoint, its values and pending writes (the newest without an id)")
CHECKPOINT_LIST = Endpoint("agents.{agent}.rpc.checkpoint.list", cp.ListCheckpoints, cp.CheckpointPage, "artifacts", AGENT, "checkpoints newest first, filtered by metadata, in pages")
CHECKPOINT_VALUES = Endpoint("agents.{agent}.rpc.checkpoint.values", cp.GetValues, cp.Values, "artifacts", AGENT, "values a reply deferred (past its size budget)")
CHECKPOINT_HISTORY = Endpoint("agents.{agent}.rpc.checkpoint.history", cp.DeltaHistoryQuery, cp.DeltaHistory, "artifacts", AGENT, "a delta channel's writes back to its nearest stored value, along a checkpoint's parent chain, in one request")
CHECKPOINT_DELETE = Endpoint("agents.{agent}.rpc.checkpoint.delete", cp.DeleteCheckpoints, cp.CheckpointsRemoved, "artifacts", AGENT, "deletes threads' or runs' checkpoints and writes")
CHECKPOINT_COPY = Endpoint("agents.{agent}.rpc.checkpoint.copy", cp.CopyThread, cp.ThreadCopied, "artifacts", AGENT, "copies a thread's checkpoints and writes to another thread (values shared, not copied)")
CHECKPOINT_PRUNE = Endpoint("agents.{agent}.rpc.checkpoint.prune", cp.PruneThreads, cp.CheckpointsRemoved, "artifacts", AGENT, "keeps each namespace's newest checkpoint (and what it needs), or deletes all")
QUERY_THREADS = Endpoint("query.threads", cp.ThreadsQuery, Page[cp.ThreadItem], "artifacts", EVALUATOR, "an agent's LangGraph threads, most recently checkpointed first")
QUERY_CHECKPOINTS = Endpoint("query.checkpoints", cp.CheckpointsQuery, cp.CheckpointSteps, "artifacts", EVALUATOR, "a thread's checkpoints in order: step, source, what changed (previews), task writes")
# metrics service
QUERY_METRICS = Endpoint("query.metrics", m.MetricsQuery, m.MetricSeries, "metrics", EVALUATOR_AGENT, "a metric's series", after="METRICS")
QUERY_METRIC_NAMES = Endpoint("query.metric_names", m.MetricNamesQuery, m.MetricNames, "metrics", EVALUATOR_AGENT, "the names of the stored series", after="METRICS")
QUERY_LATEST_METRICS = Endpoint("query.latest_metrics", m.LatestMetricsQuery, m.LatestMetrics, "metrics", EVALUATOR_AGENT, "each experiment's newest value of each metric", after="METRICS")
QUERY_AGENT_METRICS = Endpoint("query.agent_metrics", m.ProfileQuery, m.Profile, "metrics", EVALUATOR_AGENT, "one agent's profile, or all profiles", replies=(m.Profiles,))
QUERY_SUMMARY = Endpoint("query.summary", m.SummaryQuery, m.Summary, "metrics", EVALUATOR_FRONTEND, "fleet analytics")
EVAL_CUSTODY_TEST = Endpoint("eval.custody_test", m.CustodyTest, m.Profile, "metrics", EVALUATOR, "records a custody test result")
EVAL_LEARNING = Endpoint("eval.learning", m.Learning, m.Profile, "metrics", EVALUATOR, "records learning figures")
EVAL_AGENT_METRICS_UPDATE = Endpoint("eval.agent_metrics.update", m.UpdateProfile, m.Profile, "metrics", EVALUATOR, "sets profile fields")
EVAL_AGENT_METRICS_CREATE_OR_UPDATE = Endpoint("eval.agent_metrics.create_or_update", m.CreateOrUpdateProfile, m.Profile, "metrics", EVALUATOR, "creates a profile or sets any of its columns")
QUERY_CUSTODY_METRICS = Endpoint("query.custody_metrics", m.CustodyQuery, m.Custody, "metrics", EVALUATOR, "one agent's custody protocol figures")
EVAL_AGENT_METRICS_BULK = Endpoint("eval.agent_metrics.bulk", m.BulkUpdate, m.BulkUpdated, "metrics", EVALUATOR, "sets profile fields of many agents, all or nothing")
EVAL_AGENT_METRICS_RESET = Endpoint("eval.agent_metrics.reset", m.ResetProfile, m.Profile, "metrics", EVALUATOR, "resets a profile")
# identity service (run-time identities under auth: issued by NATS auth callout)
IDENTITY_REVOKE = Endpoint("identity.revoke", ident.RevokeIdentity, ident.Revoked, "identity", EVALUATOR, "cuts an identity's connections and refuses its logins from now on")
IDENTITY_UNREVOKE = Endpoint("identity.unrevoke", ident.UnrevokeIdentity, ident.Unrevoked, "identity", EVALUATOR, "lets a revoked identity log in again")
IDENTITY_LIST = Endpoint("identity.list", ident.IdentitiesQuery, ident.Identities, "identity", EVALUATOR, "identities issued at run time: when, how often, and revoked")
# fmt: on

# Every endpoint above, in the order declared (by service): declaring one is all it takes.
ENDPOINTS: tuple[Endpoint, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Endpoint))  # type: ignore[type-arg]

SERVICES: tuple[ServiceDecl, ...] = (
    ServiceDecl("logs", streams=("LOGS",)),
    # tasks copies run transitions to the holder's audit trail and asks metrics for restore
    # (the profile, and the open experiments' latest values).
    ServiceDecl(
        "tasks",
        streams=("TASKS",),
        publishes=("agents.*.events",),
        calls=("query.agent_metrics", "query.latest_metrics"),
    ),  # fmt: skip
    # artifacts copies deletions to the agent's audit trail.
    ServiceDecl("artifacts", streams=("ARTIFACTS",), publishes=("agents.*.events",)),
    ServiceDecl("metrics", streams=("METRICS",)),
    # The OTLP/HTTP receiver: spans, logs and metrics of OpenTelemetry-instrumented agents
    # become their events, logs and metric points (it publishes as a gateway, consumes nothing).
    ServiceDecl(
        "otlp",
        streams=(),
        publishes=("agents.*.logs", "agents.*.events", "agents.*.spans", "agents.*.metrics"),
    ),
    # Run-time identities: answers NATS's auth callout (on its own logins in the IDENTITY and
    # SYS accounts) and keeps what it issued in a key-value bucket.
    ServiceDecl("identity", streams=(), buckets=(IDENTITIES_BUCKET,)),
)
