"""The agent's test, using only agentstore's pytest fixtures."""

from __future__ import annotations

from my_agent import solve

from agentstore import AgentClient, EvaluatorClient


async def test_solve_completes_its_task_with_every_step_recorded(
    agent_client: AgentClient, evaluator_client: EvaluatorClient
) -> None:
    assert await solve(agent_client, "t-1", 4) == 6
    written = await agent_client.flush()  # read our own writes: pass where they landed as `after`
    task = await evaluator_client.query(
        "task", agent_id=agent_client.agent, task_id="t-1", after=written["TASKS"].as_after()
    )
    assert task.status == "completed"
    assert [p.step for p in task.progress] == [0, 1, 2, 3] and task.progress[-1].percent == 100
    logs = await evaluator_client.query(
        "logs", agent_ids=[agent_client.agent], after=written["LOGS"].as_after()
    )
    assert [item.fields["total"] for item in reversed(logs.items)] == [0, 1, 3, 6]


async def test_each_test_gets_its_own_agent(
    agent_client: AgentClient, evaluator_client: EvaluatorClient
) -> None:
    tasks = await evaluator_client.query("tasks", agent_ids=[agent_client.agent])
    assert tasks.items == []
