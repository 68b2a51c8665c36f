"""Runs with lease-based claiming (seed 004), in PostgreSQL.

A run is claimed with `FOR UPDATE SKIP LOCKED` (priority, then age), so no
two workers ever hold it; the lease comes from the database clock. Every
later change (renew, phase, release) is fenced by the holder, a live lease
and, when given, the attempt number: a worker whose lease expired gets 409.
Expired leases return runs to the queue (a sweep here and before each
claim), and after `max_attempts` the run fails with the reason. Each
transition is recorded in `run_events` and published to the holder's
`agents.{agent}.events` audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import uuid6

from agentstore.bus.handle import BusHandle
from agentstore.bus.rpc import RequestContext
from agentstore.errors import Conflict, NotFound, StoreError
from agentstore.schemas.common import iso
from agentstore.schemas.tasks import (
    CancelRun,
    ClaimRun,
    MovePhase,
    ReleaseRun,
    RenewLease,
    RunQuery,
    RunsQuery,
    SubmitRun,
)
from agentstore.stores.postgres import Connection, PostgresStore, Record
from services.tasks.rows import SQL, json_text, page_cursor, read_cursor, to_wire

log = logging.getLogger("agentstore.runs")


def canonical_json(spec: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal specs give equal bytes, whatever their order."""
    return msgspec.json.encode(spec, order="sorted")


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec)).hexdigest()


def run_item(row: Record) -> dict[str, Any]:
    return to_wire(row)


