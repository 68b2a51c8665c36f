"""The web console: what the frontend role sees, as pages with stable URLs.

It talks to the other services only over NATS, through the contract: the
`console` identity may make the frontend's requests, the evaluator's
read-only `query.*` requests and read DEADLETTER. Each panel of a page is
one request-reply (the panels of a page are asked concurrently), typed by the
contract (`call(contract.X, XQuery(...))`); the markup is in `templates/`
(Jinja2, autoescape on), given the replies as they are. Write actions (cancel
a run, redrive a dead letter) go through a second connection logged in as an
evaluator, opened only when `WEB_EVALUATOR` names one; without it the console
is read-only and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from agentstore import contract
from agentstore.bus import deadletter
from agentstore.bus.connect import connect_nats
from agentstore.client import EvaluatorClient
from agentstore.contract import DEADLETTER_STREAM
from agentstore.contract.model import Rep, Req
from agentstore.errors import AgentstoreError, BadRequest, Forbidden, NotFound, RequestError
from agentstore.schemas import artifacts as a
from agentstore.schemas import checkpoints as cp
from agentstore.schemas import logs as lg
from agentstore.schemas import metrics as m
from agentstore.schemas import sessions as ss
from agentstore.schemas import tasks as t
from agentstore.schemas import traces as tr
from agentstore_server.config import Settings
from agentstore_server.web import views
from agentstore_server.web.sessions import COOKIE, Session, Sessions, host_allowed
from agentstore_server.web.views import LEVELS, RUN_ORDER, Pager

log = logging.getLogger("agentstore.web")
STATIC = Path(__file__).with_name("static")
STATIC_FILES = frozenset(p.name for p in STATIC.iterdir() if p.is_file())
PAGE_SIZE = 50
LIVE_ROWS = 200  # a live tail's rows per event (a burst beyond it shows its newest)
LIVE_KEEPALIVE = 15.0  # seconds between a quiet tail's comments
DEAD_PAGE = 50
T = TypeVar("T")
SESSION = web.RequestKey("session", Session)  # the browser's session, set by the session middleware
# The form token of the request being served (set by the session middleware, read by pages).
_FORM_TOKEN: ContextVar[str] = ContextVar("form_token")


def log_rows(items: list[lg.LogItem]) -> list[dict[str, str]]:
    """Log items as the logs table's rows (id, ts, the cells' HTML), for the live tail."""
    cells = views.macro("log_cells")
    return [{"id": i.id, "ts": i.ts, "html": str(cells(i))} for i in items]


class ReadOnly:
    """The console's reads: only `query.*` endpoints, whatever the identity could do."""

    def __init__(self, nc: Client, timeout: float = 10.0) -> None:
        self._client = EvaluatorClient(nc, timeout=timeout)
        self.nc = nc

    async def call(self, endpoint: contract.Endpoint[Req, Rep], request: Req) -> Rep:
        if not endpoint.subject.startswith("query."):
            raise Forbidden(f"the console reads only query.* endpoints, not {endpoint.subject}")
        return await self._client.call(endpoint, request)


def from_url(request: type[Req], **fields: Any) -> Req:
    """A request built from a page's URL parameters (text): converted and checked as the
    service would (times parsed, enums and bounds enforced), a bad one a 400 naming it."""
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, request, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(str(exc)) from None


@dataclass(frozen=True)
class Panel:
    """One panel's reply, or why it is missing (the rest of the page still shows)."""

    value: Any
    error: str = ""


