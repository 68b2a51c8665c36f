"""`agentstore import` of the seed systems' own data: how a team moves in.

- `--agent-metrics CSV|postgresql://...` (seed 002): an existing `agent_metrics`
  table, each row through `eval.agent_metrics.create_or_update` (validated by the
  metrics service; setting the same fields again is a no-op, so it is idempotent).
- `--trajectories DIR` (seed 003): folders of trajectory JSON and screenshots, each
  published as the agent it belongs to: the task, one progress step per trajectory
  step, every image into the artifacts bucket. Ids derive from the files, so a second
  import stores nothing new.
- `--seed-004 DIR` (seed 004): mongoexport JSON Lines of studies, runs, summaries,
  events and agent_outputs, written to the tasks and logs services' databases
  (`tasks.seed004`, `logs.portability`) keeping the seed's spec hashes and run state.

Every record is checked with the contract's types before it is sent or written; a bad
one is refused with its file, line and reason, and the others are stored.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from agentstore.client import AgentClient, EvaluatorClient, Server
from agentstore.errors import AgentstoreError, InvalidMessage, RequestError
from agentstore.schemas.artifacts import check_name
from agentstore.schemas.common import AGENT_ID_PATTERN, EVENT_ID_PATTERN, decode_message
from agentstore.schemas.metrics import ProfileFields
from agentstore.schemas.tasks import ProgressIn, TaskIn
from agentstore_server.config import Settings
from agentstore_server.stores.seedfiles import Report, csv_rows, encode, stable_id
from agentstore_server.stores.tables import read_table

AGENT_ID, EVENT_ID = re.compile(AGENT_ID_PATTERN), re.compile(EVENT_ID_PATTERN)

# -- seed 002: an existing agent_metrics table ---------------------------------------

JSON_COLUMNS = frozenset(
    {"test_history", "learning_patterns", "improvement_suggestions", "capabilities", "config"}
)
SETTABLE = frozenset(ProfileFields.__struct_fields__)
# Seed 002 keys its rows by agent_type (UNIQUE; its API is /api/agent-metrics/{agent_type}).
DEFAULT_KEY = "agent_type"
CONCURRENCY = 16


def _profile_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A source row's settable columns, typed: JSON columns decoded, timestamps in UTC
    (the seed's `TIMESTAMP` columns have no zone), numbers and booleans from CSV text."""
    fields: dict[str, Any] = {}
    for column, value in row.items():
        if column not in SETTABLE or value is None:
            continue
        if column in JSON_COLUMNS and isinstance(value, str):
            value = msgspec.json.decode(value)
        elif column == "last_test_date":
            when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            value = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
        fields[column] = value
    checked = msgspec.convert(fields, ProfileFields, strict=False)
    return {k: v for k, v in msgspec.to_builtins(checked).items() if k in fields}


def _csv_file_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise AgentstoreError(f"{path}: neither a CSV file nor a postgresql:// URL")
    return [(f"{path.name}:{n}", dict(r)) for n, r in csv_rows(path)]


