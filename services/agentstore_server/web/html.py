"""HTML for the console: one layout, small escaping helpers, tables, pagers and charts.

Everything is rendered on the server; the only script is the live tail
(`static/console.js`). No asset comes from anywhere but this service.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

NAV = (("/", "Fleet"), ("/runs", "Runs"), ("/deadletters", "Dead letters"))
AGENT_TABS = (
    ("", "Tasks"),
    ("/logs", "Logs"),
    ("/conversations", "Conversations"),
    ("/memories", "Memories"),
    ("/files", "Screenshots"),
    ("/metrics", "Metrics"),
)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def link(href: str, text: Any, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    return f'<a href="{esc(href)}"{extra}>{esc(text)}</a>'


def query_string(params: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


def page(title: str, body: str, *, section: str, writes: str | None = None) -> str:
    nav = "".join(
        f'<a href="{href}"{" class=on" if href == section else ""}>{esc(name)}</a>' for href, name in NAV
    )
    mode = (
        '<span class="mode write">writes as evaluator</span>'
        if writes
        else '<span class="mode" title="Write actions need the evaluator identity (WEB_EVALUATOR)">'
        "read-only</span>"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · agentstore</title>"
        '<link rel="stylesheet" href="/static/console.css"><script src="/static/console.js" defer></script>'
        f'</head><body><header><a class="brand" href="/">agentstore</a><nav>{nav}</nav>{mode}</header>'
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


def agent_tabs(agent: str, active: str) -> str:
    base = f"/agents/{esc(agent)}"
    tabs = "".join(
        f'<a href="{base}{suffix}"{" class=on" if suffix == active else ""}>{esc(name)}</a>'
        for suffix, name in AGENT_TABS
    )
    return f'<nav class="tabs">{tabs}</nav>'


def panel(title: str, content: str, *, panel_id: str = "") -> str:
    ident = f' id="{esc(panel_id)}"' if panel_id else ""
    return f'<section class="panel"{ident}><h2>{esc(title)}</h2>{content}</section>'


def failed(what: str, error: BaseException) -> str:
    return f'<p class="error">{esc(what)} is unavailable: {esc(error)}</p>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    table_id: str = "",
    row_ids: Sequence[str] | None = None,
) -> str:
    """`rows` hold HTML already escaped by the caller."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        (f'<tr id="{esc(row_ids[i])}">' if row_ids else "<tr>")
        + "".join(f"<td>{c}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    ident = f' id="{esc(table_id)}"' if table_id else ""
    if not body:
        body = f'<tr class="empty"><td colspan="{len(headers)}">nothing yet</td></tr>'
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pager(path: str, params: Mapping[str, Any], next_cursor: str | None, *, key: str = "cursor") -> str:
    """Links to the first page and to the next one (a cursor in the URL: a stable address)."""
    links = []
    if params.get(key):
        links.append(link(path + query_string({**params, key: None}), "⇤ first page"))
    if next_cursor:
        links.append(link(path + query_string({**params, key: next_cursor}), "next page →", rel="next"))
    return f'<p class="pager">{" · ".join(links)}</p>' if links else ""


def when(iso: str | None) -> str:
    """An RFC 3339 time shown as "3 min ago" with the exact time on hover."""
    if not iso:
        return "—"
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return esc(iso)
    return f'<time datetime="{esc(iso)}" title="{esc(iso)}">{esc(ago(at))}</time>'


def ago(at: datetime) -> str:
    seconds = (datetime.now(UTC) - at).total_seconds()
    if seconds < 0:
        return f"in {humane(-seconds)}"
    return "just now" if seconds < 5 else f"{humane(seconds)} ago"


def humane(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def status(value: str | None) -> str:
    return f'<span class="status s-{esc(value)}">{esc(value)}</span>'


def level(value: str) -> str:
    return f'<span class="level l-{esc(value)}">{esc(value)}</span>'


def progress_bar(percent: float | None, label: str = "") -> str:
    if percent is None:
        return esc(label) or "—"
    pct = max(0.0, min(100.0, percent))
    return (
        f'<div class="bar" role="progressbar" aria-valuenow="{pct:.0f}" title="{esc(label)}">'
        f'<div style="width:{pct:.1f}%"></div><span>{pct:.0f}% {esc(label)}</span></div>'
    )


def counts(figures: Mapping[str, int], order: Sequence[str]) -> str:
    known = [s for s in order if figures.get(s)] + sorted(s for s in figures if s not in order)
    if not known:
        return '<span class="muted">none</span>'
    return " ".join(f'{status(s)}<b class="n">{figures[s]:,}</b>' for s in known)


def code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
    return f"<pre>{esc(text)}</pre>"


def form_button(action: str, label: str, token: str, *, enabled: bool, why: str) -> str:
    if not enabled:
        return (
            f'<button disabled title="{esc(why)}">{esc(label)}</button> <span class="muted">{esc(why)}</span>'
        )
    return (
        f'<form method="post" action="{esc(action)}" class="inline">'
        f'<input type="hidden" name="token" value="{esc(token)}"><button>{esc(label)}</button></form>'
    )


def line_chart(points: Sequence[tuple[str, float]], *, width: int = 640, height: int = 160) -> str:
    """An SVG line of (time, value) points, with its range labelled."""
    if not points:
        return '<p class="muted">no points in range</p>'
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t, _ in points]
    values = [v for _, v in points]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    span_t, span_v = (t1 - t0) or 1.0, (v1 - v0) or 1.0
    pad = 6

    def xy(t: float, v: float) -> str:
        x = pad + (t - t0) / span_t * (width - 2 * pad)
        y = height - pad - (v - v0) / span_v * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(t, v) for t, v in zip(times, values, strict=True))
    dots = (
        ""
        if len(points) > 60
        else "".join(
            f'<circle cx="{xy(t, v).split(",")[0]}" cy="{xy(t, v).split(",")[1]}" r="2.5"/>'
            for t, v in zip(times, values, strict=True)
        )
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{len(points)} points from {esc(points[0][0])} to {esc(points[-1][0])}">'
        f'<polyline points="{line}"/>{dots}</svg>'
        f'<p class="axis"><span>{esc(points[0][0])}</span><span>min {v0:g} · max {v1:g} · '
        f"last {values[-1]:g}</span><span>{esc(points[-1][0])}</span></p>"
    )
