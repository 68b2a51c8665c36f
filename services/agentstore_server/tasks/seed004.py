"""Seed 004 moves in: its MongoDB `studies`, `runs`, `summaries` and `events`
collections (mongoexport JSON Lines) into the tasks service's tables.

Each record is validated with the contract's types (statuses, phases, the typed
OpenMC summary fields, free maps' limits); a bad record is refused with its line
and reason and the rest are stored. The seed's `spec_hash` values are kept as
they are (a study is not re-hashed), runs keep their status, phase, lease holder,
times, error and artifacts. Fields the tables have no column for are not dropped:
each run's trail gets one `imported` event carrying them. Every write is keyed
(studies by hash, runs by id, events by their source `_id`), so importing the same
files again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from agentstore.errors import InvalidMessage
from agentstore.schemas.common import EPOCH, AgentId, EventId, FreeMap, Name, Strict, UtcTime, decode_message
from agentstore.schemas.tasks import Phase, RunStatus, SpecHash, check_summary
from agentstore_server.stores.pgwire import json_text
from agentstore_server.stores.seedfiles import Report, encode, mongo_lines, split, stable_id
from agentstore_server.tasks.db import TasksDb

BATCH = 500
COLLECTIONS = ("studies", "runs", "summaries", "events")
Progress = Callable[[str, int], None]


class SeedStudy(Strict):
    spec_hash: SpecHash
    # The seed stores the canonical StudySpec; as an object or as its JSON text.
    canonical_spec: FreeMap | str | None = None
    spec: FreeMap | str | None = None
    created_at: UtcTime | None = None


class SeedRun(Strict):
    run_id: EventId
    spec_hash: SpecHash
    status: RunStatus = "queued"
    phase: Phase = "bundle"
    claimed_by: AgentId | None = None
    lease_expires_at: UtcTime | None = None
    kind: Name = "run"
    priority: int = 0
    attempt: int | None = None
    max_attempts: int = 3
    error: FreeMap | str | None = None
    summary: FreeMap | None = None
    artifacts: FreeMap | None = None
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None
    started_at: UtcTime | None = None
    ended_at: UtcTime | None = None


class SeedEvent(Strict):
    run_id: EventId
    type: Name
    ts: UtcTime | None = None
    timestamp: UtcTime | None = None
    created_at: UtcTime | None = None
    agent: AgentId | None = None
    agent_id: AgentId | None = None
    payload: FreeMap | None = None


RUN_FIELDS = set(SeedRun.__struct_fields__)


def _records(folder: Path, name: str, report: Report) -> Iterator[tuple[str, dict[str, Any]]]:
    path = folder / f"{name}.jsonl"
    if not path.exists():
        return
    for number, doc in mongo_lines(path):
        where = f"{path.name}:{number}"
        if isinstance(doc, str):
            report.refuse(where, doc)
        else:
            yield where, doc


def _batches(items: Iterator[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _silent(kind: str, done: int) -> None:
    pass


async def import_seed_004(db: TasksDb, folder: Path, progress: Progress = _silent) -> Report:
    """Load `studies.jsonl`, `runs.jsonl`, `summaries.jsonl` and `events.jsonl` from folder,
    in that order (runs need their study, summaries and events their run)."""
    report = Report()
    await _studies(db, _records(folder, "studies", report), report, progress)
    await _runs(db, _records(folder, "runs", report), report, progress)
    await _summaries(db, _records(folder, "summaries", report), report, progress)
    await _events(db, _records(folder, "events", report), report, progress)
    return report


async def _studies(db: TasksDb, records: Iterator[tuple[str, dict[str, Any]]], report: Report,
                   progress: Progress) -> None:  # fmt: skip
    for batch in _batches(records):
        rows: list[tuple[str, str, datetime | None]] = []
        for where, doc in batch:
            try:
                ours, rest = split(doc, set(SeedStudy.__struct_fields__))
                study = decode_message(encode(ours), SeedStudy)
                spec = study.canonical_spec if study.canonical_spec is not None else study.spec
                if isinstance(spec, str):
                    spec = msgspec.json.decode(spec)
                if not isinstance(spec, dict):
                    raise InvalidMessage("a study needs its spec (canonical_spec or spec, an object)")
            except (InvalidMessage, msgspec.DecodeError) as exc:
                report.refuse(where, str(exc))
                continue
            rows.append((study.spec_hash, json_text({**rest, **spec}) or "{}", study.created_at))
        await db.import_studies(rows)
        report.stored("studies", len(rows))
        progress("studies", report.counts.get("studies", 0))


async def _runs(db: TasksDb, records: Iterator[tuple[str, dict[str, Any]]], report: Report,
                progress: Progress) -> None:  # fmt: skip
    for batch in _batches(records):
        runs: list[tuple[str, SeedRun, dict[str, Any]]] = []
        for where, doc in batch:
            try:
                ours, rest = split(doc, RUN_FIELDS)
                run = decode_message(encode(ours), SeedRun)
                check_summary(run.summary)
            except (InvalidMessage, ValueError) as exc:
                report.refuse(where, str(exc))
                continue
            runs.append((where, run, rest))
        studies = await db.existing_studies(sorted({r.spec_hash for _, r, _ in runs}))
        ready = []
        for where, run, rest in runs:
            if run.spec_hash in studies:
                ready.append((where, run, rest))
            else:
                report.refuse(where, f"run {run.run_id}: its study {run.spec_hash} is neither in "
                                     "studies.jsonl nor stored; import the study first")  # fmt: skip
        await db.import_runs([r for _, r, _ in ready])
        await db.import_run_events([
            (run.run_id, "imported", None, None,
             {"source": "seed 004", "record": where, **({"fields": rest} if rest else {})},
             f"seed004:run:{run.run_id}")
            for where, run, rest in ready
        ])  # fmt: skip
        report.stored("runs", len(ready))
        progress("runs", report.counts.get("runs", 0))


async def _summaries(db: TasksDb, records: Iterator[tuple[str, dict[str, Any]]], report: Report,
                     progress: Progress) -> None:  # fmt: skip
    for batch in _batches(records):
        rows: list[tuple[str, str, str]] = []
        for where, doc in batch:
            summary = {k: v for k, v in doc.items() if k not in ("_id", "run_id")}
            run_id = doc.get("run_id")
            try:
                if not isinstance(run_id, str):
                    raise ValueError("a summary needs its run_id (a string)")
                decode_message(encode({"run_id": run_id, "summary": summary}), _SummaryRecord)
                check_summary(summary)
            except (InvalidMessage, ValueError) as exc:
                report.refuse(where, str(exc))
                continue
            rows.append((where, run_id, json_text(summary) or "{}"))
        known = await db.existing_runs(sorted({r for _, r, _ in rows}))
        for where, run_id, _ in rows:
            if run_id not in known:
                report.refuse(where, f"summary of run {run_id}: no such run")
        await db.import_summaries([(r, s) for _, r, s in rows if r in known])
        report.stored("summaries", sum(1 for _, r, _ in rows if r in known))
        progress("summaries", report.counts.get("summaries", 0))


class _SummaryRecord(Strict):
    run_id: EventId
    summary: FreeMap


async def _events(db: TasksDb, records: Iterator[tuple[str, dict[str, Any]]], report: Report,
                  progress: Progress) -> None:  # fmt: skip
    for batch in _batches(records):
        rows: list[tuple[str, tuple[str, str, str | None, datetime | None, Any, str]]] = []
        for where, doc in batch:
            source = str(doc["_id"]) if "_id" in doc else stable_id(encode(doc).decode())
            ours, rest = split(doc, set(SeedEvent.__struct_fields__))
            try:
                event = decode_message(encode(ours), SeedEvent)
            except InvalidMessage as exc:
                report.refuse(where, str(exc))
                continue
            payload = {**(event.payload or {}), **({"fields": rest} if rest else {})} or None
            when = event.ts or event.timestamp or event.created_at
            agent = event.agent or event.agent_id
            rows.append((where, (event.run_id, event.type, agent, when, payload, f"seed004:event:{source}")))
        known = await db.existing_runs(sorted({row[0] for _, row in rows}))
        for where, row in rows:
            if row[0] not in known:
                report.refuse(where, f"event of run {row[0]}: no such run")
        # The trail is ordered by insertion: within a batch, by time (untimed ones last).
        ready = sorted((row for _, row in rows if row[0] in known), key=_event_order)
        await db.import_run_events(ready)
        report.stored("events", len(ready))
        progress("events", report.counts.get("events", 0))


def _event_order(row: tuple[str, str, str | None, datetime | None, Any, str]) -> tuple[bool, datetime]:
    return row[3] is None, row[3] or EPOCH