async def _table_rows(source: str, table: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await read_table(source, table)
    return [(f"{table} row {n}", r) for n, r in enumerate(rows, 1)]


async def import_agent_metrics(source: str, *, key: str = DEFAULT_KEY, table: str = "agent_metrics",
                               server: Server = None) -> Report:  # fmt: skip
    """Each row of a CSV file or of a PostgreSQL table becomes (or updates) the profile of
    the agent named by its `key` column."""
    if source.startswith(("postgresql://", "postgres://")):
        rows = await _table_rows(source, table)
    else:
        rows = _csv_file_rows(Path(source))
    report = Report()
    ignored = sorted({c for _, r in rows for c in r} - SETTABLE - {key, "agent_id"})
    if ignored:
        report.counts["columns_without_a_place"] = len(ignored)
        report.reasons.append(f"columns kept by no profile field (not imported): {', '.join(ignored)}")
    client = await EvaluatorClient.connect(server)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(where: str, row: dict[str, Any]) -> None:
        agent = row.get(key) or (row.get("agent_id") if key == DEFAULT_KEY else None)
        try:
            if not isinstance(agent, str) or not AGENT_ID.match(agent):
                raise ValueError(f"column {key!r} holds no agent id ({AGENT_ID_PATTERN}): {agent!r}")
            fields = _profile_fields(row)
        except (ValueError, msgspec.ValidationError, msgspec.DecodeError) as exc:
            report.refuse(where, str(exc))
            return
        async with gate:
            try:
                await client.request("eval.agent_metrics.create_or_update", agent_id=agent, metrics=fields)
            except RequestError as exc:
                report.refuse(where, str(exc))
                return
        report.stored("profiles")

    async with client:
        await asyncio.gather(*(one(where, row) for where, row in rows))
    return report


# -- seed 003: trajectory folders ----------------------------------------------------

IMAGES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
STEP_LISTS = ("steps", "trajectory", "actions")
TITLE_KEYS = ("title", "instruction", "task", "goal")
SHOT_KEYS = ("screenshot", "screenshot_path", "image")


def trajectory_folders(root: Path, agent: str | None) -> Iterator[tuple[str, Path]]:
    """(agent, task folder): `DIR/<task>/` for `agent`, else `DIR/<agent>/<task>/`."""
    if not root.is_dir():
        raise AgentstoreError(f"{root}: no such folder")
    if agent is not None:
        for task in sorted(p for p in root.iterdir() if p.is_dir()):
            yield agent, task
        return
    for owner in sorted(p for p in root.iterdir() if p.is_dir()):
        for task in sorted(p for p in owner.iterdir() if p.is_dir()):
            yield owner.name, task


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """A task folder's images (any depth) and trajectory files (*.json at its top)."""
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGES and p.is_file())
    return images, sorted(folder.glob("*.json"))


def _steps(doc: Any) -> tuple[list[Any], dict[str, Any]]:
    """A trajectory file's steps and its other top-level fields."""
    if isinstance(doc, list):
        return doc, {}
    if isinstance(doc, dict):
        for name in STEP_LISTS:
            if isinstance(doc.get(name), list):
                return doc[name], {k: v for k, v in doc.items() if k != name}
    raise ValueError(f"a trajectory is a list of steps or an object with one of {', '.join(STEP_LISTS)}")


async def import_trajectories(root: Path, agent: str | None = None, *, server: Server = None) -> Report:
    """Publish each task folder as its agent: the task (kind `trajectory`, its title and
    other fields), one progress step per trajectory step (the step in `detail`, with the
    file id of the screenshot it names), and every image of the folder as a screenshot."""
    report = Report()
    clients: dict[str, AgentClient] = {}
    try:
        for owner, folder in trajectory_folders(root, agent):
            if not AGENT_ID.match(owner):
                report.refuse(str(folder), f"agent {owner!r} is not an agent id ({AGENT_ID_PATTERN})")
                continue
            if not EVENT_ID.match(folder.name):
                report.refuse(str(folder), f"task {folder.name!r} is not a task id ({EVENT_ID_PATTERN})")
                continue
            if owner not in clients:
                clients[owner] = await AgentClient.connect(server, owner)
            await _task_folder(clients[owner], folder, report)
        for client in clients.values():
            for stream, position in (await client.flush()).items():
                report.acked[stream] = max(report.acked.get(stream, 0), position.seq)
    finally:
        for client in clients.values():
            await client.__aexit__(None, None, None)
    return report


