"""Export and import of conversations, messages, memories and events as JSON Lines.

Replaces seed 001's dual write (MongoDB plus JSON files): the database is
the one source of truth, and an export is a deliberate, repeatable snapshot.
Files are `{collection}.jsonl`, one record per line in the wire's item
form, sorted by key with sorted fields, so exporting the same data twice
gives the same bytes. Import validates every record like ingest does and
upserts by key, so it is idempotent. Seed-001 JSON conversation files (one
conversation with its `messages` per file) are read too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from agentstore.errors import InvalidMessage
from agentstore.schemas.common import (
    AGENT_ID_PATTERN,
    EPOCH,
    AgentId,
    EventId,
    FreeMap,
    Name,
    Strict,
    UtcTime,
    decode_message,
    to_ms,
)
from agentstore.schemas.logs import EventIn, MemoryIn, MessageIn, OutputIn
from agentstore_server.logs.conversations import conversation_key
from agentstore_server.logs.documents import agents_filter, make_doc, to_item
from agentstore_server.logs.outputs import Outputs
from agentstore_server.stores.mongo import Document, MongoStore
from agentstore_server.stores.seedfiles import Report, mongo_lines, split, stable_id

COLLECTIONS = ("conversations", "messages", "memories", "events")
BATCH = 1000

# progress(collection, records done so far)
Progress = Callable[[str, int], None]


class ConversationRecord(Strict):
    """A conversation as exported."""

    agent_id: AgentId
    conversation_id: EventId
    created_at: UtcTime
    updated_at: UtcTime
    user_id: Name | None = None
    context: FreeMap | None = None


def _silent(collection: str, done: int) -> None:
    pass


async def export(
    mongo: MongoStore, folder: Path, agent: str | None, progress: Progress = _silent
) -> dict[str, int]:
    """Write `{collection}.jsonl` files into folder; returns the record count of each."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for collection in COLLECTIONS:
        done = 0
        with open(folder / f"{collection}.jsonl", "wb") as out:
            async for batch in _batches(mongo, collection, agent):
                out.writelines(msgspec.json.encode(to_item(d), order="sorted") + b"\n" for d in batch)
                done += len(batch)
                progress(collection, done)
        counts[collection] = done
    return counts


async def _batches(mongo: MongoStore, collection: str, agent: str | None) -> Any:
    """All documents by `_id`, BATCH at a time (bounded memory for any size)."""
    last: str | None = None
    while True:
        filter = agents_filter([agent] if agent else None)
        if last is not None:
            filter["_id"] = {"$gt": last}
        docs = await mongo.find(collection, filter, sort=[("_id", 1)], limit=BATCH)
        if not docs:
            return
        yield docs
        last = docs[-1]["_id"]


async def import_folder(mongo: MongoStore, folder: Path, progress: Progress = _silent) -> dict[str, int]:
    """Load `{collection}.jsonl` files exported by `export`; idempotent."""
    counts = {}
    for collection in COLLECTIONS:
        path = folder / f"{collection}.jsonl"
        if not path.exists():
            continue
        counts[collection] = await _load(mongo, collection, _records(path, collection), progress)
    return counts


def _records(path: Path, collection: str) -> Iterator[Document]:
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield record_to_doc(collection, line)
            except InvalidMessage as exc:
                raise InvalidMessage(f"{path}:{number}: {exc}") from None


def record_to_doc(collection: str, line: bytes) -> Document:
    """Validate one exported record and rebuild its stored document."""
    if collection == "conversations":
        c = decode_message(line, ConversationRecord)
        doc: Document = {
            "_id": conversation_key(c.agent_id, c.conversation_id),
            "agent_id": c.agent_id,
            "conversation_id": c.conversation_id,
            "created_at": to_ms(c.created_at),
            "updated_at": to_ms(c.updated_at),
            "meta_ts": to_ms(c.updated_at),
        }
        doc.update({k: v for k, v in (("user_id", c.user_id), ("context", c.context)) if v})
        return doc
    kinds: dict[str, type[MessageIn | MemoryIn | EventIn]] = {
        "messages": MessageIn,
        "memories": MemoryIn,
        "events": EventIn,
    }
    message = decode_message(line, kinds[collection])
    agent = message.agent_id
    if agent is None:
        raise InvalidMessage("record has no agent_id")
    doc = make_doc(agent, message, datetime.now(UTC))
    if collection == "memories" and "key" in doc:
        doc["_id"] = f"{agent}#{doc['key']}"
    return doc


