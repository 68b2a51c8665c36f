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
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from agentstore.errors import BadRequest, Conflict, NotFound
from agentstore.ids import new_id
from agentstore.schemas.common import decode_cursor, iso, keyset_page
from agentstore.schemas.tasks import (
    CancelRun,
    ClaimRun,
    MovePhase,
    ReleaseRun,
    RenewLease,
    RunCountsQuery,
    RunEventIn,
    RunEventsQuery,
    RunQuery,
    RunsQuery,
    StudyQuery,
    SubmitRun,
    UpdateRun,
    check_summary,
)
from agentstore_server.bus.handle import BusHandle
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.stores.postgres import Record
from agentstore_server.tasks.db import TasksDb, page_cursor, read_cursor, to_wire

log = logging.getLogger("agentstore.runs")


def canonical_json(spec: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal specs give equal bytes, whatever their order."""
    return msgspec.json.encode(spec, order="sorted")


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec)).hexdigest()


def run_item(row: Record) -> dict[str, Any]:
    return to_wire(row, drop=frozenset({"claimant"}))  # claim_runs' bookkeeping column


Claimant = tuple[str, float, "asyncio.Future[Record | None]"]  # agent, lease seconds, its reply


class ClaimQueue:
    """Claims go to PostgreSQL in groups: those that arrive while a claim statement runs
    wait for it, then go together in the next one (one statement, one commit for all;
    with one claimant at a time it is claim_run's single round trip). Claims with
    different `kinds` go in separate groups. Profiled (bench.claims): claiming one run per
    statement kept PostgreSQL's commits, not the service, as the bottleneck."""

    MAX_GROUP = 256
    # Statements in flight at once: one group commits while the next one forms and starts.
    MAX_IN_FLIGHT = 1

    def __init__(self, db: TasksDb) -> None:
        self.db = db
        self._waiting: dict[tuple[str, ...] | None, list[Claimant]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    async def claim(self, agent: str, kinds: list[str] | None, lease_seconds: float) -> Record | None:
        future: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
        key = tuple(sorted(kinds)) if kinds is not None else None
        self._waiting.setdefault(key, []).append((agent, lease_seconds, future))
        if len(self._workers) < self.MAX_IN_FLIGHT:
            worker = asyncio.create_task(self._drain())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            key = next(iter(self._waiting))
            group = self._waiting[key][: self.MAX_GROUP]
            rest = self._waiting[key][self.MAX_GROUP :]
            if rest:
                self._waiting[key] = rest
            else:
                del self._waiting[key]
            try:
                rows = await self.db.claim_runs(
                    [a for a, _, _ in group], list(key) if key is not None else None, [s for _, s, _ in group]
                )
            except Exception as exc:  # each claimant gets the error its own statement would have
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            by_claimant = {row["claimant"]: row for row in rows}
            for n, (_, _, future) in enumerate(group, 1):
                # A claimant that gave up meanwhile holds its run like a claim whose reply
                # was lost: `rpc.restore` shows it, and its lease expiry requeues it.
                if not future.done():
                    future.set_result(by_claimant.get(n))


class Runs:
    def __init__(self, db: TasksDb, bus: BusHandle, claims: TasksDb | None = None) -> None:
        """`claims`: where claim statements run (default: `db`)."""
        self.db = db
        self.bus = bus
        self._copies: set[asyncio.Task[None]] = set()
        self._claims = ClaimQueue(claims or db)

    # -- evaluators and orchestrators ------------------------------------------
    async def submit(self, ctx: RequestContext, q: SubmitRun) -> dict[str, Any]:
        digest = spec_hash(q.spec)
        run_id = q.run_id or new_id()
        async with self.db.transaction() as tx:
            created = await tx.insert_study(digest, canonical_json(q.spec).decode())
            row = await tx.insert_run(run_id, digest, q.kind, q.priority, q.max_attempts)
            if row is None:  # the run id exists: same spec is a harmless retry
                existing = await tx.get_run(run_id)
                assert existing is not None
                if existing["spec_hash"] != digest:
                    raise Conflict(f"run {run_id!r} exists with another spec")
            else:
                await tx.add_run_event(run_id, "queued", None, 0, {"spec_hash": digest})
        return {"run_id": run_id, "spec_hash": digest, "study_created": created is not None}

    async def cancel(self, ctx: RequestContext, q: CancelRun) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            row = await tx.cancel_run(q.run_id)
            if row is None:
                await self._explain_miss(tx, q.run_id, "can only cancel a queued or running run")
            assert row is not None
            await tx.add_run_event(q.run_id, "cancelled", None, row["attempt"], None)
        return run_item(row)

    async def query_list(self, ctx: RequestContext, q: RunsQuery) -> dict[str, Any]:
        after = read_cursor(q.cursor, 1)
        rows = await self.db.list_runs(q.status, q.phase, q.claimed_by, after, q.limit + 1, q.spec_hash)
        next_cursor = None
        if len(rows) > q.limit:
            last = rows[q.limit - 1]
            next_cursor = page_cursor(last["created_at"], last["run_id"])
        return {"items": [run_item(r) for r in rows[: q.limit]], "next_cursor": next_cursor}

    async def query_study(self, ctx: RequestContext, q: StudyQuery) -> dict[str, Any]:
        study = await self.db.get_study(q.spec_hash)
        if study is None:
            raise NotFound(f"no study with spec_hash {q.spec_hash!r}")
        runs = {r["status"]: r["n"] for r in await self.db.count_runs(q.spec_hash)}
        return {**to_wire(study), "runs": runs}

    async def update(self, ctx: RequestContext, q: UpdateRun) -> dict[str, Any]:
        changes = {k: v for k, v in msgspec.structs.asdict(q).items() if k != "run_id" and v is not None}
        _typed_summary(q.summary)
        if not changes:
            raise BadRequest("runs.update needs at least one of status, phase, summary, error, artifacts")
        async with self.db.transaction() as tx:
            row = await tx.update_run(q.run_id, q.status, q.phase, q.summary, q.error, q.artifacts)
            if row is None:
                raise NotFound(f"no run {q.run_id!r}")
            # The audit trail keeps what changed and who (the orchestrator) changed it.
            await tx.add_run_event(q.run_id, "updated", None, row["attempt"], changes)
        return run_item(row)

    async def event(self, ctx: RequestContext, q: RunEventIn) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            row = await tx.get_run(q.run_id)
            if row is None:
                raise NotFound(f"no run {q.run_id!r}")
            added = await tx.add_run_event(q.run_id, q.type, None, row["attempt"], q.payload)
        assert added is not None
        return {"id": added["id"], "ts": iso(added["ts"]), "type": q.type, "attempt": row["attempt"],
                "payload": q.payload}  # fmt: skip

    async def query_counts(self, ctx: RequestContext, q: RunCountsQuery) -> dict[str, Any]:
        return {"counts": {r["status"]: r["n"] for r in await self.db.count_runs(q.spec_hash)}}

    async def query_one(self, ctx: RequestContext, q: RunQuery) -> dict[str, Any]:
        row = await self.db.get_run(q.run_id)
        if row is None:
            raise NotFound(f"no run {q.run_id!r}")
        study = await self.db.get_study(row["spec_hash"])
        events = await self.events_page(q.run_id, None, EMBEDDED_EVENTS)
        item = run_item(row)
        return {
            **item,
            "study": to_wire(study) if study else None,
            "summary": item.get("summary"),
            "events": events["items"],
            "events_next_cursor": events["next_cursor"],
        }

    async def query_events(self, ctx: RequestContext, q: RunEventsQuery) -> dict[str, Any]:
        if await self.db.get_run(q.run_id) is None:
            raise NotFound(f"no run {q.run_id!r}")
        return await self.events_page(q.run_id, q.cursor, q.limit)

    async def events_page(self, run_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        (after_id,) = decode_cursor(cursor, 1) if cursor else (0,)
        if not isinstance(after_id, int):
            raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
        rows, cursor = keyset_page(
            await self.db.run_events(run_id, after_id, limit + 1), limit, lambda r: (r["id"],)
        )
        return {"items": [to_wire(e) for e in rows], "next_cursor": cursor}

    # -- agents (workers) ------------------------------------------------------
    async def claim(self, ctx: RequestContext, q: ClaimRun) -> dict[str, Any]:
        """One statement claims, records and returns; expired leases are requeued by the
        sweeper (every LEASE_SWEEP_SECONDS), not on this hot path."""
        agent = _agent(ctx)
        row = await self._claims.claim(agent, q.kinds, q.lease_seconds)
        if row is None:
            return {"run": None}
        self._publish_soon([(row["run_id"], "claimed", agent, row["attempt"])])
        return {"run": run_item(row)}

    async def renew(self, ctx: RequestContext, q: RenewLease) -> dict[str, Any]:
        agent = _agent(ctx)
        row = await self._fenced(
            q.run_id, agent, None, lambda tx: tx.renew_lease(q.run_id, agent, q.lease_seconds, q.attempt)
        )
        return {"run_id": q.run_id, "lease_expires_at": iso(row["lease_expires_at"])}

    async def phase(self, ctx: RequestContext, q: MovePhase) -> dict[str, Any]:
        agent = _agent(ctx)
        row = await self._fenced(
            q.run_id, agent, f"phase.{q.phase}", lambda tx: tx.move_phase(q.run_id, agent, q.phase, q.attempt)
        )
        return run_item(row)

    async def release(self, ctx: RequestContext, q: ReleaseRun) -> dict[str, Any]:
        agent = _agent(ctx)
        _typed_summary(q.summary)

        def release(tx: TasksDb) -> Awaitable[Record | None]:
            return tx.release_run(q.run_id, agent, q.status, q.error, q.summary, q.artifacts, q.attempt)

        row = await self._fenced(q.run_id, agent, f"released.{q.status}", release)
        return run_item(row)

    async def _fenced(
        self,
        run_id: str,
        agent: str,
        event: str | None,
        change: Callable[[TasksDb], Awaitable[Record | None]],
    ) -> Record:
        """A change only the lease holder may make (holder, live lease, attempt), recorded."""
        async with self.db.transaction() as tx:
            row = await change(tx)
            if row is None:
                await self._explain_miss(
                    tx, run_id, f"agent {agent} does not hold a live lease on it (attempt fenced)"
                )
            assert row is not None
            if event is not None:
                await tx.add_run_event(run_id, event, agent, row["attempt"], None)
        if event is not None:
            self._publish_soon([(run_id, event, agent, row["attempt"])])
        return row

    async def _explain_miss(self, tx: TasksDb, run_id: str, why: str) -> None:
        row = await tx.get_run(run_id)
        if row is None:
            raise NotFound(f"no run {run_id!r}")
        # Say what happened to it, so a worker that lost it can tell its operator why.
        state = f"it is {row['status']}"
        if row["status"] == "running":
            state += f", held by {row['claimed_by']} (attempt {row['attempt']})"
        raise Conflict(f"run {run_id!r}: {why}; {state}")

    # -- leases ------------------------------------------------------------------
    async def expire(self) -> list[tuple[str, str, str | None, int]]:
        """Requeue (or fail) runs whose lease expired; returns the moves made."""
        async with self.db.transaction() as tx:
            rows = await tx.expire_leases()
        return [(r["run_id"], r["type"], r["agent_id"], r["attempt"]) for r in rows]

    def sweeper(self, every_seconds: float) -> Periodic:
        async def sweep() -> None:
            moved = await self.expire()
            if moved:
                # Never wait on the audit copies: the sweep must keep requeueing expired runs.
                self._publish_soon(moved)

        return Periodic("lease expiry sweep", every_seconds, sweep)

    # -- audit trail ---------------------------------------------------------------
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
                # Queued into the bus's batches; a failed PubAck is logged by the bus.
                await self.bus.publish(f"agents.{agent}.events", body, f"{agent}:{event_id}", copy=True)
            except Exception as exc:
                log.warning("could not copy %s of run %s to the audit trail: %s", type, run_id, exc)


def _agent(ctx: RequestContext) -> str:
    assert ctx.agent is not None, "run endpoints are agent-scoped"
    return ctx.agent


# The first page of a trail `query.run` embeds; `events_next_cursor` continues it.
EMBEDDED_EVENTS = 1000


def _typed_summary(summary: dict[str, Any] | None) -> None:
    try:
        check_summary(summary)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
