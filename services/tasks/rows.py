"""The tasks service's named SQL, migrations and row → wire conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentstore.stores import pgwire
from agentstore.stores.pgwire import json_text, page_cursor, read_cursor
from agentstore.stores.postgres import load_queries

SQL = load_queries(Path(__file__).with_name("queries.sql"))
MIGRATIONS = Path(__file__).with_name("migrations")
JSON_COLUMNS = frozenset({"meta", "detail", "details", "error", "summary", "artifacts", "payload", "spec"})


def to_wire(row: Any, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    return pgwire.to_wire(row, JSON_COLUMNS, drop)


__all__ = ["MIGRATIONS", "SQL", "json_text", "page_cursor", "read_cursor", "to_wire"]
