"""The OpenAI Agents SDK's `Session`, kept by agentstore: an agent's conversation history
survives the process, per agent and session, over NATS (nothing in the agent talks to a
database).

    from agents import Agent, Runner
    from agentstore import AgentClient
    from agentstore.openai_agents import AgentstoreSession

    async with await AgentClient.connect(None, "support-bot-1") as client:
        session = AgentstoreSession("user-42", client)
        result = await Runner.run(agent, "Where is my order?", session=session)

Items are appended as they come (`add_items` returns once they are stored: a read right
after sees them); `get_items(limit)` is the latest `limit` in the order added. The session
belongs to the client's agent: another agent's sessions are not reachable. Structurally a
`agents.memory.Session` (the protocol is runtime-checkable); this module needs nothing of
the Agents SDK at import (`pip install 'agentstore[openai-agents]'` brings it).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from agentstore import contract
from agentstore.client import AgentClient
from agentstore.errors import Unavailable
from agentstore.ids import new_id
from agentstore.schemas.sessions import (
    MAX_SESSION_ADD,
    AddSessionItems,
    ClearSession,
    PopSessionItem,
    SessionItemsQuery,
)
from agentstore.schemas.traces import SpanIn
from agentstore.tracing import Exporter, attributes_of, hex_id

# An add is retried while the service is unavailable (a restart, a lost reply), with the same
# batch_id each time: the service stores a batch once, so a retry of one it did store is a
# no-op. Backoff 0.25 s doubling to 4 s: ~15 s in all, a rolling restart's length.
ADD_ATTEMPTS = 6
ADD_BACKOFF = (0.25, 4.0)


class AgentstoreSession:
    """One session of the client's agent (`session_id`: letters, digits, `._:-`, up to 128)."""

    session_settings: Any = None  # the Agents SDK's SessionSettings; none are needed here

    def __init__(self, session_id: str, client: AgentClient, *, session_settings: Any = None) -> None:
        self.session_id = session_id
        self.client = client
        self.session_settings = session_settings

    async def get_items(self, limit: int | None = None) -> list[Any]:
        reply = await self.client.call(
            contract.SESSION_ITEMS, SessionItemsQuery(session_id=self.session_id, limit=limit)
        )
        return list(reply.items)

    async def add_items(self, items: list[Any]) -> None:
        """Store `items` after those already there, in order (each a JSON object: the SDK's
        input items). Retried while the service is unavailable, with one batch id per chunk, so
        a retried add stores nothing twice."""
        items = [dict(i) for i in items]
        for start in range(0, len(items), MAX_SESSION_ADD):
            chunk = items[start : start + MAX_SESSION_ADD]
            request = AddSessionItems(session_id=self.session_id, items=chunk, batch_id=new_id())
            delay, cap = ADD_BACKOFF
            for attempt in range(1, ADD_ATTEMPTS + 1):
                try:
                    await self.client.call(contract.SESSION_ADD, request)
                    break
                except Unavailable:
                    if attempt == ADD_ATTEMPTS:
                        raise
                    await asyncio.sleep(delay)  # backoff between retries, not synchronisation
                    delay = min(cap, delay * 2)

    async def pop_item(self) -> Any | None:
        reply = await self.client.call(contract.SESSION_POP, PopSessionItem(session_id=self.session_id))
        return reply.item

    async def clear_session(self) -> None:
        await self.client.call(contract.SESSION_CLEAR, ClearSession(session_id=self.session_id))


