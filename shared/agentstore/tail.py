"""`agentstore tail`: follow agents' logs live from the LOGS stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

from agentstore.schemas.common import LEVEL_NUMBERS

COLORS = {
    "debug": "dim",
    "info": "cyan",
    "warning": "yellow",
    "error": "red",
    "critical": "bold red",
}


async def tail(nc: Client, agent: str | None, *, level: str | None, text: str | None,
               last: int, as_json: bool, stop: asyncio.Event,
               ready: asyncio.Event | None = None) -> None:  # fmt: skip
    """Print each log as it arrives (after the `last` newest ones) until `stop` is set."""
    try:
        from rich.console import Console  # colours where the server is installed (it brings rich)

        console: Any = Console()
    except ImportError:  # the SDK alone: the same line, uncoloured
        console = None
    subject = f"agents.{agent or '*'}.logs"
    floor = LEVEL_NUMBERS.get(level or "debug", 0)

    async def show(msg: Any) -> None:
        try:
            body = msgspec.json.decode(msg.data)
        except msgspec.DecodeError:
            return
        lvl = body.get("level", "info")
        if LEVEL_NUMBERS.get(lvl, 0) < floor or (
            text and text.lower() not in str(body.get("message", "")).lower()
        ):
            return
        who = msg.subject.split(".")[1]
        if as_json:
            print(json.dumps({"agent_id": who, **body}), flush=True)
        else:
            ts = body.get("ts") or msg.metadata.timestamp.isoformat(timespec="milliseconds")
            style = COLORS.get(lvl, "")
            if console is None:
                print(f"{ts} {who} {lvl:<8} {body.get('message', '')}", flush=True)
                return
            console.print(f"[dim]{ts}[/] [bold]{who}[/] [{style}]{lvl:<8}[/] {body.get('message', '')}",
                          highlight=False, markup=True)  # fmt: skip

    js = nc.jetstream()
    policy = DeliverPolicy.LAST_PER_SUBJECT if last else DeliverPolicy.NEW
    sub = await js.subscribe(subject, cb=show, ordered_consumer=True, deliver_policy=policy)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await sub.unsubscribe()