async def _load(mongo: MongoStore, collection: str, docs: Iterator[Document], progress: Progress) -> int:
    done = 0
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == BATCH:
            done += await _upsert(mongo, collection, batch)
            progress(collection, done)
            batch = []
    if batch:
        done += await _upsert(mongo, collection, batch)
        progress(collection, done)
    return done


async def _upsert(mongo: MongoStore, collection: str, docs: list[Document]) -> int:
    updates = [({"_id": d["_id"]}, {k: v for k, v in d.items() if k != "_id"}) for d in docs]
    refused = await mongo.upsert_many(collection, updates)
    if refused:
        raise InvalidMessage(f"{collection}: the database refused {len(refused)} records: {refused}")
    return len(docs)


class SeedMessage(msgspec.Struct):
    """A message of a seed-001 JSON conversation file."""

    role: str
    content: str
    timestamp: datetime | None = None
    id: str | None = None  # the mirror's files keep each message's id
    agent_steps: list[Any] | None = None
    pdf_names: list[str] | None = None
    source_citations: list[dict[str, Any]] | None = None
    meta_data: dict[str, Any] | None = None


class SeedConversation(msgspec.Struct):
    """A seed-001 JSON conversation file: the conversation and its messages."""

    conversation_id: str
    messages: list[SeedMessage] = []
    user_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    context: dict[str, Any] | None = None


class _MirrorLine(msgspec.Struct):
    record: str
    ts: datetime | None = None
    user_id: str | None = None
    context: dict[str, Any] | None = None


def mirrored_conversation(path: Path) -> SeedConversation:
    """A conversation from `agentstore mirror`'s `<conversation_id>.jsonl`: the newest
    conversation record, and each message once (a line repeated after a crash is one
    message), oldest first."""
    header: _MirrorLine | None = None
    oldest: datetime | None = None
    messages: dict[str, SeedMessage] = {}
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        kind = msgspec.json.decode(line, type=_MirrorLine)
        if kind.record == "conversation":
            if header is None or (kind.ts and header.ts and kind.ts >= header.ts):
                header = kind
            if kind.ts and (oldest is None or kind.ts < oldest):
                oldest = kind.ts
        elif kind.record == "message":
            message = msgspec.json.decode(line, type=SeedMessage)
            messages[message.id or str(len(messages))] = message
        else:
            raise msgspec.ValidationError(f"unknown record {kind.record!r}")
    ordered = sorted(messages.values(), key=lambda m: (m.timestamp is None, m.timestamp or EPOCH))
    stamps = [t for t in [oldest, *(m.timestamp for m in ordered)] if t is not None]
    return SeedConversation(
        conversation_id=path.stem, messages=ordered, user_id=header.user_id if header else None,
        created_at=min(stamps) if stamps else None, context=header.context if header else None,
    )  # fmt: skip


def _utc(ts: datetime | None, default: datetime) -> str:
    ts = ts or default
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()


