"""`agents.{agent}.spans` → PostgreSQL `spans` (a summary per trace kept by a trigger), and
`query.traces` / `query.trace` (CONTRACT v1.12).

Spans live in PostgreSQL beside the memory store, not in the document store: the traces list
filters and orders by figures (duration, errors, model) that a summary row keeps, and a
trace's page is one index range. A span is stored once; the first stored wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from agentstore.errors import BadRequest, NotFound
from agentstore.schemas.common import decode_cursor, keyset_page, to_ms
from agentstore.schemas.traces import SpanIn, SpanItem, Trace, TraceItem, TraceQuery, TracesQuery
from agentstore_server.bus.ingest import Envelope
from agentstore_server.bus.rpc import RequestContext
from agentstore_server.lifecycle.periodic import Periodic
from agentstore_server.stores.postgres import PostgresStore, Query, Record, load_queries

Q = load_queries(Path(__file__).with_name("traces.sql"))
# RETENTION_DAYS's key for traces (their spans go with them, by the trace's end).
RETENTION_KEY = "traces"

# USD per million tokens, (input, output), by model name or name prefix (MODEL_PRICES).
Prices = Mapping[str, tuple[float, float]]

# Where OpenTelemetry's GenAI conventions (and the frameworks' exporters) put what a span
# row keeps in columns; attributes are stored nested (`gen_ai.usage.input_tokens`).
_MODEL = (("gen_ai", "response", "model"), ("gen_ai", "request", "model"))
_INPUT = (("gen_ai", "usage", "input_tokens"), ("gen_ai", "usage", "prompt_tokens"))
_OUTPUT = (("gen_ai", "usage", "output_tokens"), ("gen_ai", "usage", "completion_tokens"))
_SESSION = (("session", "id"), ("gen_ai", "conversation", "id"))
_THREAD = (("langgraph", "thread_id"), ("thread_id",))
_CHECKPOINT = (("langgraph", "checkpoint_id"), ("checkpoint_id",))
_RUN = (("agentstore", "run_id"),)
# The first keys of the link paths: a span with none of them (most) skips those lookups.
_LINK_ROOTS = frozenset(path[0] for paths in (_SESSION, _THREAD, _CHECKPOINT, _RUN) for path in paths)


def _attribute(attributes: dict[str, Any] | None, paths: Sequence[tuple[str, ...]], kind: type) -> Any:
    """The first of `paths` that holds a `kind` (attributes are plain dicts, as decoded:
    `type() is dict` rather than an ABC check, on the hot path)."""
    if not attributes:
        return None
    for path in paths:
        node: Any = attributes
        for part in path:
            node = node.get(part) if type(node) is dict else None
            if node is None:
                break
        if type(node) is dict:
            node = node.get("_")  # a key that is also a prefix keeps its value under `_`
        if type(node) is kind and node != "":
            return node
    return None


def price(
    prices: Prices, model: str | None, input_tokens: int | None, output_tokens: int | None
) -> float | None:
    """The call's cost by the operator's table: the model's own entry, else its longest
    prefix (`gpt-4o` prices `gpt-4o-2024-08-06`); None when the model is not priced."""
    if model is None or (input_tokens is None and output_tokens is None):
        return None
    entry = prices.get(model)
    if entry is None:
        prefixes = [p for p in prices if model.startswith(p)]
        if not prefixes:
            return None
        entry = prices[max(prefixes, key=len)]
    return ((input_tokens or 0) * entry[0] + (output_tokens or 0) * entry[1]) / 1e6


class Traces:
    def __init__(self, pg: PostgresStore, prices: Prices) -> None:
        self.pg = pg
        self.prices = prices

    def decode(self, envelope: Envelope) -> dict[str, Any]:
        """A span as its row (jsonb_populate_recordset's keys); GenAI figures and links read
        from the attributes where the body does not give them."""
        span = envelope.decode(SpanIn)
        attrs = span.attributes
        model, input_tokens, output_tokens = span.model, span.input_tokens, span.output_tokens
        run_id, session_id, thread_id, checkpoint_id = (
            span.run_id,
            span.session_id,
            span.thread_id,
            span.checkpoint_id,
        )
        if attrs:
            if "gen_ai" in attrs:
                model = model or _attribute(attrs, _MODEL, str)
                if input_tokens is None:
                    input_tokens = _attribute(attrs, _INPUT, int)
                if output_tokens is None:
                    output_tokens = _attribute(attrs, _OUTPUT, int)
            if not _LINK_ROOTS.isdisjoint(attrs):
                run_id = run_id or _attribute(attrs, _RUN, str)
                session_id = session_id or _attribute(attrs, _SESSION, str)
                thread_id = thread_id or _attribute(attrs, _THREAD, str)
                checkpoint_id = checkpoint_id or _attribute(attrs, _CHECKPOINT, str)
        return {
            "agent_id": envelope.agent,
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "name": span.name,
            "kind": span.kind,
            "status": span.status,
            "status_message": span.status_message,
            "start_ts": span.start.isoformat(),
            "end_ts": span.end.isoformat(),
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": price(self.prices, model, input_tokens, output_tokens),
            "run_id": run_id,
            "task_id": span.task_id,
            "session_id": session_id,
            "thread_id": thread_id,
            "checkpoint_id": checkpoint_id,
            "attributes": attrs,
            "events": [msgspec.to_builtins(e) for e in span.events] if span.events else None,
            # Not a column (populating the row ignores it): when the agent was last seen, to the
            # millisecond the document store keeps.
            "ts": to_ms(span.end),
        }

    async def write(self, rows: Sequence[dict[str, Any]]) -> Mapping[int, str]:
        # One statement per batch: its trigger folds the batch into the summaries at once.
        await self.pg.run.execute(Q["insert_spans"], rows=msgspec.json.encode(rows).decode())
        return {}

    async def query(self, ctx: RequestContext, q: TracesQuery) -> dict[str, Any]:
        agents = ctx.scope(q.agent_ids)
        slowest = q.order == "slowest"
        key = "duration_ms" if slowest else "start_ts"
        where: list[str] = ["true"]
        params: dict[str, Any] = {"limit": q.limit + 1}
        for column, value in (("session_id", q.session_id), ("run_id", q.run_id), ("thread_id", q.thread_id)):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if agents is not None:
            where.append("agent_id = ANY(:agents)")
            params["agents"] = agents
        if q.since is not None:
            where.append("start_ts >= :since")
            params["since"] = q.since
        if q.until is not None:
            where.append("start_ts < :until")
            params["until"] = q.until
        if q.errors:
            where.append("errors > 0")
        if q.model is not None:
            where.append(":model = ANY(models)")
            params["model"] = q.model
        if q.cursor:
            first, agent, trace = decode_cursor(q.cursor, 3)
            if slowest and isinstance(first, int | float) and not isinstance(first, bool):
                params["c_key"] = float(first)
            else:
                params["c_key"] = _cursor_time(first)
            where.append(f"({key}, agent_id, trace_id) < (:c_key, :c_agent, :c_trace)")
            params["c_agent"], params["c_trace"] = str(agent), str(trace)
        statement = Query.parse(
            "list_traces",
            f"SELECT * FROM traces WHERE {' AND '.join(where)} "
            f"ORDER BY {key} DESC, agent_id DESC, trace_id DESC LIMIT :limit",
        )

        def after(r: Record) -> tuple[Any, ...]:
            return (r["duration_ms"] if slowest else r["start_ts"].isoformat(), r["agent_id"], r["trace_id"])

        rows, cursor = keyset_page(await self.pg.run.fetch(statement, **params), q.limit, after)
        return {"items": [trace_item(r) for r in rows], "next_cursor": cursor}

    async def query_one(self, ctx: RequestContext, q: TraceQuery) -> Trace:
        agents = ctx.scope([q.agent_id] if q.agent_id else None)
        summaries = await self.pg.run.fetch(Q["trace_summaries"], trace_id=q.trace_id, agents=agents)
        if not summaries:
            raise NotFound(f"no trace {q.trace_id}" + (f" of {', '.join(agents)}" if agents else ""))
        after: tuple[datetime, str, str] = (BEFORE_ANY_SPAN, "", "")
        if q.cursor:
            start, agent, span = decode_cursor(q.cursor, 3)
            after = (_cursor_time(start), str(agent), str(span))
        rows, cursor = keyset_page(
            await self.pg.run.fetch(
                Q["trace_spans"], trace_id=q.trace_id, agents=agents, c_start=after[0], c_agent=after[1],
                c_span=after[2], limit=q.limit + 1,
            ), q.limit, lambda r: (r["start_ts"].isoformat(), r["agent_id"], r["span_id"]),
        )  # fmt: skip
        return Trace(trace=merged(summaries), spans=[span_item(r) for r in rows], next_cursor=cursor)

    async def sweep(self, before: datetime) -> int:
        """Removes the traces that ended before `before`, with their spans (RETENTION_DAYS),
        a bounded batch per transaction."""
        removed = 0
        while True:
            async with self.pg.transaction() as tx:
                gone = await tx.fetch(Q["expired_traces"], before=before)
                if gone:
                    await tx.execute(
                        Q["delete_spans"],
                        agents=[r["agent_id"] for r in gone],
                        traces=[r["trace_id"] for r in gone],
                    )
            removed += len(gone)
            if len(gone) < SWEEP_BATCH:
                return removed


SWEEP_BATCH = 1000


def sweepers(store: Traces, retention_days: Mapping[str, float], every_seconds: float) -> list[Periodic]:
    """The traces' retention sweep; none when RETENTION_DAYS keeps traces for ever."""
    days = retention_days.get(RETENTION_KEY)
    if days is None:
        return []

    async def sweep() -> dict[str, int]:
        gone = await store.sweep(datetime.now(UTC) - timedelta(days=days))
        return {"traces": gone} if gone else {}

    return [Periodic("traces retention sweep", every_seconds, sweep)]


BEFORE_ANY_SPAN = datetime(1, 1, 1, tzinfo=UTC)


def _cursor_time(value: Any) -> datetime:
    try:
        ts = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        ts = None
    if ts is None or ts.tzinfo is None:
        raise BadRequest("malformed cursor; pass back next_cursor exactly as received")
    return ts


def trace_item(row: Record) -> TraceItem:
    fields = dict(row)
    fields["start"], fields["end"] = _precise(fields.pop("start_ts")), _precise(fields.pop("end_ts"))
    return msgspec.convert(fields, TraceItem)


def merged(rows: Sequence[Record]) -> TraceItem:
    """One trace's summary across the agents it passed through: the root's agent names it."""
    items = sorted((trace_item(r) for r in rows), key=lambda t: (t.root_span_id is None, t.start))
    head = items[0]
    if len(items) == 1:
        return head
    start, end = min(t.start for t in items), max(t.end for t in items)
    return msgspec.structs.replace(
        head,
        start=start,
        end=end,
        duration_ms=(datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000,
        spans=sum(t.spans for t in items),
        errors=sum(t.errors for t in items),
        models=sorted({m for t in items for m in t.models}),
        input_tokens=sum(t.input_tokens for t in items),
        output_tokens=sum(t.output_tokens for t in items),
        cost_usd=sum(t.cost_usd for t in items),
    )


def span_item(row: Record) -> SpanItem:
    fields = dict(row)
    start, end = fields.pop("start_ts"), fields.pop("end_ts")
    fields.update(
        start=_precise(start), end=_precise(end), duration_ms=(end - start).total_seconds() * 1000,
        attributes=_json(fields["attributes"]), events=_json(fields["events"]),
    )  # fmt: skip
    return msgspec.convert(fields, SpanItem)


def _precise(ts: datetime) -> str:
    """RFC 3339 in UTC to the microsecond (`Z`): a waterfall of fast calls needs better than
    the contract's milliseconds."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def _json(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value
