"""`agentstore mirror --to DIR`: seed 001's JSON backup, kept continuously.

Seed 001 wrote every conversation twice, to MongoDB and to JSON files, so a team
always had plain files to read, copy and restore from. Here MongoDB (through the
logs service) stays the one source of truth and the mirror follows the same
stream the logs service consumes: its own durable consumer on `LOGS`, filtered to
conversations and messages, appends each to `DIR/<agent>/<conversation_id>.jsonl`
and acknowledges only once the lines are fsynced. So a mirror that was stopped or
crashed resumes where it left off, and nothing JetStream accepted is missing from
the files.

Each line is one record: `{"record": "conversation", "conversation_id", "ts",
"user_id"?, "context"?}` or `{"record": "message", "id", "role", "content",
"timestamp", ...}` (seed 001's message fields). A line may repeat after a crash
(written, not yet acknowledged); readers keep the newest conversation record and
one message per id — `agentstore import --seed-json DIR` does exactly that, so the
mirror is also a backup that restores into an empty stack.

A message the contract refuses is skipped here (the logs service dead-letters it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agentstore.auth import MIRRORED_STREAM
from agentstore.errors import InvalidMessage
from agentstore.schemas.common import iso
from agentstore.schemas.logs import ConversationIn, MessageIn
from agentstore_server.bus.ingest import Envelope, ack_info

log = logging.getLogger(__name__)
STREAM = MIRRORED_STREAM
SUBJECTS = ["agents.*.conversations", "agents.*.messages"]
DEFAULT_DURABLE = "mirror"


@dataclass
class MirrorStats:
    written: int = 0
    skipped: int = 0
    files: int = 0


def record_of(msg: Msg) -> tuple[Path, dict[str, Any]]:
    """(file relative to the mirror's folder, line) of one ingest message; InvalidMessage
    when the contract refuses it. Read as the logs service reads it (`Envelope`): the
    subject's agent, and `ts` defaulting to JetStream's time."""
    _, agent, kind = msg.subject.split(".")
    seq, ts_ns, _ = ack_info(msg)
    envelope = Envelope(agent, kind, msg.data, msg.headers or {}, seq, ts_ns)
    default_ts = iso(envelope.received)
    if kind == "conversations":
        c = envelope.decode(ConversationIn)
        line: dict[str, Any] = {"record": "conversation", "conversation_id": c.id,
                                "ts": iso(c.ts) if c.ts else default_ts, "user_id": c.user_id,
                                "context": c.context}  # fmt: skip
        conversation = c.id
    else:
        m = envelope.decode(MessageIn)
        line = {"record": "message", "id": m.id, "role": m.role, "content": m.content,
                "timestamp": iso(m.ts) if m.ts else default_ts, "agent_steps": m.agent_steps,
                "pdf_names": m.pdf_names, "source_citations": m.source_citations,
                "meta_data": m.meta_data}  # fmt: skip
        conversation = m.conversation_id
    return Path(agent) / f"{conversation}.jsonl", {k: v for k, v in line.items() if v is not None}


def append_synced(folder: Path, lines: dict[Path, list[bytes]]) -> None:
    """Append each file's lines and fsync it (and a new file's folder) before returning."""
    for relative, chunk in lines.items():
        path = folder / relative
        new_dir = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"".join(chunk))
            os.fsync(fd)
        finally:
            os.close(fd)
        for directory in ([path.parent.parent] if new_dir else []) + [path.parent]:
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


async def mirror(nc: Client, folder: Path, stop: asyncio.Event, *, durable: str = DEFAULT_DURABLE,
                 batch: int = 500) -> MirrorStats:  # fmt: skip
    """Follow LOGS' conversations and messages into `folder` until `stop` is set."""
    js = nc.jetstream()
    await js.add_consumer(STREAM, ConsumerConfig(
        durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
        filter_subjects=SUBJECTS, ack_wait=60, max_ack_pending=10 * batch,
    ))  # fmt: skip
    sub = await js.pull_subscribe_bind(durable, stream=STREAM)
    stats = MirrorStats()
    seen: set[Path] = set()
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=1)
            except (TimeoutError, NatsTimeoutError):
                continue
            lines: dict[Path, list[bytes]] = {}
            for msg in msgs:
                try:
                    relative, line = record_of(msg)
                except (InvalidMessage, ValueError) as exc:
                    stats.skipped += 1
                    log.warning("skipping %s (the logs service dead-letters it): %s", msg.subject, exc)
                    continue
                lines.setdefault(relative, []).append(msgspec.json.encode(line) + b"\n")
            await asyncio.to_thread(append_synced, folder, lines)
            for msg in msgs:
                await msg.ack()
            stats.written += sum(len(chunk) for chunk in lines.values())
            seen.update(lines)
            stats.files = len(seen)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return stats
