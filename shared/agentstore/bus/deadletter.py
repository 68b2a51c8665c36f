"""Inspect dead letters and publish them back to their subject once the cause is fixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from agentstore.contract import DEADLETTER_STREAM


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    service: str
    subject: str
    reason: str
    headers: dict[str, str]
    data: bytes

    def summary(self) -> dict[str, Any]:
        return {"seq": self.seq, "service": self.service, "subject": self.subject,
                "reason": self.reason, "bytes": len(self.data)}  # fmt: skip


async def list_dead(nc: Client, *, service: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """The newest dead letters (optionally of one service), oldest first."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(DEADLETTER_STREAM)
    except NotFoundError:
        return []
    found: list[DeadLetter] = []
    seq = info.state.last_seq
    while seq >= max(info.state.first_seq, 1) and len(found) < limit:
        letter = await show(nc, seq)
        if letter is not None and (service is None or letter.service == service):
            found.append(letter)
        seq -= 1
    return list(reversed(found))


async def show(nc: Client, seq: int) -> DeadLetter | None:
    try:
        msg = await nc.jetstream().get_msg(DEADLETTER_STREAM, seq)
    except NotFoundError:
        return None
    headers = dict(msg.headers or {})
    return DeadLetter(
        seq=seq,
        service=(msg.subject or "").split(".", 1)[-1],
        subject=headers.get("Dead-Subject", ""),
        reason=headers.get("Dead-Reason", ""),
        headers=headers,
        data=msg.data or b"",
    )


async def redrive(nc: Client, seq: int) -> str:
    """Publish a dead letter's original body and headers back to its subject, then
    delete it from DEADLETTER. The service dedupes by (agent, id), so a redrive of
    something already stored is harmless."""
    letter = await show(nc, seq)
    if letter is None:
        raise LookupError(f"no dead letter {seq}")
    headers = {k[len("Original-") :]: v for k, v in letter.headers.items() if k.startswith("Original-")}
    js = nc.jetstream()
    await js.publish(letter.subject, letter.data, headers=headers or None)
    await js.delete_msg(DEADLETTER_STREAM, seq)
    return letter.subject