class Console:
    """The aiohttp application over a connected NATS client; `start()`/`stop()`."""

    def __init__(self, settings: Settings, nc: Client) -> None:
        self.settings = settings
        self.reader = ReadOnly(nc)
        self.writer: Client | None = None
        # Who may see the console (WEB_LOGIN_TOKEN), and each browser's form token.
        self.browser_sessions = Sessions(settings.web_login_token, settings.web_session_hours * 3600)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        # The open live tails (one NATS subscription each): woken to end when the console stops.
        self._tails: set[asyncio.Event] = set()
        self._closing = False

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
        if not self.browser_sessions.login_required:
            log.warning("the console has no login (WEB_LOGIN_TOKEN unset): whoever reaches %s:%s sees "
                        "every agent's data", s.web_host, s.web_port)  # fmt: skip
        app = web.Application(middlewares=[self._guard, self._errors])
        app.on_response_prepare.append(_security_headers)
        app.add_routes(
            [
                web.get("/", self.fleet),
                web.get("/agents/{agent}", self.agent_tasks),
                web.get("/agents/{agent}/tasks/{task}", self.task),
                web.get("/agents/{agent}/logs", self.logs),
                web.get("/agents/{agent}/logs/live", self.logs_live),
                web.get("/agents/{agent}/conversations", self.conversations),
                web.get("/agents/{agent}/conversations/{conversation}", self.conversation),
                web.get("/agents/{agent}/memories", self.memories),
                web.get("/agents/{agent}/files", self.files),
                web.get("/agents/{agent}/traces", self.agent_traces),
                web.get("/traces", self.fleet_traces),
                web.get("/traces/{trace}", self.trace),
                web.get("/agents/{agent}/threads", self.threads),
                web.get("/agents/{agent}/threads/{thread}", self.thread),
                web.get("/agents/{agent}/sessions", self.sessions),
                web.get("/agents/{agent}/sessions/{session}", self.session),
                web.get("/agents/{agent}/metrics", self.metrics),
                web.get("/runs", self.runs),
                web.get("/runs/{run}", self.run),
                web.post("/runs/{run}/cancel", self.cancel_run),
                web.get("/deadletters", self.dead_letters),
                web.get("/deadletters/{seq}", self.dead_letter),
                web.post("/deadletters/{seq}/redrive", self.redrive),
                web.get("/healthz", self.healthz),
                web.get("/login", self.login_form),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/static/{name}", self.static),
            ]
        )
        # A handler whose browser left is cancelled: a live tail's subscription ends with its page.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
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
        self._closing = True
        for woken in self._tails:
            woken.set()
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
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The Host check (DNS rebinding), then the session: read, or made for a new browser
        (its form token), and, with WEB_LOGIN_TOKEN, logged in or sent to /login."""
        if request.path == "/healthz":  # probes, by pod address
            return await handler(request)
        if not host_allowed(request.host, self.settings.web_allowed_hosts):
            refused = f"this console does not serve the host {request.host!r}: add it to WEB_ALLOWED_HOSTS"
            return web.Response(status=400, text=refused)
        session = self.browser_sessions.read(request.cookies.get(COOKIE))
        cookie = None
        if session is None:
            session, cookie = self.browser_sessions.new()
        request[SESSION] = session
        _FORM_TOKEN.set(self.browser_sessions.form_token(session))
        open_paths = request.path.startswith("/static/") or request.path == "/login"
        if self.browser_sessions.login_required and not session.logged_in and not open_paths:
            if request.method != "GET":
                return web.Response(status=401, text="log in first: /login")
            response: web.StreamResponse = see_other(f"/login?{urlencode({'next': request.path_qs})}")
        else:
            response = await handler(request)
        if cookie is not None and COOKIE not in response.cookies:  # (a login sets its own)
            self._set_cookie(request, response, cookie)
        return response

    def _set_cookie(self, request: web.Request, response: web.StreamResponse, value: str) -> None:
        secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
        lifetime = self.browser_sessions.lifetime
        response.set_cookie(COOKIE, value, max_age=lifetime, httponly=True, samesite="Strict", secure=secure,
                            path="/")  # fmt: skip

    def _form_token(self, request: web.Request) -> str:
        session: Session = request[SESSION]
        return self.browser_sessions.form_token(session)

    async def login_form(self, request: web.Request) -> web.Response:
        return self._login_page(_local(request.query.get("next", "/")), "")

    def _login_page(self, target: str, message: str, status: int = 200) -> web.Response:
        return self._page("login.html", "log in", "/", status=status, message=message, next=target)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = _local(str(form.get("next") or "/"))
        if not self.browser_sessions.login_ok(form.get("token")):
            log.warning("a console login with a wrong token, from %s", request.remote)
            return self._login_page(target, "that is not the console's token", status=403)
        _, cookie = self.browser_sessions.new(logged_in=True)  # a new session: none carried over from before
        response = see_other(target)
        self._set_cookie(request, response, cookie)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self._check_token(request)
        response = see_other("/login")
        response.del_cookie(COOKIE, path="/")
        return response

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
            return self._page("error.html", f"{status}", "/", status=status, message=str(exc))
        except AgentstoreError as exc:
            return self._page("error.html", "503", "/", status=503, message=str(exc))

    def _page(
        self, template: str, title: str, section: str, *, status: int = 200, **context: Any
    ) -> web.Response:
        return web.Response(
            text=views.render(
                template,
                title=title,
                section=section,
                writes=self.writes,
                login=self.browser_sessions.login_required,
                form_token=_FORM_TOKEN.get(""),
                **context,
            ),  # fmt: skip
            content_type="text/html",
            status=status,
            headers={"Cache-Control": "no-store"},
        )

    def _agent_page(self, template: str, agent: str, tab: str, title: str, **context: Any) -> web.Response:
        return self._page(template, f"{agent} · {title}", "/", agent=agent, tab=tab, **context)

    async def _panel(self, what: str, call: Awaitable[T]) -> Panel:
        try:
            return Panel(await call)
        except (AgentstoreError, OSError, TimeoutError) as exc:
            return Panel(None, str(exc) or type(exc).__name__)

    def _write_enabled(self, action: str) -> Client:
        if self.writer is None:
            raise web.HTTPForbidden(
                text=f"{action} needs the evaluator identity: this console is read-only. Start the web "
                "service with WEB_EVALUATOR=<name> (it logs in as evaluator-<name>).",
            )
        return self.writer

    async def _check_token(self, request: web.Request) -> None:
        form = await request.post()
        # This browser's own token, compared in constant time (a byte-by-byte `!=` tells a
        # timing attacker how much of it was right).
        if not self.browser_sessions.form_token_ok(request[SESSION], form.get("token")):
            raise web.HTTPForbidden(text="the form is stale or from another site; reload the page")

    def _why_read_only(self, action: str) -> str:
        return f"{action} needs the evaluator identity (start the console with WEB_EVALUATOR)"

    async def static(self, request: web.Request) -> web.StreamResponse:
        """The stylesheet and the script, by name: nothing else of the disk is reachable (a
        name of 300 characters was a 500 from aiohttp's static route: file name too long)."""
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise NotFound(f"no static file {name[:80]!r}")
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "max-age=300"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # -- the fleet -----------------------------------------------------------------
    async def fleet(self, request: web.Request) -> web.Response:
        cursor = request.query.get("cursor") or None

        async def agents_with_tasks() -> tuple[Any, Any]:
            listed = await self.reader.call(
                contract.QUERY_AGENTS, lg.AgentsQuery(limit=PAGE_SIZE, cursor=cursor)
            )
            ids = [x.agent_id for x in listed.items]
            per_agent = (
                await self.reader.call(contract.QUERY_TASK_COUNTS, t.TaskCountsQuery(agent_ids=ids))
                if ids
                else None
            )
            return listed, per_agent

        agents, tasks_all, runs_all, dead = await asyncio.gather(
            self._panel("the agents", agents_with_tasks()),
            self._panel("task counts", self.reader.call(contract.QUERY_TASK_COUNTS, t.TaskCountsQuery())),
            self._panel("run counts", self.reader.call(contract.QUERY_RUN_COUNTS, t.RunCountsQuery())),
            self._panel("dead letters", self._dead_count()),
        )
        listed, per_agent = agents.value or (None, None)
        return self._page(
            "fleet.html", "Fleet", "/",
            agents=listed, by_agent=per_agent.by_agent if per_agent else {},
            pages=Pager.of("/", {"cursor": cursor}, listed.next_cursor if listed else None),
            task_counts=tasks_all.value, run_counts=runs_all.value, dead=dead.value,
            errors={"agents": agents.error, "task_counts": tasks_all.error, "run_counts": runs_all.error,
                    "dead": dead.error},
        )  # fmt: skip

    async def _dead_count(self) -> int:
        try:
            info = await self.reader.nc.jetstream().stream_info(DEADLETTER_STREAM)
        except NotFoundError:
            return 0
        return int(info.state.messages)

    # -- an agent ------------------------------------------------------------------
    async def agent_tasks(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listing = t.TasksQuery(agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor)
        tasks, profile = await asyncio.gather(
            self._panel("tasks", self.reader.call(contract.QUERY_TASKS, listing)),
            self._panel(
                "the profile", self.reader.call(contract.QUERY_AGENT_METRICS, m.ProfileQuery(agent_id=agent))
            ),
        )
        p = profile.value
        figures = [] if p is None else [
            ("level", p.level), ("xp", p.xp), ("learning score", f"{p.learning_score:g}"),
            ("pass rate", f"{p.pass_rate:.0%}"), ("tests given", p.total_tests_given),
            ("tests passed", p.total_tests_passed), ("custody level", p.custody_level),
            ("difficulty", p.current_difficulty), ("status", p.status),
        ]  # fmt: skip
        more = tasks.value.next_cursor if tasks.value else None
        return self._agent_page(
            "agent_tasks.html", agent, "", "tasks", tasks=tasks.value, profile=p, figures=figures,
            pages=Pager.of(f"/agents/{agent}", {"cursor": cursor}, more), errors={"tasks": tasks.error},
        )  # fmt: skip

    async def task(self, request: web.Request) -> web.Response:
        agent, task_id = request.match_info["agent"], request.match_info["task"]
        found = await self.reader.call(contract.QUERY_TASK, t.TaskQuery(agent_id=agent, task_id=task_id))
        return self._agent_page("task.html", agent, "", found.title or found.id, t=found)

    def _log_filters(self, request: web.Request) -> dict[str, Any]:
        level = request.query.get("level") or None
        if level is not None and level not in LEVELS:
            raise BadRequest(f"level must be one of {', '.join(LEVELS)}")
        # since/until: a span's time window (the trace page links its logs so).
        q = request.query
        return {"level": level, "text": q.get("text") or None, "since": q.get("since") or None,
                "until": q.get("until") or None}  # fmt: skip

    async def logs(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        filters = self._log_filters(request)
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_LOGS,
            from_url(lg.LogsQuery, agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor, **filters),
        )
        live = None
        if cursor is None and filters["until"] is None:  # the first page follows new logs (console.js)
            # The tail's anchor: the newest row shown, `ts|id` (the page's own order, ts then id).
            first = listed.items[0] if listed.items else None
            newest = f"{first.ts}|{first.id}" if first else datetime.now(UTC).isoformat()
            live = {"source": f"/agents/{agent}/logs/live" + views.query_string(filters), "newest": newest}
        pages = Pager.of(f"/agents/{agent}/logs", {**filters, "cursor": cursor}, listed.next_cursor)
        return self._agent_page("logs.html", agent, "/logs", "logs", logs=listed, filters=filters, live=live,
                                pages=pages)  # fmt: skip

    async def logs_live(self, request: web.Request) -> web.StreamResponse:
        """The live tail, as server-sent events: the logs that sort above the anchor `from`
        (`ts|id`, the newest row the page shows; the browser's Last-Event-ID on a reconnect),
        newest first as HTML rows, sent each time the logs service says it stored some of this
        agent's (`stored.{agent}.logs`). One NATS subscription per open tail, ended when the
        page goes (the handler is cancelled)."""
        agent = request.match_info["agent"]
        filters = self._log_filters(request)
        since, _, after_id = (
            request.headers.get("Last-Event-ID") or request.query.get("from") or ""
        ).partition("|")
        query = from_url(
            lg.LogsQuery, agent_ids=[agent], limit=LIVE_ROWS, **{**filters, "since": since or None}
        )
        # Rows at the anchor's very millisecond are new only if they sort above it (by id, as
        # the page orders them): lines logged in one millisecond are not shown twice or lost.
        anchor = (query.since or datetime.now(UTC), after_id)
        woken = asyncio.Event()
        woken.set()  # first, what was stored between the page's render and this stream
        notice = contract.INGEST_BY_KIND["logs"].notice_address

        async def on_notice(_: Any) -> None:
            woken.set()

        sub = await self.reader.nc.subscribe(contract.concrete(notice, agent), cb=on_notice)
        self._tails.add(woken)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")  # the browser's reconnect delay
            while not self._closing:
                try:
                    await asyncio.wait_for(woken.wait(), LIVE_KEEPALIVE)
                except TimeoutError:
                    await response.write(b": still here\n\n")  # proxies keep idle streams open
                    continue
                woken.clear()
                if self._closing:
                    break
                listed = await self.reader.call(contract.QUERY_LOGS, query)
                fresh = [i for i in listed.items if (datetime.fromisoformat(i.ts), i.id) > anchor]
                if fresh:
                    anchor = (datetime.fromisoformat(fresh[0].ts), fresh[0].id)
                    query = msgspec.structs.replace(query, since=anchor[0])
                    data = json.dumps({"items": log_rows(fresh)}, separators=(",", ":"))
                    event = f"id: {fresh[0].ts}|{fresh[0].id}\nevent: logs\ndata: {data}\n\n"
                    await response.write(event.encode())
        except (ConnectionResetError, RequestError) as exc:
            log.info("live tail of %s ended: %s", agent, exc)
        finally:
            self._tails.discard(woken)
            await sub.unsubscribe()
        return response

    async def conversations(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_CONVERSATIONS,
            lg.ConversationsQuery(agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor),
        )
        pages = Pager.of(f"/agents/{agent}/conversations", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page("conversations.html", agent, "/conversations", "conversations", listed=listed,
                                pages=pages)  # fmt: skip

    async def conversation(self, request: web.Request) -> web.Response:
        agent, cid = request.match_info["agent"], request.match_info["conversation"]
        found = await self.reader.call(
            contract.QUERY_CONVERSATION, lg.ConversationQuery(agent_id=agent, conversation_id=cid)
        )
        return self._agent_page("conversation.html", agent, "/conversations", f"conversation {cid}", c=found)

    async def memories(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_MEMORIES, lg.MemoriesQuery(agent_ids=[agent], limit=PAGE_SIZE, cursor=cursor)
        )
        pages = Pager.of(f"/agents/{agent}/memories", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page("memories.html", agent, "/memories", "memories", listed=listed, pages=pages)

    async def files(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_SCREENSHOTS,
            a.ScreenshotsQuery(agent_ids=[agent], limit=24, cursor=cursor, url_seconds=3600),
        )
        pages = Pager.of(f"/agents/{agent}/files", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page("files.html", agent, "/files", "screenshots", listed=listed, pages=pages)

    def _trace_filters(self, request: web.Request) -> dict[str, Any]:
        q = request.query
        return {"errors": q.get("errors") == "1" or None, "order": q.get("order") or None,
                "model": q.get("model") or None}  # fmt: skip

    async def _traces(self, request: web.Request, agent: str | None) -> tuple[Any, dict[str, Any], Pager]:
        filters = self._trace_filters(request)
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_TRACES,
            from_url(tr.TracesQuery, agent_ids=[agent] if agent else None, limit=PAGE_SIZE, cursor=cursor,
                     **filters),
        )  # fmt: skip
        path = f"/agents/{agent}/traces" if agent else "/traces"
        shown = {**filters, "errors": "1" if filters["errors"] else None}
        return listed, filters, Pager.of(path, {**shown, "cursor": cursor}, listed.next_cursor)

    async def agent_traces(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        listed, filters, pages = await self._traces(request, agent)
        return self._agent_page("traces.html", agent, "/traces", "traces", listed=listed, filters=filters,
                                pages=pages)  # fmt: skip

    async def fleet_traces(self, request: web.Request) -> web.Response:
        listed, filters, pages = await self._traces(request, None)
        return self._page(
            "fleet_traces.html", "traces", "/traces", listed=listed, filters=filters, pages=pages
        )

    async def trace(self, request: web.Request) -> web.Response:
        """A trace: its summary, and its spans as a tree with a waterfall, a page at a time."""
        trace_id = request.match_info["trace"]
        agent = request.query.get("agent") or None
        cursor = request.query.get("cursor") or None
        found = await self.reader.call(
            contract.QUERY_TRACE,
            from_url(
                tr.TraceQuery, trace_id=trace_id, agent_id=agent, limit=tr.MAX_TRACE_PAGE // 2, cursor=cursor
            ),
        )
        rows = views.waterfall(found.trace, found.spans)
        path = f"/traces/{views.segment(trace_id)}"
        pages = Pager.of(path, {"agent": agent, "cursor": cursor}, found.next_cursor)
        return self._page("trace.html", f"trace {found.trace.name}", "/traces", found=found, rows=rows,
                          pages=pages, first_page=cursor is not None)  # fmt: skip

    async def threads(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_THREADS, from_url(cp.ThreadsQuery, agent_id=agent, limit=PAGE_SIZE, cursor=cursor)
        )
        pages = Pager.of(f"/agents/{agent}/threads", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page("threads.html", agent, "/threads", "threads", listed=listed, pages=pages)

    async def thread(self, request: web.Request) -> web.Response:
        """A thread's checkpoints in order: each step, what changed, its tasks' writes."""
        agent, thread = request.match_info["agent"], request.match_info["thread"]
        ns = request.query.get("ns") or ""
        cursor = request.query.get("cursor") or None
        steps = await self.reader.call(
            contract.QUERY_CHECKPOINTS,
            from_url(cp.CheckpointsQuery, agent_id=agent, thread_id=thread, checkpoint_ns=ns, limit=PAGE_SIZE,
                     cursor=cursor),
        )  # fmt: skip
        path = f"/agents/{agent}/threads/{views.segment(thread)}"
        pages = Pager.of(path, {"ns": ns or None, "cursor": cursor}, steps.next_cursor)
        return self._agent_page("thread.html", agent, "/threads", f"thread {thread}", thread=thread, ns=ns,
                                steps=steps, pages=pages)  # fmt: skip

    async def sessions(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        cursor = request.query.get("cursor") or None
        listed = await self.reader.call(
            contract.QUERY_SESSIONS,
            from_url(ss.SessionsQuery, agent_id=agent, limit=PAGE_SIZE, cursor=cursor),
        )
        pages = Pager.of(f"/agents/{agent}/sessions", {"cursor": cursor}, listed.next_cursor)
        return self._agent_page("sessions.html", agent, "/sessions", "sessions", listed=listed, pages=pages)

    async def session(self, request: web.Request) -> web.Response:
        agent, session = request.match_info["agent"], request.match_info["session"]
        found = await self.reader.call(
            contract.QUERY_SESSION, from_url(ss.SessionQuery, agent_id=agent, session_id=session, limit=500)
        )
        return self._agent_page("session.html", agent, "/sessions", f"session {session}", session=found)

    async def metrics(self, request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        try:
            hours = float(request.query.get("hours") or 24)
        except ValueError:
            raise BadRequest("hours must be a number") from None
        if not 0 < hours <= 24 * 366:
            raise BadRequest("hours must be between 0 and 8784")
        names = (
            await self.reader.call(contract.QUERY_METRIC_NAMES, m.MetricNamesQuery(agent_ids=[agent]))
        ).names
        since = datetime.now(UTC) - timedelta(hours=hours)
        series = await asyncio.gather(
            *(self._panel(name, self._series(agent, name, since, hours)) for name in names)
        )
        charts = [(name, views.chart(s.value or []), s.error) for name, s in zip(names, series, strict=True)]
        return self._agent_page(
            "metrics.html", agent, "/metrics", f"metrics, last {hours:g} h", charts=charts
        )

    async def _series(self, agent: str, name: str, since: datetime, hours: float) -> list[tuple[str, float]]:
        """The raw points when they fit a chart (up to 480), else about 240 averaged buckets."""
        raw = await self.reader.call(
            contract.QUERY_METRICS, m.MetricsQuery(name=name, agent_ids=[agent], since=since, limit=480)
        )
        if raw.next_cursor is None:
            return [p for s in raw.series for p in s.points]
        bucket = max(1, int(hours * 3600 / 240))
        bucketed = await self.reader.call(
            contract.QUERY_METRICS,
            m.MetricsQuery(name=name, agent_ids=[agent], since=since, bucket_seconds=bucket, agg="avg"),
        )
        return [p for s in bucketed.series for p in s.points]

    # -- runs ------------------------------------------------------------------------
    async def runs(self, request: web.Request) -> web.Response:
        chosen = request.query.get("status") or None
        cursor = request.query.get("cursor") or None
        statuses = [chosen] if chosen else ["running", "queued"]
        counts, *lists = await asyncio.gather(
            self._panel("run counts", self.reader.call(contract.QUERY_RUN_COUNTS, t.RunCountsQuery())),
            *(
                self._panel(f"{s} runs", self.reader.call(
                    contract.QUERY_RUNS, from_url(t.RunsQuery, status=s, limit=PAGE_SIZE, cursor=cursor)))
                for s in statuses
            ),
        )  # fmt: skip
        parts = [
            {"status": s, "listed": listed.value, "error": listed.error,
             "pages": Pager.of("/runs", {"status": s, "cursor": cursor},
                               listed.value.next_cursor if listed.value else None)}
            for s, listed in zip(statuses, lists, strict=True)
        ]  # fmt: skip
        by_status = None
        if counts.value is not None:
            by_status = sorted(counts.value.counts.items(), key=lambda kv: _rank(kv[0]))
        return self._page("runs.html", "Runs", "/runs", counts=by_status, parts=parts,
                          errors={"counts": counts.error})  # fmt: skip

    async def run(self, request: web.Request) -> web.Response:
        found = await self.reader.call(contract.QUERY_RUN, t.RunQuery(run_id=request.match_info["run"]))
        return self._page(
            "run.html", f"Run {found.run_id}", "/runs", r=found, token=self._form_token(request),
            why=self._why_read_only("cancel"),
        )  # fmt: skip

    async def cancel_run(self, request: web.Request) -> web.Response:
        writer = self._write_enabled("cancel")
        await self._check_token(request)
        run_id = request.match_info["run"]
        await EvaluatorClient(writer).call(contract.RUNS_CANCEL, t.CancelRun(run_id=run_id))
        raise web.HTTPSeeOther(f"/runs/{run_id}")

    # -- dead letters ----------------------------------------------------------------
    async def dead_letters(self, request: web.Request) -> web.Response:
        js = self.reader.nc.jetstream()
        try:
            info = await js.stream_info(DEADLETTER_STREAM)
        except NotFoundError:
            return self._page("dead_letters.html", "Dead letters", "/deadletters", waiting=None)
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
        older = str(low) if low > max(info.state.first_seq, 1) else None
        pages = Pager(None, "/deadletters" + views.query_string({"before": older}) if older else None)
        return self._page("dead_letters.html", "Dead letters", "/deadletters", waiting=info.state.messages,
                          letters=letters, pages=pages)  # fmt: skip

    async def dead_letter(self, request: web.Request) -> web.Response:
        seq = _seq(request)
        d = await deadletter.show(self.reader.nc, seq)
        if d is None:
            raise NotFound(f"no dead letter {seq} (redriven, or never there)")
        try:
            body: Any = json.loads(d.data)
        except ValueError:
            body = d.data.decode(errors="replace")
        return self._page("dead_letter.html", f"Dead letter {seq}", "/deadletters", d=d, body=body,
                          token=self._form_token(request), why=self._why_read_only("redrive"))  # fmt: skip

    async def redrive(self, request: web.Request) -> web.Response:
        writer = self._write_enabled("redrive")
        await self._check_token(request)
        seq = _seq(request)
        try:
            await deadletter.redrive(writer, seq)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        raise web.HTTPSeeOther("/deadletters")


def _rank(status: str) -> int:
    return RUN_ORDER.index(status) if status in RUN_ORDER else len(RUN_ORDER)


def _seq(request: web.Request) -> int:
    try:
        return int(request.match_info["seq"])
    except ValueError:
        raise BadRequest("a dead letter is named by its sequence number") from None


# Every response, static files and errors too: no page of the console inside another site's
# frame (clickjacking its forms), no type sniffing, no URL of it sent to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _local(target: str) -> str:
    """A redirect target on this console only (no `//host`, no scheme): else `/`."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def see_other(location: str) -> web.Response:
    """A 303 to `location` as a plain response, which can carry a cookie."""
    return web.Response(status=303, headers={"Location": location})
