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

from typing import Any

from agentstore import contract
from agentstore.client import AgentClient
from agentstore.ids import new_id
from agentstore.schemas.sessions import (
    MAX_SESSION_ADD,
    AddSessionItems,
    ClearSession,
    PopSessionItem,
    SessionItemsQuery,
)

ADD_ATTEMPTS = 3


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
        input items). Idempotent per call: a retried add stores nothing twice."""
        items = [dict(i) for i in items]
        for start in range(0, len(items), MAX_SESSION_ADD):
            chunk = items[start : start + MAX_SESSION_ADD]
            await self.client.call(
                contract.SESSION_ADD,
                AddSessionItems(session_id=self.session_id, items=chunk, batch_id=new_id()),
            )

    async def pop_item(self) -> Any | None:
        reply = await self.client.call(contract.SESSION_POP, PopSessionItem(session_id=self.session_id))
        return reply.item

    async def clear_session(self) -> None:
        await self.client.call(contract.SESSION_CLEAR, ClearSession(session_id=self.session_id))