class Runs:
    def __init__(self, pg: PostgresStore, bus: BusHandle) -> None:
        self.pg = pg
        self.bus = bus
        self._copies: set[asyncio.Task[None]] = set()

    # -- evaluators and orchestrators ------------------------------------------
    async def submit(self, ctx: RequestContext, q: SubmitRun) -> dict[str, Any]:
        digest = spec_hash(q.spec)
        run_id = q.run_id or str(uuid6.uuid7())
        async with self.pg.transaction() as conn:
            created = await conn.fetchrow(SQL["insert_study"], digest, canonical_json(q.spec).decode())
            row = await conn.fetchrow(SQL["insert_run"], run_id, digest, q.kind, q.priority, q.max_attempts)
            if row is None:  # the run id exists: same spec is a harmless retry
                existing = await conn.fetchrow(SQL["get_run"], run_id)
                assert existing is not None
                if existing["spec_hash"] != digest:
                    raise Conflict(f"run {run_id!r} exists with another spec")
            else:
                await self._event(conn, run_id, "queued", None, 0, {"spec_hash": digest})
        return {"run_id": run_id, "spec_hash": digest, "study_created": created is not None}

    async def cancel(self, ctx: RequestContext, q: CancelRun) -> dict[str, Any]:
        async with self.pg.transaction() as conn:
            row = await conn.fetchrow(SQL["cancel_run"], q.run_id)
            if row is None:
                await self._explain_miss(conn, q.run_id, "can only cancel a queued or running run")
            assert row is not None
            await self._event(conn, q.run_id, "cancelled", None, row["attempt"], None)
        return run_item(row)

    async def query_list(self, ctx: RequestContext, q: RunsQuery) -> dict[str, Any]:
        at, (run_id,) = read_cursor(q.cursor, 1)
        rows = await self.pg.fetch(SQL["list_runs"], q.status, q.phase, q.claimed_by, at, run_id, q.limit + 1)
        next_cursor = None
        if len(rows) > q.limit:
            last = rows[q.limit - 1]
            next_cursor = page_cursor(last["created_at"], last["run_id"])
        return {"items": [run_item(r) for r in rows[: q.limit]], "next_cursor": next_cursor}

    async def query_one(self, ctx: RequestContext, q: RunQuery) -> dict[str, Any]:
        row = await self.pg.fetchrow(SQL["get_run"], q.run_id)
        if row is None:
            raise NotFound(f"no run {q.run_id!r}")
        study = await self.pg.fetchrow(SQL["get_study"], row["spec_hash"])
        events = await self.pg.fetch(SQL["run_events"], q.run_id)
        item = run_item(row)
        return {
            **item,
            "study": to_wire(study) if study else None,
            "summary": item.get("summary"),
            "events": [to_wire(e) for e in events],
        }

    # -- agents (workers) ------------------------------------------------------
    async def claim(self, ctx: RequestContext, q: ClaimRun) -> dict[str, Any]:
        """One statement claims, records and returns; expired leases are requeued by the
        sweeper (every LEASE_SWEEP_SECONDS), not on this hot path."""
        agent = _agent(ctx)
        row = await self.pg.fetchrow(SQL["claim_run"], agent, q.kinds, q.lease_seconds)
        if row is None:
            return {"run": None}
        self._publish_soon([(row["run_id"], "claimed", agent, row["attempt"])])
        return {"run": run_item(row)}

    async def renew(self, ctx: RequestContext, q: RenewLease) -> dict[str, Any]:
        row = await self._fenced(ctx, "renew_lease", q.run_id, q.lease_seconds, q.attempt, event=None)
        return {"run_id": q.run_id, "lease_expires_at": iso(row["lease_expires_at"])}

    async def phase(self, ctx: RequestContext, q: MovePhase) -> dict[str, Any]:
        row = await self._fenced(ctx, "move_phase", q.run_id, q.phase, q.attempt, event=f"phase.{q.phase}")
        return run_item(row)

    async def release(self, ctx: RequestContext, q: ReleaseRun) -> dict[str, Any]:
        row = await self._fenced(
            ctx,
            "release_run",
            q.run_id,
            q.status,
            json_text(q.error),
            json_text(q.summary),
            json_text(q.artifacts),
            q.attempt,
            event=f"released.{q.status}",
        )
        return run_item(row)

    async def _fenced(
        self, ctx: RequestContext, query: str, run_id: str, *args: Any, event: str | None
    ) -> Record:
        agent = _agent(ctx)
        async with self.pg.transaction() as conn:
            row = await conn.fetchrow(SQL[query], run_id, agent, *args)
            if row is None:
                await self._explain_miss(
                    conn, run_id, f"agent {agent} does not hold a live lease on it (attempt fenced)"
                )
            assert row is not None
            if event is not None:
                await self._event(conn, run_id, event, agent, row["attempt"], None)
        if event is not None:
            self._publish_soon([(run_id, event, agent, row["attempt"])])
        return row

    async def _explain_miss(self, conn: Connection, run_id: str, why: str) -> None:
        if await conn.fetchrow(SQL["get_run"], run_id) is None:
            raise NotFound(f"no run {run_id!r}")
        raise Conflict(f"run {run_id!r}: {why}")

    # -- leases ------------------------------------------------------------------
    async def expire(self) -> list[tuple[str, str, str | None, int]]:
        """Requeue (or fail) runs whose lease expired; returns the moves made."""
        async with self.pg.transaction() as conn:
            rows = await conn.fetch(SQL["expire_leases"])
        return [(r["run_id"], r["type"], r["agent_id"], r["attempt"]) for r in rows]

    def sweeper(self, every_seconds: float) -> Callable[[], Any]:
        async def loop() -> None:
            while True:
                try:
                    moved = await self.expire()
                    if moved:
                        await self._publish(moved)
                except StoreError as exc:
                    log.warning("lease sweep failed, will retry: %s", exc)
                await asyncio.sleep(every_seconds)  # the sweep's period

        return loop

    # -- audit trail ---------------------------------------------------------------
    async def _event(
        self,
        conn: Connection,
        run_id: str,
        type: str,
        agent: str | None,
        attempt: int,
        payload: Any,
    ) -> None:
        await conn.execute(SQL["add_run_event"], run_id, type, agent, attempt, json_text(payload))

    def _publish_soon(self, events: list[tuple[str, str, str | None, int]]) -> None:
        """Copy to the audit trail without holding up the reply (run_events is the record)."""
        task = asyncio.create_task(self._publish(events))
        self._copies.add(task)
        task.add_done_callback(self._copies.discard)

    async def _publish(self, events: list[tuple[str, str, str | None, int]]) -> None:
        """Copy transitions to the holder's audit trail; `run_events` stays the record."""
        for run_id, type, agent, attempt in events:
            if agent is None:
                continue
            event_id = f"run.{run_id}.{attempt}.{type}"[:128]
            body = {"id": event_id, "type": f"run.{type}", "run_id": run_id,
                    "payload": {"attempt": attempt}}  # fmt: skip
            try:
                await self.bus.publish(f"agents.{agent}.events", body, f"{agent}:{event_id}")
            except Exception as exc:
                log.warning("could not copy %s of run %s to the audit trail: %s", type, run_id, exc)


def _agent(ctx: RequestContext) -> str:
    assert ctx.agent is not None, "run endpoints are agent-scoped"
    return ctx.agent
