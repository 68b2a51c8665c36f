"""Reading other systems' data files for `agentstore import`: MongoDB's JSON Lines
(`mongoexport`, relaxed or canonical Extended JSON), CSV, and the rejects report.

An importer validates every record with the contract's own types and stores the
valid ones; a bad record never stops the others. Each refusal is kept as
`file:line: reason`, so a team sees exactly what did not move in and why.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from agentstore.schemas.common import iso

# The first refusals are listed in full; past this, they are only counted.
REJECTS_LISTED = 1000


@dataclass
class Report:
    """What an import stored (per kind of record) and what it refused (with why)."""

    counts: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    # An import through the bus: the newest acked sequence per stream, for a query's
    # `after` (read your writes: `{"stream": name, "seq": n}`).
    acked: dict[str, int] = field(default_factory=dict)

    def stored(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def refuse(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < REJECTS_LISTED:
            self.reasons.append(f"{where}: {reason}")

    def merge(self, other: Report) -> None:
        for kind, n in other.counts.items():
            self.stored(kind, n)
        self.rejected += other.rejected
        self.reasons += other.reasons[: REJECTS_LISTED - len(self.reasons)]

    def totals(self) -> dict[str, int]:
        return {**self.counts, "rejected": self.rejected}


def plain(value: Any) -> Any:
    """A decoded Extended JSON value as plain JSON: dates as RFC 3339 UTC, ObjectIds and
    other BSON scalars as their string or number."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Decimal):
        return float(value)
    to_decimal = getattr(value, "to_decimal", None)  # bson.Decimal128
    if to_decimal is not None:
        return float(to_decimal())
    return str(value)  # ObjectId, Int64 (an int subclass is caught above), UUID ...


def mongo_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, document as plain JSON) for each line of a mongoexport file; a line that
    does not parse yields its reason instead."""
    from bson import json_util

    options = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json_util.loads(line, json_options=options)
            except Exception as exc:  # bson raises ValueError, TypeError, InvalidId ...
                yield number, f"not Extended JSON: {exc}"
                continue
            if not isinstance(doc, dict):
                yield number, f"a line must hold one document (an object), not {type(doc).__name__}"
                continue
            yield number, plain(doc)


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by header) of a CSV file; empty cells are left out (NULL)."""
    with open(path, newline="", encoding="utf-8") as rows:
        reader = csv.DictReader(rows)
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k and v not in (None, "")}


def stable_id(*parts: str) -> str:
    """An id derived from what identifies a record in its source, so importing the same
    record twice names the same entity (idempotent), within the contract's id alphabet."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def split(doc: dict[str, Any], known: set[str], dropped: frozenset[str] = frozenset({"_id"})
          ) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The fields a record type knows, and the rest (kept by the importer, never dropped)."""
    ours = {k: v for k, v in doc.items() if k in known}
    rest = {k: v for k, v in doc.items() if k not in known and k not in dropped}
    return ours, rest


def encode(record: dict[str, Any]) -> bytes:
    return msgspec.json.encode({k: v for k, v in record.items() if v is not None})
