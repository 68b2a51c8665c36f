"""The web console: what the frontend role sees, as pages with stable URLs.

It talks to the other services only over NATS, through the contract: the
`console` identity may make the frontend's requests, the evaluator's
read-only `query.*` requests and read DEADLETTER. Each panel of a page is
one request-reply (the panels of a page are asked concurrently). Write
actions (cancel a run, redrive a dead letter) go through a second
connection logged in as an evaluator, opened only when `WEB_EVALUATOR`
names one; without it the console is read-only and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from agentstore.bus import deadletter
from agentstore.bus.connect import connect_nats
from agentstore.client import EvaluatorClient
from agentstore.contract import DEADLETTER_STREAM
from agentstore.errors import AgentstoreError, BadRequest, Forbidden, NotFound, RequestError
from agentstore_server.config import Settings
from agentstore_server.web import html as h

log = logging.getLogger("agentstore.web")
STATIC = Path(__file__).with_name("static")
TASK_ORDER = ("running", "pending", "completed", "failed", "cancelled")
RUN_ORDER = ("running", "queued", "succeeded", "failed", "cancelled")
LEVELS = ("debug", "info", "warning", "error", "critical")
PAGE_SIZE = 50
DEAD_PAGE = 50
T = TypeVar("T")


class ReadOnly:
    """The console's reads: only `query.*` endpoints, whatever the identity could do."""

    def __init__(self, nc: Client, timeout: float = 10.0) -> None:
        self._client = EvaluatorClient(nc, timeout=timeout)
        self.nc = nc

    async def query(self, name: str, /, **fields: Any) -> Any:
        if not name.startswith("query."):
            raise Forbidden(f"the console reads only query.* endpoints, not {name}")
        return await self._client.request(name, **fields)


