"""PostgreSQL rows as the wire shows them, and keyset cursors over them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from agentstore.errors import BadRequest
from agentstore.schemas.common import decode_cursor, encode_cursor, iso


def to_wire(row: Any, json_columns: frozenset[str], drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """RFC 3339 timestamps, decoded JSON columns, no NULL fields."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if value is None or key in drop:
            continue
        if isinstance(value, datetime):
            value = iso(value)
        elif key in json_columns and isinstance(value, str):
            value = msgspec.json.decode(value)
        out[key] = value
    return out


def json_text(value: Any) -> str | None:
    """A value for a jsonb parameter (asyncpg takes JSON text)."""
    return None if value is None else msgspec.json.encode(value).decode()


def page_cursor(at: datetime, *keys: str) -> str:
    return encode_cursor(at.isoformat(), *keys)


def read_cursor(cursor: str | None, keys: int) -> tuple[datetime | None, list[str]]:
    """(timestamp, key strings) of a cursor; (None, ["", ...]) when there is none."""
    if cursor is None:
        return None, [""] * keys
    parts = decode_cursor(cursor, keys + 1)
    try:
        at = datetime.fromisoformat(parts[0])
    except (TypeError, ValueError):
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received") from None
    if not all(isinstance(p, str) for p in parts[1:]):
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
    return at, parts[1:]
