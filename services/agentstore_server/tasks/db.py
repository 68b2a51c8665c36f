"""The tasks service's one door to PostgreSQL: a typed method per named query.

The SQL is in `queries.sql` (named parameters); nothing else in the service
writes SQL. Rows leave as the wire shows them (`to_wire`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentstore.schemas.tasks import EvalRecord, ProgressIn, TaskIn
from agentstore_server.stores import pgwire
from agentstore_server.stores.pgwire import json_text, page_cursor, read_cursor
from agentstore_server.stores.postgres import Gateway, Record, load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))
MIGRATIONS = Path(__file__).with_name("migrations")
JSON_COLUMNS = frozenset({"meta", "detail", "details", "error", "summary", "artifacts", "payload", "spec"})


def to_wire(row: Any, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    return pgwire.to_wire(row, JSON_COLUMNS, drop)


@dataclass(slots=True)  # one per message: slots, no frozen __setattr__
class TaskRow:
    agent: str
    task: TaskIn
    ts: datetime
    seq: int


@dataclass(slots=True)  # one per message: slots, no frozen __setattr__
class ProgressRow:
    agent: str
    progress: ProgressIn
    ts: datetime


# A keyset position: (timestamp, key...) of the last row of a page.
After = tuple[datetime | None, list[str]]


class TasksDb(Gateway):
    """Tasks, progress, evaluations, studies and runs (`transaction()` from Gateway)."""

    # -- tasks and progress ------------------------------------------------------
    async def upsert_tasks(self, rows: Sequence[TaskRow]) -> None:
        await self.run.execute(
            Q["upsert_tasks"],
            agent_ids=[r.agent for r in rows],
            task_ids=[r.task.id for r in rows],
            statuses=[r.task.status for r in rows],
            kinds=[r.task.kind for r in rows],
            titles=[r.task.title for r in rows],
            metas=[json_text(r.task.meta) for r in rows],
            tss=[r.ts for r in rows],
            seqs=[r.seq for r in rows],
        )

    async def insert_progress(self, rows: Sequence[ProgressRow]) -> None:
        await self.run.execute(
            Q["insert_progress"],
            agent_ids=[r.agent for r in rows],
            ids=[r.progress.id for r in rows],
            task_ids=[r.progress.task_id for r in rows],
            tss=[r.ts for r in rows],
            steps=[r.progress.step for r in rows],
            statuses=[r.progress.status for r in rows],
            percents=[r.progress.percent for r in rows],
            details=[json_text(r.progress.detail) for r in rows],
        )

    async def list_tasks(
        self,
        agent_ids: list[str] | None,
        statuses: list[str] | None,
        kind: str | None,
        after: After,
        limit: int,
    ) -> list[Record]:
        at, (agent, task) = after
        return await self.run.fetch(
            Q["list_tasks"], agent_ids=agent_ids, statuses=statuses, kind=kind,
            after_ts=at, after_agent=agent, after_task=task, limit=limit,
        )  # fmt: skip

    async def count_tasks(self, kind: str | None) -> list[Record]:
        return await self.run.fetch(Q["count_tasks"], kind=kind)

    async def count_tasks_by_agent(self, agent_ids: list[str], kind: str | None) -> list[Record]:
        return await self.run.fetch(Q["count_tasks_by_agent"], agent_ids=agent_ids, kind=kind)

    async def update_run(self, run_id: str, status: str | None, phase: str | None, summary: Any,
                         error: Any, artifacts: Any) -> Record | None:  # fmt: skip
        return await self.run.fetchrow(
            Q["update_run"], run_id=run_id, status=status, phase=phase, summary=json_text(summary),
            error=json_text(error), artifacts=json_text(artifacts),
        )  # fmt: skip

    async def count_runs(self, spec_hash: str | None) -> list[Record]:
        return await self.run.fetch(Q["count_runs"], spec_hash=spec_hash)

    async def get_task(self, agent_id: str, task_id: str) -> Record | None:
        return await self.run.fetchrow(Q["get_task"], agent_id=agent_id, task_id=task_id)

    async def task_progress(
        self, agent_id: str, task_id: str, after: tuple[int, datetime, str] | None, limit: int
    ) -> list[Record]:
        step, ts, id = after or (0, None, "")
        return await self.run.fetch(
            Q["task_progress"], agent_id=agent_id, task_id=task_id, after_step=step, after_ts=ts, after_id=id,
            limit=limit,
        )  # fmt: skip

    async def task_evaluations(self, agent_id: str, task_id: str) -> list[Record]:
        return await self.run.fetch(Q["task_evaluations"], agent_id=agent_id, task_id=task_id)

    async def insert_evaluation(self, e: EvalRecord) -> None:
        await self.run.execute(
            Q["insert_evaluation"], id=e.id, agent_id=e.agent_id, task_id=e.task_id, evaluator=e.evaluator,
            score=e.score, passed=e.passed, notes=e.notes, details=json_text(e.details),
        )  # fmt: skip

    async def get_evaluation(self, id: str) -> Record | None:
        return await self.run.fetchrow(Q["get_evaluation"], id=id)

    # -- studies and runs --------------------------------------------------------
    async def insert_study(self, spec_hash: str, spec_json: str) -> Record | None:
        return await self.run.fetchrow(Q["insert_study"], spec_hash=spec_hash, spec=spec_json)

    async def insert_run(
        self, run_id: str, spec_hash: str, kind: str, priority: int, max_attempts: int
    ) -> Record | None:
        return await self.run.fetchrow(
            Q["insert_run"], run_id=run_id, spec_hash=spec_hash, kind=kind, priority=priority,
            max_attempts=max_attempts,
        )  # fmt: skip

    # -- seed 004's collections moving in (seed004.py) -----------------------------
    async def import_studies(self, rows: Sequence[tuple[str, str, datetime | None]]) -> None:
        if rows:
            hashes, specs, created = zip(*rows, strict=True)
            await self.run.execute(Q["import_studies"], hashes=list(hashes), specs=list(specs),
                                   created=list(created))  # fmt: skip

    async def existing_studies(self, hashes: list[str]) -> set[str]:
        return {r["spec_hash"] for r in await self.run.fetch(Q["existing_studies"], hashes=hashes)}

    async def existing_runs(self, run_ids: list[str]) -> set[str]:
        return {r["run_id"] for r in await self.run.fetch(Q["existing_runs"], run_ids=run_ids)}

    async def import_runs(self, runs: Sequence[Any]) -> None:
        """Seed runs (`seed004.SeedRun`) as they were."""
        if not runs:
            return
        error = [{"message": r.error} if isinstance(r.error, str) else r.error for r in runs]
        await self.run.execute(
            Q["import_runs"], run_ids=[r.run_id for r in runs], hashes=[r.spec_hash for r in runs],
            kinds=[r.kind for r in runs], priorities=[r.priority for r in runs],
            statuses=[r.status for r in runs], phases=[r.phase for r in runs],
            holders=[r.claimed_by for r in runs], leases=[r.lease_expires_at for r in runs],
            attempts=[r.attempt if r.attempt is not None else int(r.claimed_by is not None) for r in runs],
            max_attempts=[r.max_attempts for r in runs], errors=[json_text(e) for e in error],
            summaries=[json_text(r.summary) for r in runs], artifacts=[json_text(r.artifacts) for r in runs],
            created=[r.created_at for r in runs], updated=[r.updated_at for r in runs],
            started=[r.started_at for r in runs], ended=[r.ended_at for r in runs],
        )  # fmt: skip

    async def import_summaries(self, rows: Sequence[tuple[str, str]]) -> None:
        if rows:
            await self.run.execute(Q["import_summaries"], run_ids=[r for r, _ in rows],
                                   summaries=[s for _, s in rows])  # fmt: skip

    async def import_run_events(
        self, rows: Sequence[tuple[str, str, str | None, datetime | None, Any, str]]
    ) -> None:
        """(run_id, type, agent_id, ts, payload, source_id) rows, appended in this order."""
        if rows:
            await self.run.execute(
                Q["import_run_events"], run_ids=[r[0] for r in rows], types=[r[1] for r in rows],
                agents=[r[2] for r in rows], tss=[r[3] for r in rows],
                payloads=[json_text(r[4]) for r in rows], sources=[r[5] for r in rows],
            )  # fmt: skip

    async def get_run(self, run_id: str) -> Record | None:
        return await self.run.fetchrow(Q["get_run"], run_id=run_id)

    async def get_study(self, spec_hash: str) -> Record | None:
        return await self.run.fetchrow(Q["get_study"], spec_hash=spec_hash)

    async def run_events(self, run_id: str, after_id: int, limit: int) -> list[Record]:
        return await self.run.fetch(Q["run_events"], run_id=run_id, after_id=after_id, limit=limit)

    async def add_run_event(
        self, run_id: str, type: str, agent_id: str | None, attempt: int, payload: Any
    ) -> Record | None:
        return await self.run.fetchrow(
            Q["add_run_event"], run_id=run_id, type=type, agent_id=agent_id, attempt=attempt,
            payload=json_text(payload),
        )  # fmt: skip

    async def claim_run(self, agent_id: str, kinds: list[str] | None, lease_seconds: float) -> Record | None:
        return await self.run.fetchrow(
            Q["claim_run"], agent_id=agent_id, kinds=kinds, lease_seconds=lease_seconds
        )

    async def claim_runs(
        self, agent_ids: Sequence[str], kinds: list[str] | None, leases: Sequence[float]
    ) -> list[Record]:
        """Runs claimed for each claimant (its 1-based position in `claimant`)."""
        return await self.run.fetch(
            Q["claim_runs"], agent_ids=list(agent_ids), kinds=kinds, leases=list(leases)
        )

    async def renew_lease(
        self, run_id: str, agent_id: str, lease_seconds: float, attempt: int | None
    ) -> Record | None:
        return await self.run.fetchrow(
            Q["renew_lease"], run_id=run_id, agent_id=agent_id, lease_seconds=lease_seconds, attempt=attempt
        )

    async def move_phase(self, run_id: str, agent_id: str, phase: str, attempt: int | None) -> Record | None:
        return await self.run.fetchrow(
            Q["move_phase"], run_id=run_id, agent_id=agent_id, phase=phase, attempt=attempt
        )

    async def release_run(
        self,
        run_id: str,
        agent_id: str,
        status: str,
        error: Any,
        summary: Any,
        artifacts: Any,
        attempt: int | None,
    ) -> Record | None:
        return await self.run.fetchrow(
            Q["release_run"], run_id=run_id, agent_id=agent_id, status=status, error=json_text(error),
            summary=json_text(summary), artifacts=json_text(artifacts), attempt=attempt,
        )  # fmt: skip

    async def cancel_run(self, run_id: str) -> Record | None:
        return await self.run.fetchrow(Q["cancel_run"], run_id=run_id)

    async def held_runs(self, agent_id: str) -> list[Record]:
        return await self.run.fetch(Q["held_runs"], agent_id=agent_id)

    async def list_runs(
        self, status: str | None, phase: str | None, claimed_by: str | None, after: After, limit: int,
        spec_hash: str | None = None,
    ) -> list[Record]:  # fmt: skip
        at, (run_id,) = after
        return await self.run.fetch(
            Q["list_runs"], status=status, phase=phase, claimed_by=claimed_by, after_ts=at, after_run=run_id,
            limit=limit, spec_hash=spec_hash,
        )  # fmt: skip

    async def expire_leases(self) -> list[Record]:
        return await self.run.fetch(Q["expire_leases"])


__all__ = ["MIGRATIONS", "ProgressRow", "Q", "TaskRow", "TasksDb", "page_cursor", "read_cursor", "to_wire"]
