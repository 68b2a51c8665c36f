"""What the console's templates are given beyond the contract's replies: the Jinja2
environment (autoescape on: every value a template prints is escaped unless it is a
`Markup` built here from escaped parts), its filters, and the few shapes computed in Python
(times as "3 min ago", chart geometry, pager links).

Markup lives only in `templates/`; nothing here concatenates HTML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import jinja2

NAV = (("/", "Fleet"), ("/traces", "Traces"), ("/runs", "Runs"), ("/deadletters", "Dead letters"))
AGENT_TABS = (
    ("", "Tasks"),
    ("/logs", "Logs"),
    ("/conversations", "Conversations"),
    ("/memories", "Memories"),
    ("/files", "Screenshots"),
    ("/traces", "Traces"),
    ("/threads", "Threads"),
    ("/sessions", "Sessions"),
    ("/metrics", "Metrics"),
)
TASK_ORDER = ("running", "pending", "completed", "failed", "cancelled")
RUN_ORDER = ("running", "queued", "succeeded", "failed", "cancelled")
LEVELS = ("debug", "info", "warning", "error", "critical")


def query_string(params: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


@dataclass(frozen=True)
class Pager:
    """Links to the first page and to the next one (a cursor in the URL: a stable address)."""

    first: str | None
    next: str | None

    @classmethod
    def of(
        cls, path: str, params: Mapping[str, Any], next_cursor: str | None, *, key: str = "cursor"
    ) -> Pager:
        first = path + query_string({**params, key: None}) if params.get(key) else None
        after = path + query_string({**params, key: next_cursor}) if next_cursor else None
        return cls(first, after)


def ago(iso: str | None) -> str:
    """An RFC 3339 time as "3 min ago" ("" when it does not parse)."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = (datetime.now(UTC) - at).total_seconds()
    if seconds < 0:
        return f"in {humane(-seconds)}"
    return "just now" if seconds < 5 else f"{humane(seconds)} ago"


def humane(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def ordered(figures: Mapping[str, int], order: Sequence[str]) -> list[tuple[str, int]]:
    """Statuses with a count, in the usual order, then any others by name."""
    known = [s for s in order if figures.get(s)] + sorted(s for s in figures if s not in order)
    return [(s, figures[s]) for s in known]


def pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)


def clamp(percent: float) -> float:
    return max(0.0, min(100.0, percent))


@dataclass(frozen=True)
class Chart:
    """An SVG line of (time, value) points, its range labelled."""

    width: int
    height: int
    line: str
    dots: list[tuple[str, str]]
    first: str
    last: str
    low: float
    high: float
    newest: float
    count: int


def chart(points: Sequence[tuple[str, float]], *, width: int = 640, height: int = 160) -> Chart | None:
    if not points:
        return None
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t, _ in points]
    values = [v for _, v in points]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    span_t, span_v = (t1 - t0) or 1.0, (v1 - v0) or 1.0
    pad = 6

    def xy(t: float, v: float) -> tuple[str, str]:
        x = pad + (t - t0) / span_t * (width - 2 * pad)
        y = height - pad - (v - v0) / span_v * (height - 2 * pad)
        return f"{x:.1f}", f"{y:.1f}"

    coords = [xy(t, v) for t, v in zip(times, values, strict=True)]
    return Chart(
        width, height, " ".join(f"{x},{y}" for x, y in coords), [] if len(points) > 60 else coords,
        points[0][0], points[-1][0], v0, v1, values[-1], len(points),
    )  # fmt: skip


@dataclass(frozen=True)
class SpanRow:
    """One row of a trace's waterfall: the span, its depth in the tree, its bar (percent of
    the trace's time) and why it is shown at the top level when it has a parent."""

    span: Any
    depth: int
    offset: float
    width: float
    note: str = ""


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def waterfall(trace: Any, spans: Sequence[Any]) -> list[SpanRow]:
    """The spans as a tree in start order (each child under its parent), with bars on the
    trace's time axis. A span whose parent is not among `spans` (never sent, or on another
    page) and spans whose parents form a cycle are shown at the top level, saying so; every
    span is shown exactly once, whatever the parents say."""
    t0, t1 = _at(trace.start), _at(trace.end)
    total = (t1 - t0) or 1e-9
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Any]] = {}
    for s in spans:  # already in start order: children keep it
        parent = s.parent_span_id if s.parent_span_id in ids and s.parent_span_id != s.span_id else None
        children.setdefault(parent, []).append(s)
    rows: list[SpanRow] = []
    placed: set[str] = set()

    def bar(s: Any, depth: int, note: str) -> SpanRow:
        offset = clamp((_at(s.start) - t0) / total * 100)
        return SpanRow(
            s, depth, offset, max(0.3, min(100.0 - offset, s.duration_ms / 1000 / total * 100)), note
        )

    def place(root: Any, note: str) -> None:
        stack = [(root, 0, note)]
        while stack:  # iterative: a 100k-span chain is no recursion limit
            s, depth, why = stack.pop()
            if s.span_id in placed:
                continue
            placed.add(s.span_id)
            rows.append(bar(s, depth, why))
            stack.extend((c, depth + 1, "") for c in reversed(children.get(s.span_id, [])))

    for s in children.get(None, []):
        place(s, "" if s.parent_span_id is None else "its parent is not on this page")
    for s in spans:  # what no root reaches: parents in a cycle
        if s.span_id not in placed:
            place(s, "its parents form a cycle")
    return rows


# A span's logs window reaches this far past its ends: a log without `ts` is stamped when
# JetStream stored it, a little after the batched publish left the agent (the SDK stamps a
# log inside a span itself).
LOG_SLACK_SECONDS = 0.25


def shifted(iso: str, seconds: float) -> str:
    """An RFC 3339 time moved by `seconds`, in the contract's form."""
    at = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def money(usd: float | None) -> str:
    if not usd:
        return "—"
    return f"${usd:.4f}" if usd >= 0.0001 else f"${usd:.2e}"


def millis(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms * 1000:.0f} µs"


MAX_SHOWN = 20_000


def shown(value: Any) -> str:
    """A value as JSON for a collapsed block, cut at MAX_SHOWN characters (a huge attribute
    map must not make a page of megabytes)."""
    text = pretty(value)
    return (
        text
        if len(text) <= MAX_SHOWN
        else text[:MAX_SHOWN] + f"\n… {len(text) - MAX_SHOWN:,} more characters"
    )


def segment(value: Any) -> str:
    """An id as one path segment: `/`, `?`, `#` and `%` escaped too (Jinja's urlencode keeps
    `/`, so a thread id `tickets/42` would route elsewhere); the routes decode it back."""
    return quote(str(value), safe="")


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("agentstore_server.web", "templates"),
    autoescape=True,  # every template is HTML
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the page (and its test), not renders ""
    finalize=lambda value: "" if value is None else value,  # an absent field shows empty, not "None"
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(ago=ago, pretty=pretty, clamp=clamp, thousands="{:,}".format, num="{:g}".format,
                   money=money, millis=millis, shown=shown, shifted=shifted, segment=segment)  # fmt: skip
ENV.globals.update(NAV=NAV, AGENT_TABS=AGENT_TABS, LEVELS=LEVELS, TASK_ORDER=TASK_ORDER, RUN_ORDER=RUN_ORDER,
                   ordered=ordered, LOG_SLACK_SECONDS=LOG_SLACK_SECONDS)  # fmt: skip


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def macro(name: str) -> Any:
    """A macro of `_macros.html`, to render a fragment (the live tail's rows)."""
    return getattr(ENV.get_template("_macros.html").module, name)
