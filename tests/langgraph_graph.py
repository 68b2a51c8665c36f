"""The LangGraph graph the tests run (and a reader a second process runs): plan → review
(which interrupts for approval) → act, with a 200 KB document every node hands on unchanged,
the shape of an agent carrying a large context through its steps."""

from __future__ import annotations

import asyncio
import json
import operator
import sys
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agentstore import AgentClient
from agentstore.langgraph import AgentstoreSaver

DOC = "".join(f"line {i}: the customer's order history and notes\n" for i in range(4200))  # ~200 KB


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    doc: str
    count: int
    approved: str


def plan(state: State) -> dict[str, Any]:
    return {"steps": ["plan"], "doc": state["doc"], "count": state.get("count", 0) + 1}


def review(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "count": state["count"]})
    return {"steps": ["review"], "doc": state["doc"], "approved": str(answer)}


def act(state: State) -> dict[str, Any]:
    return {"steps": [f"act:{state['approved']}"], "doc": state["doc"], "count": state["count"] + 10}


def build() -> StateGraph[State]:
    g = StateGraph(State)
    g.add_node("plan", plan)
    g.add_node("review", review)
    g.add_node("act", act)
    g.add_edge(START, "plan")
    g.add_edge("plan", "review")
    g.add_edge("review", "act")
    g.add_edge("act", END)
    return g


async def read(url: str, agent: str, thread: str) -> dict[str, Any]:
    """What a fresh process sees of a thread: its state and its history, newest first."""
    async with await AgentClient.connect(url, agent) as client:
        graph = build().compile(checkpointer=AgentstoreSaver(client))
        config = {"configurable": {"thread_id": thread}}
        state = await graph.aget_state(config)
        history = [s async for s in graph.aget_state_history(config)]
    return {
        "values": {k: (len(v) if k == "doc" else v) for k, v in state.values.items()},
        "doc_intact": state.values.get("doc") == DOC,
        "next": list(state.next),
        "history": [h.config["configurable"]["checkpoint_id"] for h in history],
        "steps": [h.values.get("steps") for h in history],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(read(sys.argv[1], sys.argv[2], sys.argv[3]))))
