"""The tasks service's declaration: tasks, progress, evaluations, runs, restore."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import msgspec

from agentstore.bus.catalog import TASKS
from agentstore.bus.handle import BusHandle
from agentstore.bus.ingest import Handler, Ingest
from agentstore.bus.rpc import Endpoint, RequestContext, agent_endpoint, query_endpoints
from agentstore.config import Settings
from agentstore.lifecycle.runner import ServiceSpec, Wiring
from agentstore.schemas.tasks import (
    CancelRun,
    ClaimRun,
    EvalRecord,
    MovePhase,
    ReleaseRun,
    RenewLease,
    RestoreRequest,
    RunQuery,
    RunsQuery,
    SubmitRun,
    TaskQuery,
    TasksQuery,
)
from agentstore.stores.postgres import PostgresStore
from services.tasks.rows import MIGRATIONS, SQL
from services.tasks.runs import Runs, run_item
from services.tasks.tasks import Tasks, decode_progress, decode_task

LEASE_SWEEP_SECONDS = 1.0


class Restore:
    """`agents.{agent}.rpc.restore`: what an agent needs to resume after a restart (seed 000)."""

    def __init__(self, tasks: Tasks, runs: Runs, bus: BusHandle) -> None:
        self.tasks, self.runs, self.bus = tasks, runs, bus

    async def __call__(self, ctx: RequestContext, q: RestoreRequest) -> dict[str, Any]:
        assert ctx.agent is not None
        held = await self.runs.pg.fetch(SQL["held_runs"], ctx.agent)
        return {
            "agent_id": ctx.agent,
            "tasks": await self.tasks.non_terminal(ctx.agent),
            "runs": [run_item(r) for r in held],
            "metrics": await self._profile(ctx.agent),
        }

    async def _profile(self, agent: str) -> Any:
        """The metrics service's profile of the agent, or null when it has none or is away."""
        try:
            reply = await self.bus.request("query.agent_metrics", {"agent_id": agent}, timeout=2)
        except Exception:
            return None
        if (reply.headers or {}).get("Nats-Service-Error-Code"):
            return None
        return msgspec.json.decode(reply.data)


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    pg = await stack.enter_async_context(PostgresStore(settings.postgres_url))
    await pg.migrate("tasks", MIGRATIONS)
    bus = BusHandle()
    tasks = Tasks(pg)
    runs = Runs(pg, bus)
    endpoints: list[Endpoint[Any]] = [
        *query_endpoints("tasks", TasksQuery, tasks.query_tasks),
        *query_endpoints("task", TaskQuery, tasks.query_task),
        Endpoint("eval_record", "eval.record", EvalRecord, tasks.record_evaluation),
        Endpoint("runs_submit", "runs.submit", SubmitRun, runs.submit),
        Endpoint("runs_cancel", "runs.cancel", CancelRun, runs.cancel),
        Endpoint("query_runs", "query.runs", RunsQuery, runs.query_list),
        Endpoint("query_run", "query.run", RunQuery, runs.query_one),
        agent_endpoint("claim", ClaimRun, runs.claim),
        agent_endpoint("renew", RenewLease, runs.renew),
        agent_endpoint("phase", MovePhase, runs.phase),
        agent_endpoint("release", ReleaseRun, runs.release),
        agent_endpoint("restore", RestoreRequest, Restore(tasks, runs, bus)),
    ]
    return Wiring(
        ingests=[
            Ingest(
                TASKS,
                durable="tasks",
                handlers={
                    "tasks": Handler(decode_task, tasks.write_tasks),
                    "progress": Handler(decode_progress, tasks.write_progress),
                },
            )
        ],
        endpoints=endpoints,
        checks={"postgres": pg.ping},
        background=[runs.sweeper(LEASE_SWEEP_SECONDS)],
        bus=bus,
    )


SPEC = ServiceSpec(name="tasks", build=build)