class Console:
    """The aiohttp application over a connected NATS client; `start()`/`stop()`."""

    def __init__(self, settings: Settings, nc: Client) -> None:
        self.settings = settings
        self.reader = ReadOnly(nc)
        self.writer: Client | None = None
        # Forms carry this token: another site cannot make the browser post a write.
        self.token = secrets.token_urlsafe(16)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def writes(self) -> str | None:
        return self.settings.web_evaluator if self.writer is not None else None

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        if s.web_evaluator:
            nats = replace(s.nats, credentials_dir=s.agentstore_credentials, user=None, password=None)
            self.writer = await connect_nats(
                nats.as_identity(f"evaluator-{s.web_evaluator}"),
                name=f"agentstore-web-evaluator-{s.web_evaluator}",
                inbox_prefix="_INBOX.evaluator",
            )
        app = web.Application(middlewares=[self._errors])
        app.add_routes(
            [
                web.get("/", self.fleet),
                web.get("/agents/{agent}", self.agent_tasks),
                web.get("/agents/{agent}/tasks/{task}", self.task),
                web.get("/agents/{agent}/logs", self.logs),
                web.get("/agents/{agent}/logs.json", self.logs_json),
                web.get("/agents/{agent}/conversations", self.conversations),
                web.get("/agents/{agent}/conversations/{conversation}", self.conversation),
                web.get("/agents/{agent}/memories", self.memories),
                web.get("/agents/{agent}/files", self.files),
                web.get("/agents/{agent}/metrics", self.metrics),
                web.get("/runs", self.runs),
                web.get("/runs/{run}", self.run),
                web.post("/runs/{run}/cancel", self.cancel_run),
                web.get("/deadletters", self.dead_letters),
                web.get("/deadletters/{seq}", self.dead_letter),
                web.post("/deadletters/{seq}/redrive", self.redrive),
                web.get("/healthz", self.healthz),
                web.static("/static", STATIC),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.web_host, s.web_port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else s.web_port
        log.info(
            "web console on http://%s:%s (%s)",
            s.web_host,
            self.port,
            "read-write" if self.writes else "read-only",
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.writer is not None:
            await self.writer.drain()
            self.writer = None

    async def serve(self) -> None:
        """A background loop for the service runner: serves until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- plumbing ------------------------------------------------------------------
    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except RequestError as exc:
            status = {400: 400, 403: 403, 404: 404}.get(exc.code, 503)
            return self._html(f"{status}", f'<p class="error">{h.esc(exc)}</p>', "/", status=status)
        except AgentstoreError as exc:
            return self._html("503", f'<p class="error">{h.esc(exc)}</p>', "/", status=503)

    def _html(self, title: str, body: str, section: str, *, status: int = 200) -> web.Response:
        return web.Response(
            text=h.page(title, body, section=section, writes=self.writes),
            content_type="text/html",
            status=status,
            headers={"Cache-Control": "no-store"},
        )

    async def _panel(self, what: str, call: Awaitable[T]) -> tuple[T | None, str]:
        """One panel's data, or the reason it is missing (the rest of the page still shows)."""
        try:
            return await call, ""
        except (AgentstoreError, OSError, TimeoutError) as exc:
            return None, h.failed(what, exc)

    def _write_enabled(self, action: str) -> Client:
        if self.writer is None:
            raise web.HTTPForbidden(
                text=f"{action} needs the evaluator identity: this console is read-only. Start the web "
                "service with WEB_EVALUATOR=<name> (it logs in as evaluator-<name>).",
            )
        return self.writer

    async def _check_token(self, request: web.Request) -> None:
        form = await request.post()
        if form.get("token") != self.token:
            raise web.HTTPForbidden(text="the form is stale or from another site; reload the page")

    def _why_read_only(self, action: str) -> str:
        return f"{action} needs the evaluator identity (start the console with WEB_EVALUATOR)"

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # -- the fleet -----------------------------------------------------------------
    async def fleet(self, request: web.Request) -> web.Response:
        cursor = request.query.get("cursor") or None

        async def agents_with_tasks() -> tuple[Any, Any]:
            listed = await self.reader.query("query.agents", limit=PAGE_SIZE, cursor=cursor)
            ids = [a.agent_id for a in listed.items]
            per_agent = await self.reader.query("query.task_counts", agent_ids=ids) if ids else None
            return listed, per_agent

        (agents, tasks_all, runs_all, dead) = await asyncio.gather(
            self._panel("the agents", agents_with_tasks()),
            self._panel("task counts", self.reader.query("query.task_counts")),
            self._panel("run counts", self.reader.query("query.run_counts")),
            self._panel("dead letters", self._dead_count()),
        )
        summary = "".join(
            [
                h.panel("Tasks by status", tasks_all[1] or h.counts(tasks_all[0].counts, TASK_ORDER)),
                h.panel(
                    "Runs by status",
                    runs_all[1] or f'<a href="/runs">{h.counts(runs_all[0].counts, RUN_ORDER)}</a>',
                ),
                h.panel(
                    "Dead letters",
                    dead[1] or h.link("/deadletters", f"{dead[0]:,} waiting", id="dead-count"),
                ),
            ]
        )
        if agents[1]:
            table = agents[1]
        else:
            listed, per_agent = agents[0]  # type: ignore[misc]
            by_agent = per_agent.by_agent if per_agent else {}
            rows = [
                [
                    h.link(f"/agents/{a.agent_id}", a.agent_id),
                    h.when(a.last_seen),
                    f'<span class="{"errors" if a.errors else "muted"}">{a.errors:,}</span>',
                    h.counts(by_agent.get(a.agent_id, {}), TASK_ORDER),
                ]
                for a in listed.items
            ]
            table = h.table(["agent", "last seen", "errors (1 h)", "tasks"], rows, table_id="agents")
            table += h.pager("/", {"cursor": cursor}, listed.next_cursor)
        body = f'<div class="grid">{summary}</div>' + h.panel("Agents", table, panel_id="fleet")
        return self._html("Fleet", body, "/")

    async def _dead_count(self) -> int:
        try:
            info = await self.reader.nc.jetstream().stream_info(DEADLETTER_STREAM)
        except NotFoundError:
            return 0
        return int(info.state.messages)

    # -- an agent ------------------------------------------------------------------
    def _agent_page(self, agent: str, tab: str, title: str, body: str) -> web.Response:
        return self._html(f"{agent} · {title}", h.agent_tabs(agent, tab) + body, "/")

    async def agent_tasks(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        tasks, profile = await asyncio.gather(
            self._panel(
                "tasks", self.reader.query("query.tasks", agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor)
            ),
            self._panel("the profile", self.reader.query("query.agent_metrics", agent_id=agent)),
        )
        listed, error = tasks
        if listed is None:
            tasks_html = error
        else:
            rows = []
            for t in listed.items:
                p = t.latest_progress
                rows.append(
                    [
                        h.link(f"/agents/{agent}/tasks/{t.id}", t.title or t.id),
                        h.status(t.status),
                        h.esc(t.kind),
                        h.progress_bar(p.percent if p else None, f"step {p.step}: {p.status}" if p else ""),
                        h.when(t.updated_at),
                    ]
                )
            tasks_html = h.table(["task", "status", "kind", "progress", "updated"], rows, table_id="tasks")
            tasks_html += h.pager(f"/agents/{agent}", {"cursor": cursor}, listed.next_cursor)
        if profile[0] is None:
            profile_html = '<p class="muted">no profile recorded</p>'
        else:
            p = profile[0]
            figures = [
                ("level", p.level), ("xp", p.xp), ("learning score", f"{p.learning_score:g}"),
                ("pass rate", f"{p.pass_rate:.0%}"), ("tests given", p.total_tests_given),
                ("tests passed", p.total_tests_passed), ("custody level", p.custody_level),
                ("difficulty", p.current_difficulty), ("status", p.status),
            ]  # fmt: skip
            profile_html = (
                '<dl class="profile">'
                + "".join(f"<div><dt>{h.esc(k)}</dt><dd>{h.esc(v)}</dd></div>" for k, v in figures)
                + "</dl>"
            )
        body = h.panel("Profile", profile_html, panel_id="profile") + h.panel("Tasks", tasks_html)
        return self._agent_page(agent, "", "tasks", body)

    async def task(self, request: web.Request) -> web.Response:
        agent, task_id = request.match_info["agent"], request.match_info["task"]
        t = await self.reader.query("query.task", agent_id=agent, task_id=task_id)
        steps = [
            [
                h.esc(p.step),
                h.esc(p.status),
                h.progress_bar(p.percent),
                h.when(p.ts),
                h.code(p.detail) if p.detail else "",
            ]
            for p in t.progress
        ]
        evals = [
            [
                h.esc(e.evaluator),
                f"{e.score:g}",
                "passed" if e.passed else "failed",
                h.esc(e.notes),
                h.when(e.created_at),
            ]
            for e in t.evaluations
        ]
        body = (
            f"<p>{h.status(t.status)} · {h.esc(t.kind)} · updated {h.when(t.updated_at)}</p>"
            + h.panel("Progress", h.table(["step", "status", "percent", "at", "detail"], steps))
            + h.panel("Evaluations", h.table(["evaluator", "score", "result", "notes", "at"], evals))
        )
        return self._agent_page(agent, "", t.title or t.id, body)

    def _log_filters(self, request: web.Request) -> dict[str, Any]:
        level = request.query.get("level") or None
        if level is not None and level not in LEVELS:
            raise BadRequest(f"level must be one of {', '.join(LEVELS)}")
        return {"level": level, "text": request.query.get("text") or None}

    async def logs(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        filters = self._log_filters(request)
        cursor = request.query.get("cursor") or None
        listed = await self.reader.query(
            "query.logs", agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor, **filters
        )
        options = "".join(
            f'<option value="{lv}"{" selected" if lv == filters["level"] else ""}>{lv}+</option>'
            for lv in LEVELS
        )
        form = (
            '<form class="filters" method="get"><select name="level">'
            f'<option value="">any level</option>{options}</select>'
            f'<input name="text" placeholder="text" value="{h.esc(filters["text"])}">'
            "<button>filter</button></form>"
        )
        rows = [_log_row(item) for item in listed.items]
        table = h.table(
            ["at", "level", "message", "task"],
            rows,
            table_id="logs",
            row_ids=[f"log-{i.id}" for i in listed.items],
        )
        live = ""
        if cursor is None:
            newest = listed.items[0].ts if listed.items else datetime.now(UTC).isoformat()
            source = f"/agents/{agent}/logs.json" + h.query_string(filters)
            live = (
                '<p class="live"><label><input type="checkbox" id="tail" checked> live tail</label> '
                f'<span id="tail-state" data-source="{h.esc(source)}" '
                f'data-newest="{h.esc(newest)}"></span></p>'
            )
        pager = h.pager(f"/agents/{agent}/logs", {**filters, "cursor": cursor}, listed.next_cursor)
        return self._agent_page(agent, "/logs", "logs", form + live + table + pager)

    async def logs_json(self, request: web.Request) -> web.Response:
        """New logs for the live tail: those at or after `since`, newest first, as HTML rows."""
        agent = request.match_info["agent"]
        since = request.query.get("since")
        listed = await self.reader.query(
            "query.logs", agent_ids=[agent], since=since, limit=200, **self._log_filters(request)
        )
        rows = [
            {"id": i.id, "ts": i.ts, "html": "".join(f"<td>{c}</td>" for c in _log_row(i))}
            for i in listed.items
        ]
        return web.json_response({"items": rows}, headers={"Cache-Control": "no-store"})

    async def conversations(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.query(
            "query.conversations", agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor
        )
        rows = [
            [
                h.link(f"/agents/{agent}/conversations/{c.conversation_id}", c.conversation_id),
                h.esc(c.user_id),
                h.when(c.created_at),
                h.when(c.updated_at),
            ]
            for c in listed.items
        ]
        body = h.table(["conversation", "user", "started", "updated"], rows, table_id="conversations")
        body += h.pager(f"/agents/{agent}/conversations", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page(agent, "/conversations", "conversations", body)

    async def conversation(self, request: web.Request) -> web.Response:
        agent, cid = request.match_info["agent"], request.match_info["conversation"]
        c = await self.reader.query("query.conversation", agent_id=agent, conversation_id=cid)
        messages = "".join(
            f'<div class="message m-{h.esc(m.role)}"><b>{h.esc(m.role)}</b> {h.when(m.ts)}'
            f"<p>{h.esc(m.content)}</p></div>"
            for m in c.messages
        )
        head = f"<p>user {h.esc(c.user_id)} · started {h.when(c.created_at)}</p>"
        return self._agent_page(
            agent, "/conversations", f"conversation {cid}", head + (messages or "<p>no messages</p>")
        )

    async def memories(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.query("query.memories", agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor)
        rows = [
            [h.when(m.ts), h.esc(m.kind), h.esc(m.key), h.esc(m.content), h.esc(", ".join(m.tags or []))]
            for m in listed.items
        ]
        body = h.table(["at", "kind", "key", "content", "tags"], rows, table_id="memories")
        body += h.pager(f"/agents/{agent}/memories", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page(agent, "/memories", "memories", body)

    async def files(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.query(
            "query.screenshots", agent_ids=[agent], limit=24, cursor=cursor, url_seconds=3600
        )
        tiles = []
        for f in listed.items:
            if f.content_type.startswith("image/"):
                preview = f'<img src="{h.esc(f.url)}" alt="{h.esc(f.name)}" loading="lazy">'
            else:
                preview = f'<div class="file">{h.esc(f.content_type)}</div>'
            tiles.append(
                f'<figure><a href="{h.esc(f.url)}">{preview}</a><figcaption>{h.esc(f.name)} · '
                f"{f.size:,} B · {h.when(f.created_at)}</figcaption></figure>"
            )
        body = f'<div class="gallery" id="gallery">{"".join(tiles) or "<p>nothing yet</p>"}</div>'
        body += h.pager(f"/agents/{agent}/files", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page(agent, "/files", "screenshots", body)

    async def metrics(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        try:
            hours = float(request.query.get("hours") or 24)
        except ValueError:
            raise BadRequest("hours must be a number") from None
        if not 0 < hours <= 24 * 366:
            raise BadRequest("hours must be between 0 and 8784")
        names = (await self.reader.query("query.metric_names", agent_ids=[agent])).names
        since = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
        charts = await asyncio.gather(
            *(self._panel(name, self._series(agent, name, since, hours)) for name in names)
        )
        panels = [
            h.panel(name, error or h.line_chart(points or []), panel_id=f"metric-{name}")
            for name, (points, error) in zip(names, charts, strict=True)
        ]
        ranges = " · ".join(h.link(f"?hours={r}", f"{r} h") for r in (1, 24, 168, 720))
        body = f'<p class="pager">range: {ranges}</p>' + ("".join(panels) or "<p>no metrics yet</p>")
        return self._agent_page(agent, "/metrics", f"metrics, last {hours:g} h", body)

    async def _series(self, agent: str, name: str, since: str, hours: float) -> list[tuple[str, float]]:
        """The raw points when they fit a chart (up to 480), else about 240 averaged buckets."""
        raw = await self.reader.query("query.metrics", name=name, agent_ids=[agent], since=since, limit=480)
        if raw.next_cursor is None:
            return [p for s in raw.series for p in s.points]
        bucket = max(1, int(hours * 3600 / 240))
        bucketed = await self.reader.query(
            "query.metrics", name=name, agent_ids=[agent], since=since, bucket_seconds=bucket, agg="avg"
        )
        return [p for s in bucketed.series for p in s.points]

    # -- runs ------------------------------------------------------------------------
    async def runs(self, request: web.Request) -> web.Response:
        chosen = request.query.get("status") or None
        cursor = request.query.get("cursor") or None
        statuses = [chosen] if chosen else ["running", "queued"]
        counts, *lists = await asyncio.gather(
            self._panel("run counts", self.reader.query("query.run_counts")),
            *(
                self._panel(
                    f"{s} runs", self.reader.query("query.runs", status=s, limit=PAGE_SIZE, cursor=cursor)
                )
                for s in statuses
            ),
        )
        links = "".join(
            f'<a href="/runs?status={s}">{h.status(s)}<b class="n">{n:,}</b></a> '
            for s, n in sorted((counts[0].counts if counts[0] else {}).items(), key=lambda kv: _rank(kv[0]))
        )
        body = h.panel(
            "Runs by status", counts[1] or links or '<span class="muted">none</span>', panel_id="run-counts"
        )
        for status, (listed, error) in zip(statuses, lists, strict=True):
            if listed is None:
                body += h.panel(f"{status} runs", error)
                continue
            rows = [
                [
                    h.link(f"/runs/{r.run_id}", r.run_id),
                    h.status(r.status),
                    h.esc(r.phase),
                    h.esc(r.kind),
                    h.esc(r.claimed_by) if r.claimed_by else "—",
                    h.when(r.lease_expires_at),
                    f"{r.attempt}/{r.max_attempts}",
                    h.when(r.created_at),
                ]
                for r in listed.items
            ]
            table = h.table(
                ["run", "status", "phase", "kind", "lease holder", "lease expires", "attempt", "created"],
                rows,
                table_id=f"runs-{status}",
            )
            table += h.pager("/runs", {"status": status, "cursor": cursor}, listed.next_cursor)
            body += h.panel(f"{status} runs", table)
        return self._html("Runs", body, "/runs")

    async def run(self, request: web.Request) -> web.Response:
        r = await self.reader.query("query.run", run_id=request.match_info["run"])
        phases = "".join(
            f'<li class="{"on" if p == r.phase else ""}">{h.esc(p)}</li>'
            for p in ("bundle", "execute", "extract", "done")
        )
        events = [
            [
                h.esc(e.id),
                h.when(e.ts),
                h.esc(e.type),
                h.esc(e.attempt),
                h.esc(e.agent_id),
                h.code(e.payload) if e.payload else "",
            ]
            for e in r.events
        ]
        cancellable = r.status in ("queued", "running")
        action = (
            h.form_button(
                f"/runs/{r.run_id}/cancel",
                "cancel run",
                self.token,
                enabled=self.writer is not None,
                why=self._why_read_only("cancel"),
            )  # fmt: skip
            if cancellable
            else ""
        )
        facts = (
            f"<p>{h.status(r.status)} · phase {h.esc(r.phase)} · attempt {r.attempt}/{r.max_attempts} · "
            f"holder {h.esc(r.claimed_by or '—')} · lease expires {h.when(r.lease_expires_at)} · "
            f"study {h.esc(r.spec_hash[:12])}</p>{action}"
        )
        body = (
            facts
            + h.panel("Phases", f'<ol class="phases">{phases}</ol>')
            + (h.panel("Summary", h.code(r.summary)) if r.summary else "")
            + (h.panel("Error", h.code(r.error)) if r.error else "")
            + h.panel(
                "Audit trail",
                h.table(["#", "at", "event", "attempt", "agent", "payload"], events, table_id="events"),
            )
            + (h.panel("Spec", h.code(r.study.spec)) if r.study else "")
        )
        return self._html(f"Run {r.run_id}", body, "/runs")

    async def cancel_run(self, request: web.Request) -> web.Response:
        writer = self._write_enabled("cancel")
        await self._check_token(request)
        run_id = request.match_info["run"]
        await EvaluatorClient(writer).request("runs.cancel", run_id=run_id)
        raise web.HTTPSeeOther(f"/runs/{run_id}")

    # -- dead letters ----------------------------------------------------------------
    async def dead_letters(self, request: web.Request) -> web.Response:
        js = self.reader.nc.jetstream()
        try:
            info = await js.stream_info(DEADLETTER_STREAM)
        except NotFoundError:
            return self._html("Dead letters", "<p>none</p>", "/deadletters")
        try:
            before = int(request.query.get("before") or info.state.last_seq + 1)
        except ValueError:
            raise BadRequest("before must be a sequence number") from None
        low = max(info.state.first_seq, before - DEAD_PAGE, 1)
        letters = [
            d
            for d in await asyncio.gather(
                *(deadletter.show(self.reader.nc, s) for s in range(before - 1, low - 1, -1))
            )
            if d is not None
        ]
        rows = [
            [
                h.link(f"/deadletters/{d.seq}", d.seq),
                h.esc(d.service),
                h.esc(d.subject),
                f'<span class="reason">{h.esc(d.reason)}</span>',
                f"{len(d.data):,} B",
            ]
            for d in letters
        ]
        body = f"<p>{info.state.messages:,} dead letters waiting (newest first)</p>"
        body += h.table(["#", "service", "subject", "reason", "size"], rows, table_id="deadletters")
        if low > max(info.state.first_seq, 1):
            body += h.pager("/deadletters", {"before": None}, str(low), key="before")
        return self._html("Dead letters", body, "/deadletters")

    async def dead_letter(self, request: web.Request) -> web.Response:
        seq = _seq(request)
        d = await deadletter.show(self.reader.nc, seq)
        if d is None:
            raise NotFound(f"no dead letter {seq} (redriven, or never there)")
        try:
            shown = h.code(json.loads(d.data))
        except ValueError:
            shown = h.code(d.data.decode(errors="replace"))
        action = h.form_button(
            f"/deadletters/{seq}/redrive", "redrive", self.token,
            enabled=self.writer is not None, why=self._why_read_only("redrive"),
        )  # fmt: skip
        body = (
            f"<p>service {h.esc(d.service)} · subject {h.esc(d.subject)}</p>"
            f'<p class="reason">{h.esc(d.reason)}</p>'
            + action
            + h.panel("Body", shown, panel_id="body")
            + h.panel("Headers", h.code(d.headers))
        )
        return self._html(f"Dead letter {seq}", body, "/deadletters")

    async def redrive(self, request: web.Request) -> web.Response:
        writer = self._write_enabled("redrive")
        await self._check_token(request)
        seq = _seq(request)
        try:
            await deadletter.redrive(writer, seq)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        raise web.HTTPSeeOther("/deadletters")


def _log_row(item: Any) -> list[str]:
    fields = f"<details><summary>fields</summary>{h.code(item.fields)}</details>" if item.fields else ""
    return [h.when(item.ts), h.level(item.level), h.esc(item.message) + fields, h.esc(item.task_id)]


def _rank(status: str) -> int:
    return RUN_ORDER.index(status) if status in RUN_ORDER else len(RUN_ORDER)


def _seq(request: web.Request) -> int:
    try:
        return int(request.match_info["seq"])
    except ValueError:
        raise BadRequest("a dead letter is named by its sequence number") from None
