"""Tasks, progress and evaluations (seeds 000 and 003) in PostgreSQL.

`agents.{agent}.tasks` upserts a task (the newest `ts` wins; an update that
omits kind, title or meta keeps them); `agents.{agent}.progress` appends
steps. Experiments (seed 000) are tasks of kind `experiment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agentstore.errors import BadRequest, NotFound
from agentstore.schemas.common import decode_cursor, encode_cursor, to_ms
from agentstore.schemas.tasks import (
    EvalRecord,
    ProgressIn,
    ProgressQuery,
    TaskCountsQuery,
    TaskIn,
    TaskQuery,
    TasksQuery,
)
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.tasks.db import ProgressRow, TaskRow, TasksDb, page_cursor, read_cursor, to_wire

NON_TERMINAL = ["pending", "running", "paused"]
# The first page of steps `query.task` embeds; `progress_next_cursor` continues it.
EMBEDDED_PROGRESS = 1000


def decode_task(envelope: Envelope) -> TaskRow:
    task = envelope.decode(TaskIn)
    return TaskRow(envelope.agent, task, to_ms(task.ts or envelope.received), envelope.stream_seq)


def decode_progress(envelope: Envelope) -> ProgressRow:
    progress = envelope.decode(ProgressIn)
    return ProgressRow(envelope.agent, progress, to_ms(progress.ts or envelope.received))


class Tasks:
    def __init__(self, db: TasksDb) -> None:
        self.db = db

    async def write_tasks(self, rows: Sequence[TaskRow]) -> Mapping[int, str]:
        # One row per task per statement: keep the newest of the batch.
        newest: dict[tuple[str, str], TaskRow] = {}
        for row in rows:
            key = (row.agent, row.task.id)
            if key not in newest or (row.ts, row.seq) > (newest[key].ts, newest[key].seq):
                newest[key] = row
        await self.db.upsert_tasks(list(newest.values()))
        return {}

    async def write_progress(self, rows: Sequence[ProgressRow]) -> Mapping[int, str]:
        await self.db.insert_progress(rows)
        return {}

    async def query_tasks(self, ctx: RequestContext, q: TasksQuery) -> dict[str, Any]:
        statuses: list[str] | None = [q.status] if q.status else None
        return await self._page(ctx.scope(q.agent_ids), statuses, q.kind, read_cursor(q.cursor, 2), q.limit)

    async def query_counts(self, ctx: RequestContext, q: TaskCountsQuery) -> dict[str, Any]:
        agents = ctx.scope(q.agent_ids)
        if not agents:
            return {"counts": {r["status"]: r["n"] for r in await self.db.count_tasks(q.kind)}}
        counts: dict[str, int] = {}
        by_agent: dict[str, dict[str, int]] = {agent: {} for agent in agents}
        for r in await self.db.count_tasks_by_agent(agents, q.kind):
            by_agent[r["agent_id"]][r["status"]] = r["n"]
            counts[r["status"]] = counts.get(r["status"], 0) + r["n"]
        return {"counts": counts, "by_agent": by_agent}

    async def _page(
        self,
        agents: list[str] | None,
        statuses: list[str] | None,
        kind: str | None,
        after: tuple[datetime | None, list[str]],
        limit: int,
    ) -> dict[str, Any]:
        rows = await self.db.list_tasks(agents, statuses, kind, after, limit + 1)
        items = [task_item(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = page_cursor(last["updated_at"], last["agent_id"], last["task_id"])
        return {"items": items, "next_cursor": next_cursor}

    async def query_task(self, ctx: RequestContext, q: TaskQuery) -> dict[str, Any]:
        ctx.check_agent(q.agent_id)
        row = await self.db.get_task(q.agent_id, q.task_id)
        if row is None:
            raise NotFound(f"no task {q.task_id!r} for agent {q.agent_id!r}")
        progress = await self.progress_page(q.agent_id, q.task_id, None, EMBEDDED_PROGRESS)
        evaluations = await self.db.task_evaluations(q.agent_id, q.task_id)
        return {
            **task_fields(row),
            "progress": progress["items"],
            "evaluations": [to_wire(e) for e in evaluations],
            "progress_next_cursor": progress["next_cursor"],
        }

    async def query_progress(self, ctx: RequestContext, q: ProgressQuery) -> dict[str, Any]:
        ctx.check_agent(q.agent_id)
        return await self.progress_page(q.agent_id, q.task_id, q.cursor, q.limit)

    async def progress_page(self, agent: str, task: str, cursor: str | None, limit: int) -> dict[str, Any]:
        after = None
        if cursor is not None:
            step, at, id = decode_cursor(cursor, 3)
            try:
                after = (int(step), datetime.fromisoformat(at), str(id))
            except (TypeError, ValueError):
                raise BadRequest("malformed cursor; pass back next_cursor exactly as received") from None
        rows = await self.db.task_progress(agent, task, after, limit + 1)
        last = rows[limit - 1] if len(rows) > limit else None
        next_cursor = encode_cursor(last["step"], last["ts"].isoformat(), last["id"]) if last else None
        return {"items": [to_wire(p) for p in rows[:limit]], "next_cursor": next_cursor}

    async def record_evaluation(self, ctx: RequestContext, q: EvalRecord) -> dict[str, Any]:
        await self.db.insert_evaluation(q)
        row = await self.db.get_evaluation(q.id)
        assert row is not None
        return to_wire(row)

    async def non_terminal(self, agent: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """One page of the agent's open (pending, running) tasks with their latest progress."""
        return await self._page([agent], NON_TERMINAL, None, read_cursor(cursor, 2), limit)


def task_fields(row: Any) -> dict[str, Any]:
    fields = to_wire(row, drop=frozenset({"ts"}))
    fields["id"] = fields.pop("task_id")
    return {k: v for k, v in fields.items() if not k.startswith("p_")}


def task_item(row: Any) -> dict[str, Any]:
    item = task_fields(row)
    if row["p_id"] is not None:
        item["latest_progress"] = to_wire(
            {k[2:]: row[k] for k in ("p_id", "p_step", "p_status", "p_percent", "p_detail", "p_ts")}
        )
    return item
