"""The seed systems' own data moves in: seed 002's agent_metrics table (CSV and a live
PostgreSQL table), seed 003's trajectory folders, seed 004's MongoDB collections. Each
import validates every record, stores the good ones next to the refused, and a second
import of the same data changes nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import asyncpg

from agentstore.client import EvaluatorClient
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost
from agentstore_server.ops import moving_in
from tests.conftest import Stack
from tests.helpers import new_agent

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# -- seed 004 ------------------------------------------------------------------------

SPEC_HASH = "9bc8221" + "0" * 57


def _lines(*docs: str) -> str:
    return "".join(f"{d}\n" for d in docs)


def seed_004_files(folder: Path, agent: str) -> None:
    """The seed's five collections as `mongoexport` writes them (relaxed Extended JSON)."""
    folder.mkdir()
    (folder / "studies.jsonl").write_text(_lines(
        '{"_id":{"$oid":"65a000000000000000000001"},"spec_hash":"' + SPEC_HASH + '",'
        '"canonical_spec":{"geometry":"pincell","enrichment":4.5},"created_at":{"$date":"2026-01-20T09:00:00Z"}}',
        '{"_id":{"$oid":"65a000000000000000000002"},"spec_hash":"abc12345","canonical_spec":"{\\"geometry\\":\\"assembly\\"}"}',
        '{"spec_hash":"nospec"}',
    ))  # fmt: skip
    (folder / "runs.jsonl").write_text(_lines(
        '{"_id":{"$oid":"65b000000000000000000001"},"run_id":"run_done","spec_hash":"' + SPEC_HASH + '",'
        '"status":"succeeded","phase":"done","created_at":{"$date":"2026-01-20T09:01:00Z"},'
        '"started_at":{"$date":"2026-01-20T09:02:00Z"},"ended_at":{"$date":"2026-01-20T09:30:00Z"},'
        '"artifacts":{"bundle_path":"/b/run_done","statepoint_path":"/s/run_done.h5"},"worker_host":"node-7"}',
        '{"run_id":"run_live","spec_hash":"' + SPEC_HASH + '","status":"running","phase":"execute",'
        '"claimed_by":"' + agent + '","lease_expires_at":{"$date":"2099-01-01T00:00:00Z"}}',
        '{"run_id":"run_queued","spec_hash":"abc12345"}',
        '{"run_id":"run_bad","spec_hash":"abc12345","status":"exploded"}',
        '{"run_id":"run_orphan","spec_hash":"fedcba9876543210"}',
        "not json at all",
    ))  # fmt: skip
    (folder / "summaries.jsonl").write_text(_lines(
        '{"_id":{"$oid":"65c000000000000000000001"},"run_id":"run_done","keff":1.0234,"keff_std":0.0012,'
        '"keff_uncertainty_pcm":120.0,"n_batches":100,"n_inactive":20,"n_particles":10000,'
        '"created_at":{"$date":"2026-01-20T09:30:00Z"}}',
        '{"run_id":"run_queued","keff":"high"}',
    ))  # fmt: skip
    (folder / "events.jsonl").write_text(_lines(
        '{"_id":{"$oid":"65d000000000000000000002"},"run_id":"run_done","type":"phase","ts":{"$date":"2026-01-20T09:10:00Z"},'
        '"agent":"' + agent + '","payload":{"phase":"execute"}}',
        '{"_id":{"$oid":"65d000000000000000000001"},"run_id":"run_done","type":"created","ts":{"$date":"2026-01-20T09:01:00Z"}}',
        '{"_id":{"$oid":"65d000000000000000000003"},"run_id":"run_missing","type":"created"}',
    ))  # fmt: skip
    (folder / "agent_outputs.jsonl").write_text(_lines(
        '{"_id":{"$oid":"65e000000000000000000001"},"run_id":"run_done","agent":"' + agent + '","kind":"analysis",'
        '"schema_version":2,"data":{"verdict":"critical","margin_pcm":234},"created_at":{"$date":"2026-01-20T09:31:00Z"}}',
        '{"run_id":"run_done","agent":"not a valid agent!","kind":"analysis","data":{}}',
    ))  # fmt: skip


