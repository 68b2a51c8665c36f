"""The tasks service's declaration: tasks, progress, evaluations, runs, restore."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from agentstore import contract
from agentstore.errors import Unavailable
from agentstore.schemas.tasks import RestoreRequest
from agentstore_server.bus.handle import BusHandle
from agentstore_server.bus.ingest import Handler, ingests
from agentstore_server.bus.rpc import RequestContext, bind
from agentstore_server.config import Settings
from agentstore_server.lifecycle.runner import ServiceSpec, Wiring
from agentstore_server.stores.postgres import PostgresStore
from agentstore_server.tasks.db import MIGRATIONS, TasksDb
from agentstore_server.tasks.runs import ClaimQueue, Runs, run_item
from agentstore_server.tasks.tasks import Tasks, decode_progress, decode_task

LEASE_SWEEP_SECONDS = 1.0


class Restore:
    """`agents.{agent}.rpc.restore`: what an agent needs to resume after a restart (seed 000)."""

    def __init__(self, tasks: Tasks, runs: Runs, bus: BusHandle) -> None:
        self.tasks, self.runs, self.bus = tasks, runs, bus

    async def __call__(self, ctx: RequestContext, q: RestoreRequest) -> dict[str, Any]:
        assert ctx.agent is not None
        held = await self.runs.db.held_runs(ctx.agent)
        open_tasks = await self.tasks.non_terminal(ctx.agent, q.cursor, q.limit)
        items = open_tasks["items"]
        latest = await self._latest_metrics(ctx.agent, [t["id"] for t in items])
        for item in items:
            if item["id"] in latest:
                item["latest_metrics"] = latest[item["id"]]
        return {
            "agent_id": ctx.agent,
            "tasks": items,
            "runs": [run_item(r) for r in held],
            "metrics": await self._profile(ctx.agent),
            "next_cursor": open_tasks["next_cursor"],
        }

    async def _profile(self, agent: str) -> Any:
        """The metrics service's profile of the agent, or null when it has none or is away."""
        return await self._ask_metrics("query.agent_metrics", {"agent_id": agent})

    async def _latest_metrics(self, agent: str, task_ids: list[str]) -> dict[str, Any]:
        """Each open task's latest metric values (its id as `experiment_id`); none when the
        metrics service is away: restore answers with what the tasks service holds."""
        if not task_ids:
            return {}
        body = {"agent_id": agent, "experiment_ids": task_ids}
        reply = await self._ask_metrics("query.latest_metrics", body)
        return dict(reply["experiments"]) if reply else {}

    async def _ask_metrics(self, subject: str, body: dict[str, Any]) -> Any:
        """The metrics service's answer; None when it is away (no responders, no reply in
        time, 503) or has nothing (404). Anything else is a fault and is raised: a restore
        must not quietly answer without metrics because of a bug."""
        try:
            reply = await self.bus.request(subject, body, timeout=2)
        except (NoRespondersError, NatsTimeout):
            return None
        code = (reply.headers or {}).get("Nats-Service-Error-Code")
        if code in AWAY_OR_NONE:
            return None
        if code:
            message = (reply.headers or {}).get("Nats-Service-Error", "")
            raise Unavailable(f"{subject} answered {code} {message}: the restore cannot include the metrics")
        return msgspec.json.decode(reply.data)


# The metrics service away, or without the agent: a restore answers without its metrics.
AWAY_OR_NONE = frozenset({"404", "503"})


async def build(settings: Settings, stack: AsyncExitStack) -> Wiring:
    pg = await stack.enter_async_context(PostgresStore(settings.postgres_url))
    await pg.migrate("tasks", MIGRATIONS)
    bus = BusHandle()
    # Claims have a connection of their own (ClaimQueue runs one statement at a time),
    # which plans claim_runs once: PostgreSQL otherwise replans it on every call (its
    # generic plan's estimate, blind to the number of claimants, looks costlier), and
    # planning was 0.3 of the statement's 0.8 ms. The plan is the same either way: the
    # queue's partial index, in queue order.
    claims_pg = await stack.enter_async_context(PostgresStore(
        settings.postgres_url, min_size=1, max_size=ClaimQueue.MAX_IN_FLIGHT,
        settings={"plan_cache_mode": "force_generic_plan"},
    ))  # fmt: skip
    db = TasksDb(pg)
    tasks = Tasks(db)
    runs = Runs(db, bus, claims=TasksDb(claims_pg))
    endpoints = bind(
        "tasks",
        {
            contract.QUERY_TASKS: tasks.query_tasks,
            contract.QUERY_TASK: tasks.query_task,
            contract.QUERY_PROGRESS: tasks.query_progress,
            contract.QUERY_RUN_EVENTS: runs.query_events,
            contract.QUERY_TASK_COUNTS: tasks.query_counts,
            contract.QUERY_RUN_COUNTS: runs.query_counts,
            contract.QUERY_STUDY: runs.query_study,
            contract.RUNS_UPDATE: runs.update,
            contract.RUNS_EVENT: runs.event,
            contract.EVAL_RECORD: tasks.record_evaluation,
            contract.RUNS_SUBMIT: runs.submit,
            contract.RUNS_CANCEL: runs.cancel,
            contract.QUERY_RUNS: runs.query_list,
            contract.QUERY_RUN: runs.query_one,
            contract.CLAIM: runs.claim,
            contract.RENEW: runs.renew,
            contract.PHASE: runs.phase,
            contract.RELEASE: runs.release,
            contract.RESTORE: Restore(tasks, runs, bus),
        },
    )
    writers = {
        "tasks": Handler(decode_task, tasks.write_tasks),
        "progress": Handler(decode_progress, tasks.write_progress),
    }
    return Wiring(
        ingests=ingests("tasks", writers),
        endpoints=endpoints,
        checks={"postgres": pg.ping},
        background=[runs.sweeper(LEASE_SWEEP_SECONDS)],
        bus=bus,
    )


SPEC = ServiceSpec(name="tasks", build=build)