async def import_seed_files(
    mongo: MongoStore, files: list[Path], agent: str, progress: Progress = _silent
) -> dict[str, int]:
    """Load seed-001 JSON conversation files for one agent; message ids are
    `{conversation_id}-{index}`, so loading a file twice changes nothing."""
    conversations: list[Document] = []
    messages: list[Document] = []
    for path in files:
        try:
            if path.suffix == ".jsonl":
                seed = mirrored_conversation(path)
            else:
                seed = msgspec.json.decode(path.read_bytes(), type=SeedConversation)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidMessage(f"{path}: not a seed conversation file: {exc}") from None
        now = datetime.now(UTC)
        created = seed.created_at or (seed.messages[0].timestamp if seed.messages else None) or now
        stamps = [m.timestamp for m in seed.messages if m.timestamp] + [seed.updated_at or created]
        record = {
            "agent_id": agent,
            "conversation_id": seed.conversation_id,
            "created_at": _utc(created, now),
            "updated_at": _utc(max(s if s.tzinfo else s.replace(tzinfo=UTC) for s in stamps), now),
            "user_id": seed.user_id,
            "context": seed.context,
        }
        conversations.append(record_to_doc("conversations", _encode(record)))
        for index, m in enumerate(seed.messages):
            body = {
                "agent_id": agent,
                "id": m.id or f"{seed.conversation_id}-{index:05d}",
                "conversation_id": seed.conversation_id,
                "role": m.role,
                "content": m.content,
                "ts": _utc(m.timestamp, created),
                "agent_steps": m.agent_steps,
                "pdf_names": m.pdf_names,
                "source_citations": m.source_citations,
                "meta_data": m.meta_data,
            }
            messages.append(record_to_doc("messages", _encode(body)))
    return {
        "conversations": await _load(mongo, "conversations", iter(conversations), progress),
        "messages": await _load(mongo, "messages", iter(messages), progress),
    }


def _encode(record: dict[str, Any]) -> bytes:
    return msgspec.json.encode({k: v for k, v in record.items() if v is not None})


# Seed 004's `agent_outputs` (mongoexport JSON Lines): the seed upserts one output per
# (run, agent, kind), so that triple names it here too and a re-import replaces nothing new.
AGENT_ID = re.compile(AGENT_ID_PATTERN)
SEED_OUTPUT_FIELDS = {"run_id", "agent", "agent_id", "kind", "schema_version", "data", "created_at",
                      "updated_at", "ts", "task_id"}  # fmt: skip


async def import_seed_outputs(mongo: MongoStore, path: Path, report: Report) -> None:
    outputs = Outputs(mongo, mongo)  # an import reads back over the wire
    docs: list[Document] = []
    for number, doc in mongo_lines(path):
        where = f"{path.name}:{number}"
        if isinstance(doc, str):
            report.refuse(where, doc)
            continue
        ours, rest = split(doc, SEED_OUTPUT_FIELDS)
        agent = ours.pop("agent", None) or ours.pop("agent_id", None)
        ours.pop("agent_id", None)
        if not isinstance(agent, str):
            report.refuse(where, "an output needs its agent (a string)")
            continue
        data = ours.get("data")
        if rest and isinstance(data, dict):
            data = {**data, "_seed_fields": rest}
        body = {
            "id": stable_id(str(ours.get("run_id")), agent, str(ours.get("kind"))),
            "kind": ours.get("kind"),
            "schema_version": ours.get("schema_version", 1),
            "data": data,
            "ts": ours.get("updated_at") or ours.get("ts") or ours.get("created_at"),
            "run_id": ours.get("run_id"),
            "task_id": ours.get("task_id"),
            "agent_id": agent,
        }
        try:
            output = decode_message(_encode(body), OutputIn)
            if not AGENT_ID.match(agent):
                raise InvalidMessage(f"agent {agent!r} is not an agent id ({AGENT_ID.pattern})")
        except InvalidMessage as exc:
            report.refuse(where, str(exc))
            continue
        docs.append(make_doc(agent, output, datetime.now(UTC)))
        if len(docs) == BATCH:
            await _store_outputs(outputs, docs, report)
            docs = []
    if docs:
        await _store_outputs(outputs, docs, report)


async def _store_outputs(outputs: Outputs, docs: list[Document], report: Report) -> None:
    refused = await outputs.write(docs)
    for index, reason in refused.items():
        report.refuse(f"agent_outputs {docs[index]['_id']}", reason)
    report.stored("agent_outputs", len(docs) - len(refused))