async def test_seed_004_collections_move_in_keeping_spec_hashes_and_run_state(
    tasks_service: ServiceHost, logs_service: ServiceHost, settings: Settings, tmp_path: Path
) -> None:
    agent = new_agent("openmc")
    seed_004_files(tmp_path / "aonp", agent)
    report = await moving_in.import_seed_004(tmp_path / "aonp", settings)
    assert report.counts == {"studies": 2, "runs": 3, "summaries": 1, "events": 2, "agent_outputs": 1}
    refused = "\n".join(report.reasons)
    assert report.rejected == 7, refused
    for where in ("studies.jsonl:3", "runs.jsonl:4", "runs.jsonl:5", "runs.jsonl:6", "summaries.jsonl:2",
                  "events.jsonl:3", "agent_outputs.jsonl:2"):  # fmt: skip
        assert where in refused
    assert "status accepts queued, running, succeeded, failed, cancelled" in refused
    assert "its study fedcba9876543210 is neither in studies.jsonl nor stored" in refused
    assert "summary.keff" in refused and "run_missing: no such run" in refused

    async with await EvaluatorClient.connect(settings.nats_url) as ev:
        study = await ev.query("study", spec_hash=SPEC_HASH)
        assert study.spec == {"geometry": "pincell", "enrichment": 4.5}
        assert study.created_at == "2026-01-20T09:00:00.000Z"
        assert study.runs == {"succeeded": 1, "running": 1}
        done = await ev.query("run", run_id="run_done")
        assert (done.status, done.phase, done.created_at, done.ended_at) == (
            "succeeded", "done", "2026-01-20T09:01:00.000Z", "2026-01-20T09:30:00.000Z")  # fmt: skip
        assert done.summary["keff"] == 1.0234 and done.summary["n_particles"] == 10000
        assert done.artifacts == {"bundle_path": "/b/run_done", "statepoint_path": "/s/run_done.h5"}
        trail = [(e.type, e.payload) for e in done.events]
        assert trail[0][0] == "imported" and trail[0][1]["fields"] == {"worker_host": "node-7"}
        # Within a file's batch the trail is in time order, whatever the file's order.
        assert [t for t, _ in trail[1:]] == ["created", "phase"]
        live = await ev.query("run", run_id="run_live")
        assert (live.status, live.claimed_by, live.attempt) == ("running", agent, 1)
        assert (await ev.query("run_counts", spec_hash="abc12345")).counts == {"queued": 1}
        outputs = await ev.query("outputs", run_id="run_done")
        assert [(o.agent_id, o.kind, o.schema_version, o.data["verdict"]) for o in outputs.items] == [
            (agent, "analysis", 2, "critical")]  # fmt: skip

        # Again: nothing new, nothing changed.
        again = await moving_in.import_seed_004(tmp_path / "aonp", settings)
        assert again.counts == report.counts and again.rejected == report.rejected
        assert [e.id for e in (await ev.query("run", run_id="run_done")).events] == [
            e.id for e in done.events
        ]
        assert (await ev.query("run", run_id="run_done")).summary == done.summary
        assert len((await ev.query("outputs", run_id="run_done")).items) == 1


# -- seed 002 ------------------------------------------------------------------------

SEED_002_TABLE = """
CREATE TABLE agent_metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id VARCHAR(100) NOT NULL,
    agent_type VARCHAR(50) NOT NULL UNIQUE,
    learning_score FLOAT DEFAULT 0.0,
    success_rate FLOAT DEFAULT 0.0,
    total_learning_cycles INTEGER DEFAULT 0,
    xp INTEGER DEFAULT 0,
    level INTEGER DEFAULT 1,
    current_difficulty VARCHAR(20) DEFAULT 'basic',
    total_tests_given INTEGER DEFAULT 0,
    total_tests_passed INTEGER DEFAULT 0,
    consecutive_successes INTEGER DEFAULT 0,
    last_test_date TIMESTAMP,
    test_history JSONB DEFAULT '[]',
    custody_level INTEGER DEFAULT 1,
    custody_xp INTEGER DEFAULT 0,
    learning_patterns JSONB DEFAULT '[]',
    is_active BOOLEAN DEFAULT true,
    capabilities JSONB,
    created_at TIMESTAMP DEFAULT NOW()
)
"""


async def test_seed_002_agent_metrics_table_moves_in_from_csv_and_from_postgresql(
    metrics_service: ServiceHost, nats_server: Server, stack_servers: Stack, tmp_path: Path
) -> None:
    guardian, imperium, broken = new_agent("guardian"), new_agent("imperium"), new_agent("broken")
    csv = tmp_path / "agent_metrics.csv"
    csv.write_text(
        "id,agent_id,agent_type,learning_score,xp,level,current_difficulty,total_tests_given,"
        "total_tests_passed,last_test_date,test_history,is_active,capabilities\n"
        f"1,g-1,{guardian},72.5,1450,3,advanced,12,9,2026-01-24 18:30:00,"
        f'"[{{""passed"": true, ""score"": 0.9}}]",true,"[""custody"", ""audit""]"\n'
        f"2,b-1,{broken},1.0,10,level-two,basic,,,,,,\n"
    )
    report = await moving_in.import_agent_metrics(str(csv), server=nats_server.url)
    assert report.counts == {"columns_without_a_place": 1, "profiles": 1}, report.reasons
    assert report.rejected == 1 and "agent_metrics.csv:3" in report.reasons[-1]
    assert "id" in report.reasons[0]  # the seed's own row id has no place, and says so

    source = servers.create_database(stack_servers.postgres.address, f"seed002{new_agent('db')[-8:]}")
    conn = await asyncpg.connect(source)
    try:
        await conn.execute(SEED_002_TABLE)
        await conn.execute(
            "INSERT INTO agent_metrics (agent_id, agent_type, learning_score, xp, level, consecutive_successes,"
            " last_test_date, test_history, learning_patterns, custody_xp) VALUES"
            " ('i-1', $1, 88.0, 3000, 5, 4, '2026-01-25 08:00:00', '[{\"passed\": false}]',"
            " '[\"prefers short answers\"]', 250)",
            imperium,
        )
    finally:
        await conn.close()
    from_pg = await moving_in.import_agent_metrics(source, server=nats_server.url)
    assert from_pg.counts["profiles"] == 1 and from_pg.rejected == 0, from_pg.reasons

    async with await EvaluatorClient.connect(nats_server.url) as ev:
        g = await ev.query("agent_metrics", agent_id=guardian)
        assert (g.learning_score, g.xp, g.level, g.current_difficulty) == (72.5, 1450, 3, "advanced")
        assert (g.total_tests_given, g.total_tests_passed, g.is_active) == (12, 9, True)
        assert g.test_history == [{"passed": True, "score": 0.9}] and g.capabilities == ["custody", "audit"]
        assert g.last_test_date == "2026-01-24T18:30:00.000Z"
        i = await ev.query("agent_metrics", agent_id=imperium)
        assert (i.learning_score, i.xp, i.level, i.consecutive_successes, i.custody_xp) == (
            88.0,
            3000,
            5,
            4,
            250,
        )
        assert i.learning_patterns == ["prefers short answers"]
        # Again: the same profiles, one each.
        await moving_in.import_agent_metrics(source, server=nats_server.url)
        await moving_in.import_agent_metrics(str(csv), server=nats_server.url)
        assert await ev.query("agent_metrics", agent_id=imperium) == i
        g2 = await ev.query("agent_metrics", agent_id=guardian)
        assert (g2.xp, g2.test_history) == (g.xp, g.test_history)


