"""The seed systems' own operations, in the seed's order, through the contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentstore import contract
from agentstore.client import AgentClient, EvaluatorClient
from agentstore.errors import BadRequest, Forbidden, NotFound
from agentstore.schemas.logs import OutputIn
from agentstore.schemas.tasks import ClaimRun, ReleaseRun, RenewLease, RestoreRequest
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost, running
from tests.helpers import eventually, new_agent


async def test_seed_004_studies_runs_summaries_events_and_claiming(
    tasks_service: ServiceHost, logs_service: ServiceHost, nats_server: Server
) -> None:
    worker = new_agent("worker")
    async with await EvaluatorClient.connect(nats_server.url) as orchestrator, \
            await AgentClient.connect(nats_server.url, worker) as agent:  # fmt: skip
        spec = {"geometry": "pincell", "particles": 10_000}
        # upsert_study + create_run: the study is stored once per canonical spec.
        first = await orchestrator.submit_run(spec, run_id="run_abc123")
        again = await orchestrator.submit_run(
            {"particles": 10_000, "geometry": "pincell"}, run_id="run_def456"
        )
        assert first.study_created and not again.study_created and first.spec_hash == again.spec_hash
        # get_study_by_hash
        study = await orchestrator.query("study", spec_hash=first.spec_hash)
        assert study.spec == spec and study.runs == {"queued": 2}
        # get_run
        run = await orchestrator.query("run", run_id="run_abc123")
        assert (run.status, run.phase) == ("queued", "bundle")
        # update_run_phase(execute, running, started), then extract: outside a lease.
        run = await orchestrator.request(
            "runs.update", run_id="run_abc123", phase="execute", status="running"
        )
        assert (run.status, run.phase) == ("running", "execute")
        await orchestrator.request("runs.update", run_id="run_abc123", phase="extract")
        # insert_summary: the typed OpenMC fields, and free ones beside them.
        summary = {"keff": 1.0234, "keff_std": 0.0012, "keff_uncertainty_pcm": 120.0, "n_batches": 100,
                   "n_inactive": 20, "n_particles": 10_000, "tally": "flux"}  # fmt: skip
        await orchestrator.request("runs.update", run_id="run_abc123", summary=summary)
        with pytest.raises(BadRequest, match="n_batches"):
            await orchestrator.request("runs.update", run_id="run_abc123", summary={"n_batches": "many"})
        # update_run_artifacts
        await orchestrator.request(
            "runs.update", run_id="run_abc123", artifacts={"statepoint": "s3://b/sp.h5"}
        )
        # complete
        done = await orchestrator.request(
            "runs.update", run_id="run_abc123", phase="done", status="succeeded"
        )
        assert (done.status, done.phase, done.summary, done.artifacts) == (
            "succeeded",
            "done",
            summary,
            {"statepoint": "s3://b/sp.h5"},
        )
        # append_event / get_events: the orchestrator's own event in the audit trail.
        event = await orchestrator.request(
            "runs.event", run_id="run_abc123", type="note", payload={"by": "ops"}
        )
        assert event.type == "note"
        trail = await orchestrator.query("run", run_id="run_abc123")
        types = [e.type for e in trail.events]
        assert types[0] == "queued" and types.count("updated") == 5 and types[-1] == "note"
        assert trail.events[1].payload == {"phase": "execute", "status": "running"}
        with pytest.raises(NotFound):
            await orchestrator.request("runs.event", run_id="no-such-run", type="note")
        # Multi-worker pattern: claim_next_run, renew_lease, release_run.
        claimed = await agent.call(contract.CLAIM, ClaimRun(lease_seconds=300))
        assert claimed.run is not None and claimed.run.run_id == "run_def456"
        await agent.call(contract.RENEW, RenewLease(run_id="run_def456", lease_seconds=300))
        await agent.call(contract.RELEASE, ReleaseRun(run_id="run_def456", status="failed",
                                                      error={"type": "ValueError", "message": "x"}))  # fmt: skip
        # upsert_agent_output / get_agent_outputs
        await agent.send(
            OutputIn(id="o1", kind="analysis", schema_version=1, data={"ok": True}, run_id="run_abc123")
        )
        written = await agent.flush()
        outputs = await orchestrator.query("outputs", run_id="run_abc123", after=written["LOGS"].as_after())
        assert [o.data for o in outputs.items] == [{"ok": True}]
        # Query patterns: queued runs, a study's runs newest first, the count by status.
        await orchestrator.submit_run(spec, run_id="run_ghi789")
        queued = await orchestrator.query("runs", status="queued")
        assert [r.run_id for r in queued.items] == ["run_ghi789"]
        of_study = await orchestrator.query("runs", spec_hash=first.spec_hash)
        assert [r.run_id for r in of_study.items] == ["run_ghi789", "run_def456", "run_abc123"]
        counts = await orchestrator.query("run_counts", spec_hash=first.spec_hash)
        assert counts.counts == {"queued": 1, "failed": 1, "succeeded": 1}


async def test_long_lists_page_instead_of_being_cut(
    tasks_service: ServiceHost, logs_service: ServiceHost, nats_server: Server
) -> None:
    """A conversation of 1,200 messages, a task of 1,100 steps, a run with a long trail:
    the embedded lists show the first page and say where the rest is; the list endpoints
    page through all of it."""
    agent = new_agent("long")
    async with await AgentClient.connect(nats_server.url, agent) as client, \
            await EvaluatorClient.connect(nats_server.url) as ev:  # fmt: skip
        await client.conversation("c1", user_id="u")
        for i in range(1200):
            await client.message("c1", "user", f"message {i}", id=f"m{i:04d}")
        await client.task("t1", "running")
        for step in range(1100):
            await client.progress("t1", step, "ok", id=f"p{step:04d}")
        written = await client.flush()
        conversation = await ev.query("conversation", agent_id=agent, conversation_id="c1",
                                      after=written["LOGS"].as_after())  # fmt: skip
        assert len(conversation.messages) == 1000 and conversation.messages_next_cursor
        rest = [m.id async for m in ev.pages("messages", agent_id=agent, conversation_id="c1", limit=150)]
        assert rest == [f"m{i:04d}" for i in range(1200)]
        task = await ev.query("task", agent_id=agent, task_id="t1", after=written["TASKS"].as_after())
        assert len(task.progress) == 1000 and task.progress_next_cursor
        more = await ev.query("progress", agent_id=agent, task_id="t1", cursor=task.progress_next_cursor)
        assert [p.step for p in more.items] == list(range(1000, 1100)) and more.next_cursor is None
        run = await ev.submit_run({"long": True}, run_id="long-trail")
        for i in range(30):
            await ev.request("runs.event", run_id=run.run_id, type="tick", payload={"i": i})
        trail = [e.type async for e in ev.pages("run_events", run_id=run.run_id, limit=7)]
        assert trail == ["queued"] + ["tick"] * 30
        detail = await ev.query("run", run_id=run.run_id)
        assert len(detail.events) == 31 and detail.events_next_cursor is None


async def test_restore_and_profiles_page_past_a_thousand(
    tasks_service: ServiceHost, metrics_service: ServiceHost, nats_server: Server
) -> None:
    """Seed 000's restore: every open task comes back, never cut at 1,000; and every
    profile of `query.agent_metrics {}` pages."""
    from agentstore.schemas.metrics import CustodyTest

    agent = new_agent("resume")
    async with await AgentClient.connect(nats_server.url, agent) as client, \
            await EvaluatorClient.connect(nats_server.url) as ev:  # fmt: skip
        for i in range(1200):
            await client.task(f"t{i:04d}", "running" if i % 2 else "pending", title=f"job {i}")
        written = await client.flush()
        first = await client.call(contract.RESTORE, RestoreRequest(after=written["TASKS"].as_after()))
        assert len(first.tasks) == 1000 and first.next_cursor
        restored = await client.restore()
        assert sorted(t.id for t in restored.tasks) == [f"t{i:04d}" for i in range(1200)]
        agents = [new_agent("prof") for _ in range(150)]
        for a in agents:  # a custody test creates the profile
            await ev.custody_test(CustodyTest(agent_id=a, passed=True, score=80, duration=1.0))
        seen = [p.agent_id async for p in ev.pages("agent_metrics", limit=40)]
        assert set(agents) <= set(seen) and len(seen) == len(set(seen))


async def test_seed_002_agent_metrics_operations_in_the_seeds_order(
    metrics_service: ServiceHost, nats_server: Server
) -> None:
    from agentstore.schemas.metrics import CustodyTest, Learning, ProfileUpdate

    guardian, imperium = new_agent("guardian"), new_agent("imperium")
    async with await EvaluatorClient.connect(nats_server.url) as ev:
        # get_agent_metrics of an agent never seen
        with pytest.raises(NotFound):
            await ev.query("agent_metrics", agent_id=guardian)
        # create_or_update_agent_metrics: any column of the seed's table, any JSON config
        created = await ev.request("eval.agent_metrics.create_or_update", agent_id=guardian, metrics={
            "agent_type": "guardian", "xp": 240, "level": 3, "total_tests_given": 11, "total_tests_passed": 9,
            "total_tests_failed": 2, "consecutive_successes": 4, "last_test_date": "2025-01-25T10:00:00Z",
            "test_history": [{"passed": True, "score": 90}], "learning_patterns": ["short prompts"],
            "capabilities": ["scan", "guard"], "config": {"mode": "strict", "limits": [1, 2]},
        })  # fmt: skip
        assert (created.xp, created.total_tests_failed, created.capabilities) == (240, 2, ["scan", "guard"])
        assert created.last_test_date == "2025-01-25T10:00:00.000Z"
        again = await ev.request("eval.agent_metrics.create_or_update", agent_id=guardian,
                                 metrics={"status": "testing"})  # fmt: skip
        assert (again.status, again.xp) == ("testing", 240)  # only the field given changed
        await ev.request(
            "eval.agent_metrics.create_or_update", agent_id=imperium, metrics={"agent_type": "imperium"}
        )
        # get_all_agent_metrics
        everyone = [p.agent_id async for p in ev.pages("agent_metrics")]
        assert {guardian, imperium} <= set(everyone)
        # update_specific_metrics
        updated = await ev.update_metrics(guardian, ProfileUpdate(priority="high"))
        assert updated.priority == "high"
        # update_custody_test_result, then get_custody_metrics
        await ev.custody_test(
            CustodyTest(agent_id=guardian, passed=True, score=95, duration=120, xp_awarded=25)
        )
        custody = await ev.query("custody_metrics", agent_id=guardian)
        assert (custody.total_tests_given, custody.total_tests_passed, custody.custody_xp) == (12, 10, 25)
        assert custody.test_history[-1]["score"] == 95
        # update_learning_metrics
        learned = await ev.learning(Learning(agent_id=imperium, learning_score=150.0, patterns=["retry"]))
        assert learned.learning_score == 150.0
        # bulk_update_metrics, reset_agent_metrics
        await ev.bulk_update_metrics(
            {guardian: ProfileUpdate(prestige=1), imperium: ProfileUpdate(prestige=2)}
        )
        reset = await ev.reset_metrics(imperium)
        assert (reset.prestige, reset.learning_score) == (0, 0)
        # analytics summary, with the custody figures
        summary = await ev.query("summary")
        assert {guardian, imperium} <= set(summary.agents)
        assert summary.summary.total_tests_failed >= 2 and summary.summary.total_custody_xp >= 25


async def test_seed_000_experiments_pause_and_resume_and_a_bad_state_says_what_is_accepted(
    tasks_service: ServiceHost, metrics_service: ServiceHost, nats_server: Server
) -> None:
    import msgspec
    import nats

    agent = new_agent("exp")
    async with await AgentClient.connect(nats_server.url, agent) as client:
        # Seed 000's order: the experiment is created (SyncExperimentStatus), its metrics
        # stream in (SyncMetrics), it is paused; the agent restarts (RestoreExperiments).
        await client.task("exp-1", "running", kind="experiment", title="lr sweep")
        await client.progress("exp-1", 3, "epoch", percent=30.0)
        for step, loss in enumerate([0.9, 0.5, 0.31]):
            await client.metric(
                "loss", loss, experiment_id="exp-1", ts=datetime(2026, 11, step + 1, 10, tzinfo=UTC)
            )
        await client.metric("accuracy", 0.88, experiment_id="exp-1", ts=datetime(2026, 11, 2, 10, tzinfo=UTC))
        # A late point from the past does not overtake the newest one.
        await client.metric("loss", 7.0, experiment_id="exp-1", ts=datetime(2026, 10, 1, 10, tzinfo=UTC))
        await client.metric("loss", 0.2, experiment_id="exp-2")
        await client.task("exp-1", "paused", kind="experiment")
        await client.task("exp-2", "completed", kind="experiment")
        written = await client.flush()
        latest = await client.query("latest_metrics", agent_id=agent, experiment_ids=["exp-1", "nope"])
        assert {n: (v.value, v.ts) for n, v in latest.experiments["exp-1"].items()} == {
            "loss": (0.31, "2026-11-03T10:00:00.000Z"),
            "accuracy": (0.88, "2026-11-02T10:00:00.000Z"),
        }
        assert "nope" not in latest.experiments
        restored = await client.call(contract.RESTORE, RestoreRequest(after=written["TASKS"].as_after()))
        assert [(t.id, t.status, t.latest_progress.step if t.latest_progress else None)
                for t in restored.tasks] == [("exp-1", "paused", 3)]  # fmt: skip
        assert restored.tasks[0].latest_metrics is not None
        assert {n: v.value for n, v in restored.tasks[0].latest_metrics.items()} == {
            "loss": 0.31,
            "accuracy": 0.88,
        }
        with pytest.raises(Forbidden, match="may only read its own data"):
            await client.query("latest_metrics", agent_id="someone-else", experiment_ids=["exp-1"])
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().publish(
            f"agents.{agent}.tasks", msgspec.json.encode({"id": "e3", "status": "snoozing"})
        )

        async def reason() -> str | None:
            info = await nc.jetstream().stream_info("DEADLETTER")
            if not info.state.messages:
                return None
            for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
                msg = await nc.jetstream().get_msg("DEADLETTER", seq)
                if (msg.headers or {}).get("Dead-Subject") == f"agents.{agent}.tasks":
                    return msg.headers["Dead-Reason"]
            return None

        why = await eventually(reason, timeout=10, what="the dead letter")
        assert "status accepts pending, running, paused, completed, failed, cancelled" in why
    finally:
        await nc.drain()


async def test_seed_003_agents_write_evaluators_read_metadata_frontends_get_urls_and_a_prefix_is_deleted(
    tasks_service: ServiceHost, logs_service: ServiceHost, artifacts_service: ServiceHost, nats_server: Server
) -> None:
    import urllib.request

    agent = new_agent("shots")
    async with await AgentClient.connect(nats_server.url, agent) as client, \
            await EvaluatorClient.connect(nats_server.url) as ev:  # fmt: skip
        # Agents: progress and status to PostgreSQL, logs and memories to MongoDB, screenshots to MinIO.
        await client.task("t1", "running", title="browse")
        await client.progress("t1", 1, "clicked", percent=50.0)
        await client.log("info", "clicked the button", task_id="t1")
        first = await client.screenshot(b"\x89PNG one", "one.png", task_id="t1")
        await client.screenshot(b"\x89PNG two", "two.png", task_id="t1")
        kept = await client.screenshot(b"\x89PNG keep", "keep.png", task_id="t2")
        written = await client.flush()
        # Evaluators: everything, files as metadata.
        files = await ev.query("files", agent_ids=[agent], after=written["ARTIFACTS"].as_after())
        assert {f.file_id for f in files.items} >= {first, kept} and all(f.url is None for f in files.items)
        # Frontends: summaries, progress, and screenshots through presigned URLs.
        frontend = ev  # no auth here: the subjects are what the frontend identity may call
        shots = await frontend.query("screenshots", agent_ids=[agent])
        url = next(s.url for s in shots.items if s.file_id == first)
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: ASYNC210 - a tiny local GET
            assert reply.read() == b"\x89PNG one"
        # Delete a prefix: the agent's task t1 folder, objects and metadata, audited.
        gone = await ev.request("files.delete", agent_id=agent, prefix="t1/")
        assert (gone.files, gone.objects) == (2, 2)
        left = await ev.query("files", agent_ids=[agent])
        assert [f.file_id for f in left.items] == [kept]

        async def audited() -> Any:
            page = await ev.query("events", agent_ids=[agent], type="files_deleted")
            return page.items

        (event,) = await eventually(audited, timeout=10, what="the deletion in the audit trail")
        assert event.payload == {"prefix": "t1/", "files": 2, "objects": 2}
        with pytest.raises(BadRequest):
            await ev.request("files.delete", agent_id=agent, prefix="../other")


async def test_seed_002_history_caps_are_settable(nats_server: Server, stack_servers: Any) -> None:
    from agentstore.schemas.metrics import CustodyTest, Learning
    from agentstore_server.metrics.service import SPEC as METRICS
    from tests.conftest import make_settings

    settings = make_settings(nats_server, stack_servers.mongo, stack_servers,
                             metrics_history_caps={"test_history": 3, "learning_patterns": 2})  # fmt: skip
    agent = new_agent("capped")
    async with running(METRICS, settings), await EvaluatorClient.connect(nats_server.url) as ev:
        for i in range(5):
            await ev.custody_test(CustodyTest(agent_id=agent, passed=True, score=float(i), duration=1.0))
        profile = await ev.learning(Learning(agent_id=agent, patterns=["a", "b", "c"], suggestions=["s"]))
        assert [h["score"] for h in profile.test_history] == [2.0, 3.0, 4.0]
        assert profile.learning_patterns == ["b", "c"] and profile.improvement_suggestions == ["s"]
    with pytest.raises(Exception, match="unknown histories"):
        async with running(METRICS, make_settings(nats_server, stack_servers.mongo, stack_servers,
                                                  metrics_history_caps={"tests": 3})):  # fmt: skip
            pass


async def test_seed_001_conversations_in_the_seeds_order(
    logs_service: ServiceHost, nats_server: Server, settings: Any, tmp_path: Any
) -> None:
    """POST /conversations, POST /chat, GET /conversations, GET /conversations/{id}, then
    POST /sync-conversations (the seed's JSON files moving in) — through the contract."""
    import json

    from agentstore_server.ops.portable import import_seed_tree

    agent = new_agent("normo")
    async with await AgentClient.connect(nats_server.url, agent) as client:
        # POST /conversations: a new conversation for a user, with its context.
        await client.conversation("c-1", user_id="alice", context={"project": "permits", "lang": "de"})
        # POST /chat: the user's message and the assistant's answer with its steps,
        # the PDFs it read and its citations.
        await client.message("c-1", "user", "Which permits does a carport need?")
        await client.message(
            "c-1", "assistant", "In Vienna, none below 50 m².", agent_steps=["search", "read", "answer"],
            pdf_names=["bauordnung.pdf"], source_citations=[{"pdf": "bauordnung.pdf", "page": 12}],
            meta_data={"model": "gpt-x", "tokens": 812},
        )  # fmt: skip
        await client.conversation("c-2", user_id="bob")
        await client.flush()
        # GET /conversations: the user's conversations, newest first.
        listed = await client.query("conversations", user_id="alice")
        assert [(c.conversation_id, c.user_id, c.context) for c in listed.items] == [
            ("c-1", "alice", {"project": "permits", "lang": "de"})]  # fmt: skip
        everyone = await client.query("conversations")
        assert {c.conversation_id for c in everyone.items} == {"c-1", "c-2"}
        # GET /conversations/{id}: the conversation and its messages, oldest first.
        conv = await client.query("conversation", agent_id=agent, conversation_id="c-1")
        assert [(m.role, m.content) for m in conv.messages] == [
            ("user", "Which permits does a carport need?"), ("assistant", "In Vienna, none below 50 m².")]  # fmt: skip
        answer = conv.messages[1]
        assert (answer.agent_steps, answer.pdf_names) == (["search", "read", "answer"], ["bauordnung.pdf"])
        assert answer.source_citations == [{"pdf": "bauordnung.pdf", "page": 12}]
        assert answer.meta_data == {"model": "gpt-x", "tokens": 812}
        assert conv.created_at <= conv.updated_at and conv.messages_next_cursor is None

    # POST /sync-conversations: the seed's existing JSON files move in (idempotently).
    folder = tmp_path / "conversations" / agent
    folder.mkdir(parents=True)
    (folder / "c-old.json").write_text(json.dumps({
        "conversation_id": "c-old", "user_id": "alice", "created_at": "2025-06-01T09:00:00",
        "messages": [{"role": "user", "content": "Old question", "timestamp": "2025-06-01T09:00:00"},
                     {"role": "assistant", "content": "Old answer", "timestamp": "2025-06-01T09:00:05"}],
    }))  # fmt: skip
    for _ in range(2):
        assert await import_seed_tree([tmp_path / "conversations"], None, settings) == {
            "agents": 1, "conversations": 1, "messages": 2}  # fmt: skip
    async with await EvaluatorClient.connect(nats_server.url) as ev:
        listed = await ev.query("conversations", agent_ids=[agent], user_id="alice")
        assert [c.conversation_id for c in listed.items] == ["c-1", "c-old"]
        old = await ev.query("conversation", agent_id=agent, conversation_id="c-old")
        assert [m.content for m in old.messages] == ["Old question", "Old answer"]
        assert old.updated_at == "2025-06-01T09:00:05.000Z"
