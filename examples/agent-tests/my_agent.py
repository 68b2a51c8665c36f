"""A tiny agent: works through a task in steps, reporting progress and logging."""

from __future__ import annotations

import logging

from agentstore import AgentClient
from agentstore.logging import AgentstoreHandler, traced

log = logging.getLogger("my_agent")


async def solve(agent: AgentClient, task_id: str, steps: int) -> int:
    handler = AgentstoreHandler(agent)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        await agent.task(task_id, "running", title="add the numbers")
        total = 0
        for step in range(steps):
            async with traced(agent, f"step {step}", task_id=task_id):
                total += step
            await agent.progress(task_id, step, "added", percent=100 * (step + 1) / steps)
            log.info("added %d", step, extra={"task_id": task_id, "total": total})
        await agent.task(task_id, "completed")
        return total
    finally:
        await handler.drain()
        log.removeHandler(handler)
