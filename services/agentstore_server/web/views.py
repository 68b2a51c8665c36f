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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2

NAV = (("/", "Fleet"), ("/runs", "Runs"), ("/deadletters", "Dead letters"))
AGENT_TABS = (
    ("", "Tasks"),
    ("/logs", "Logs"),
    ("/conversations", "Conversations"),
    ("/memories", "Memories"),
    ("/files", "Screenshots"),
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


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("agentstore_server.web", "templates"),
    autoescape=True,  # every template is HTML
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the page (and its test), not renders ""
    finalize=lambda value: "" if value is None else value,  # an absent field shows empty, not "None"
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(ago=ago, pretty=pretty, clamp=clamp, thousands="{:,}".format, num="{:g}".format)
ENV.globals.update(NAV=NAV, AGENT_TABS=AGENT_TABS, LEVELS=LEVELS, TASK_ORDER=TASK_ORDER, RUN_ORDER=RUN_ORDER,
                   ordered=ordered)  # fmt: skip


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def macro(name: str) -> Any:
    """A macro of `_macros.html`, to render a fragment (the live tail's rows)."""
    return getattr(ENV.get_template("_macros.html").module, name)
