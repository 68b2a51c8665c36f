"""The metrics service's named SQL, migrations and row → wire conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentstore.stores import pgwire
from agentstore.stores.postgres import load_queries

SQL = load_queries(Path(__file__).with_name("queries.sql"))
MIGRATIONS = Path(__file__).with_name("migrations")
JSON_COLUMNS = frozenset(
    {"test_history", "learning_patterns", "improvement_suggestions", "capabilities", "config"}
)


def to_wire(row: Any) -> dict[str, Any]:
    return pgwire.to_wire(row, JSON_COLUMNS)