# -- seed 003 ------------------------------------------------------------------------


def trajectory_folder(root: Path, agent: str) -> None:
    """`organized_traj/`-style folders: a task's trajectory JSON and its step screenshots."""
    task = root / agent / "book-flight"
    (task / "shots").mkdir(parents=True)
    for n in (1, 2):
        (task / "shots" / f"step_{n}.png").write_bytes(PNG)
    (task / "trajectory.json").write_text(json.dumps({
        "instruction": "Book the cheapest flight to Lisbon",
        "model": "cua-7",
        "steps": [
            {"step": 1, "action": "click", "thought": "open the search", "screenshot": "shots/step_1.png",
             "timestamp": "2026-01-10T12:00:00"},
            {"step": 2, "action": "type", "text": "Lisbon", "screenshot": "step_2.png",
             "timestamp": 1768046460},
            "a string is not a step",
        ],
    }))  # fmt: skip
    (root / agent / "bad task name!").mkdir()


async def test_seed_003_trajectory_folders_become_progress_and_screenshots(
    tasks_service: ServiceHost, artifacts_service: ServiceHost, nats_server: Server, tmp_path: Path
) -> None:
    agent = new_agent("cua")
    trajectory_folder(tmp_path / "organized_traj", agent)
    report = await moving_in.import_trajectories(tmp_path / "organized_traj", server=nats_server.url)
    assert report.counts == {"screenshots": 2, "tasks": 1, "steps": 2}
    assert report.rejected == 2 and "step 3" in "\n".join(report.reasons)
    assert "is not a task id" in "\n".join(report.reasons)

    async with await EvaluatorClient.connect(nats_server.url) as ev:

        async def stored(report: Any) -> tuple[Any, Any]:
            """The task and the files once everything the import published is stored."""
            task = await ev.query("task", agent_id=agent, task_id="book-flight",
                                  after={"stream": "TASKS", "seq": report.acked["TASKS"]})  # fmt: skip
            files = await ev.query("files", agent_ids=[agent],
                                   after={"stream": "ARTIFACTS", "seq": report.acked["ARTIFACTS"]})  # fmt: skip
            return task, files

        task, files = await stored(report)
        assert (task.kind, task.title, task.status) == (
            "trajectory",
            "Book the cheapest flight to Lisbon",
            "completed",
        )
        assert task.meta == {"model": "cua-7"}
        by_name = {f.name: f for f in files.items}
        assert set(by_name) == {"shots_step_1.png", "shots_step_2.png"}
        assert all(f.task_id == "book-flight" and f.size == len(PNG) for f in files.items)
        first, second = task.progress
        # percent is a real (float4) column: 33.33 comes back as 33.33000183...
        assert (first.step, first.status, round(first.percent or 0, 2), first.ts) == (
            1, "step", 33.33, "2026-01-10T12:00:00.000Z")  # fmt: skip
        assert (
            first.detail["action"] == "click"
            and first.detail["screenshot_file_id"] == by_name["shots_step_1.png"].file_id
        )
        assert second.detail["screenshot_file_id"] == by_name["shots_step_2.png"].file_id
        assert second.ts == "2026-01-10T12:01:00.000Z"

        # Again: the same ids, so nothing new is stored.
        again = await moving_in.import_trajectories(tmp_path / "organized_traj", server=nats_server.url)
        assert again.counts == report.counts
        task_again, files_again = await stored(again)
        assert [f.file_id for f in files_again.items] == [f.file_id for f in files.items]
        assert [p.id for p in task_again.progress] == [p.id for p in task.progress]