async def _task_folder(client: AgentClient, folder: Path, report: Report) -> None:
    task = folder.name
    files: dict[str, str] = {}
    images, trajectories = _folder_files(folder)
    for image in images:
        relative = image.relative_to(folder).as_posix()
        # Artifact names hold no `/` (the object key is `{agent}/{task}/{id}-{name}`).
        name = relative.replace("/", "_")
        try:
            check_name(name)
        except ValueError as exc:
            report.refuse(str(image), str(exc))
            continue
        content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        files[relative] = await client.screenshot(image, name, content_type=content_type, task_id=task,
                                                  id=stable_id(client.agent, task, relative))  # fmt: skip
        report.stored("screenshots")
    if not trajectories:
        report.refuse(str(folder), "no trajectory (*.json) in the folder")
        return
    for path in trajectories:
        try:
            steps, header = _steps(msgspec.json.decode(path.read_bytes()))
        except (msgspec.DecodeError, ValueError) as exc:
            report.refuse(str(path), str(exc))
            continue
        title = next((str(header[k])[:256] for k in TITLE_KEYS if isinstance(header.get(k), str)), None)
        status = header.get("status") if header.get("status") in ("completed", "failed", "running") else None
        meta = {k: v for k, v in header.items() if k not in TITLE_KEYS and k != "status"} or None
        try:
            body = decode_message(encode({"id": task, "status": status or "completed", "kind": "trajectory",
                                          "title": title, "meta": meta}), TaskIn)  # fmt: skip
        except InvalidMessage as exc:
            report.refuse(str(path), str(exc))
            continue
        await client.send(body)
        report.stored("tasks")
        for index, step in enumerate(steps):
            await _step(client, task, path, index, len(steps), step, files, report)


async def _step(client: AgentClient, task: str, path: Path, index: int, total: int, step: Any,
                files: dict[str, str], report: Report) -> None:  # fmt: skip
    where = f"{path}: step {index + 1}"
    if not isinstance(step, dict):
        report.refuse(where, f"a step is an object, not {type(step).__name__}")
        return
    number = step.get("step", step.get("step_index", index + 1))
    when = step.get("timestamp", step.get("ts"))
    shot = next(
        (step[k] for k in ("screenshot", "screenshot_path", "image") if isinstance(step.get(k), str)), None
    )
    detail = {k: v for k, v in step.items() if k not in ("step", "step_index", "timestamp", "ts")}
    if shot is not None:
        shot_name = Path(shot).name if shot not in files else shot
        match = files.get(shot) or next((f for n, f in files.items() if Path(n).name == shot_name), None)
        if match is not None:
            detail["screenshot_file_id"] = match
    body = {
        "id": stable_id(client.agent, task, path.name, str(index)),
        "task_id": task,
        "step": number,
        "status": str(step.get("status") or step.get("action_type") or "step")[:256],
        "ts": _utc_text(when) if when is not None else None,
        "percent": round(100.0 * (index + 1) / total, 2),
        "detail": detail or None,
    }
    try:
        await client.send(decode_message(encode(body), ProgressIn))
    except (InvalidMessage, ValueError) as exc:
        report.refuse(where, str(exc))
        return
    report.stored("steps")


def _utc_text(value: Any) -> str:
    """A step's time as RFC 3339 UTC: ISO text (no zone: UTC) or Unix seconds."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat()
    when = datetime.fromisoformat(str(value))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


# -- seed 004: MongoDB collections ---------------------------------------------------


async def import_seed_004(folder: Path, settings: Settings | None = None) -> Report:
    from agentstore_server.logs.portability import import_seed_outputs
    from agentstore_server.stores.mongo import MongoStore
    from agentstore_server.stores.postgres import PostgresStore
    from agentstore_server.tasks.db import TasksDb
    from agentstore_server.tasks.seed004 import import_seed_004 as load_runs

    settings = settings or Settings()
    async with PostgresStore(settings.postgres_url) as pg:
        report = await load_runs(TasksDb(pg), folder)
    outputs = folder / "agent_outputs.jsonl"
    if outputs.exists():
        async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
            await import_seed_outputs(mongo, outputs, report)
    return report
