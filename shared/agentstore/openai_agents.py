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