class AgentstoreTracing:
    """The Agents SDK's traces as agentstore traces (CONTRACT v1.12): one line, no other
    change to the agent's code.

        from agents import set_trace_processors
        set_trace_processors([AgentstoreTracing(client)])  # only here; add_trace_processor: also OpenAI's

    Each SDK trace becomes a root span (its workflow name; `group_id` as the session), each
    SDK span a child (agent, tool, generation, response, handoff, guardrail ...), with the
    model and token usage of generations and responses, and the error of a failed span.
    Make it in async code (it publishes on that event loop); `await tracing.flush()` waits
    for what it has published. Structurally the SDK's `TracingProcessor`: nothing of the SDK
    is imported here.
    """

    def __init__(self, client: AgentClient) -> None:
        self._exporter = Exporter(client)
        self._trace_starts: dict[str, datetime] = {}

    # -- the SDK's TracingProcessor ------------------------------------------------------
    def on_trace_start(self, trace: Any) -> None:
        self._trace_starts[trace.trace_id] = datetime.now(UTC)

    def on_trace_end(self, trace: Any) -> None:
        start = self._trace_starts.pop(trace.trace_id, None) or datetime.now(UTC)
        metadata = getattr(trace, "metadata", None)
        self._exporter.send(SpanIn(
            trace_id=hex_id(trace.trace_id, 32), span_id=_root_of(trace.trace_id),
            name=(trace.name or "trace")[:256], start=start, end=max(datetime.now(UTC), start), status="ok",
            session_id=(getattr(trace, "group_id", None) or None),
            attributes={"openai_agents": attributes_of({"trace_id": trace.trace_id, "metadata": metadata})},
        ))  # fmt: skip

    def on_span_start(self, span: Any) -> None:
        pass

    def on_span_end(self, span: Any) -> None:
        data = span.span_data
        exported = data.export() if hasattr(data, "export") else {}
        kind = str(exported.get("type") or getattr(data, "type", "span"))
        model, usage = _model_usage(data, exported)
        error = span.error
        message = str(error.get("message") if isinstance(error, dict) else error) if error else None
        start = _when(span.started_at) or datetime.now(UTC)
        self._exporter.send(SpanIn(
            trace_id=hex_id(span.trace_id, 32), span_id=hex_id(span.span_id, 16),
            name=_name(kind, exported)[:256],
            parent_span_id=hex_id(span.parent_id, 16) if span.parent_id else _root_of(span.trace_id),
            start=start, end=max(_when(span.ended_at) or datetime.now(UTC), start),
            kind="client" if kind in ("generation", "response") else "internal",
            status="error" if error else "ok",
            status_message=message[:4096] if message else None,
            model=model, input_tokens=usage[0], output_tokens=usage[1],
            attributes={"openai_agents": attributes_of({k: v for k, v in exported.items() if v is not None})},
        ))  # fmt: skip

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass  # publishes are queued on the client's loop; `await flush()` waits for them

    async def flush(self) -> None:
        await self._exporter.flush()


def _root_of(trace_id: str) -> str:
    """The span id of an SDK trace's own span (the SDK's spans without a parent hang from it)."""
    return hex_id(f"root:{trace_id}", 16)


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def _name(kind: str, exported: dict[str, Any]) -> str:
    detail = exported.get("name") or exported.get("model")
    if kind == "handoff":
        detail = f"{exported.get('from_agent')} → {exported.get('to_agent')}"
    if kind == "custom":  # the SDK's own task and turn spans, and the user's custom_span()
        return str(detail or kind)
    return f"{kind} {detail}" if detail else str(kind)


def _model_usage(data: Any, exported: dict[str, Any]) -> tuple[str | None, tuple[int | None, int | None]]:
    """A generation's or a response's model and (input, output) tokens."""
    response = getattr(data, "response", None)
    model = exported.get("model") or getattr(response, "model", None)
    usage: Any = exported.get("usage") or getattr(response, "usage", None) or {}
    if not isinstance(usage, dict):
        usage = {
            "input_tokens": getattr(usage, "input_tokens", None),
            "output_tokens": getattr(usage, "output_tokens", None),
        }
    tokens = (
        usage.get("input_tokens", usage.get("prompt_tokens")),
        usage.get("output_tokens", usage.get("completion_tokens")),
    )
    counted = tuple(int(t) if isinstance(t, int | float) and t >= 0 else None for t in tokens)
    return (str(model)[:256] if model else None), (counted[0], counted[1])
