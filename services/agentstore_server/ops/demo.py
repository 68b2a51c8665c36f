"""The demo fleet of `make run`: a dozen simulated agents working through tasks, and an
evaluator printing a live summary, so a newcomer sees the system work within a minute."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import zlib

from agentstore import contract
from agentstore.client import AgentClient, EvaluatorClient
from agentstore.errors import AgentstoreError
from agentstore.schemas.common import Level
from agentstore.schemas.metrics import CustodyTest
from agentstore.schemas.tasks import MovePhase

LEVELS: list[Level] = ["debug", "info", "info", "warning"]
AGENTS = [f"demo-{name}" for name in (
    "ada", "babbage", "curie", "dijkstra", "euler", "fermi",
    "gauss", "hopper", "iverson", "jacobi", "knuth", "lovelace",
)]  # fmt: skip


def tiny_png(seed: int) -> bytes:
    """A real 8x8 PNG, so the screenshots are screenshots."""
    rows = b"".join(
        b"\x00" + bytes([(seed * 37 + x * 11 + y * 7) % 256 for x in range(24)]) for y in range(8)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def agent_loop(url: str, name: str, stop: asyncio.Event) -> None:
    rng = random.Random(name)
    async with await AgentClient.connect(url, name) as agent:
        restored = await agent.restore()
        await agent.log("info", f"{name} started; resuming {len(restored.tasks)} open tasks")
        conversation = f"conv-{name}"
        await agent.conversation(conversation, user_id="demo-user", context={"agent": name})
        n = 0
        while not stop.is_set():
            n += 1
            task = f"task-{n:04d}"
            await agent.task(task, "running", kind="experiment" if n % 3 == 0 else "task", title=f"job {n}")
            for step in range(5):
                await agent.progress(task, step, "ok", percent=step * 25.0, detail={"tool": "browser"})
                level: Level = rng.choice(LEVELS) if rng.random() > 0.02 else "error"
                await agent.log(level, f"{task} step {step}", task_id=task, fields={"step": step})
                await agent.metric("reward", rng.random(), task_id=task, experiment_id=f"exp-{n % 4}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=rng.uniform(0.1, 0.4))  # the agent "works"
            await agent.memory("observation", f"{task} went fine", key="last-task", tags=["demo"])
            await agent.message(conversation, "assistant", f"finished {task}")
            await agent.screenshot(tiny_png(n), f"{task}.png", task_id=task)
            await agent.task(task, "completed" if rng.random() > 0.1 else "failed")
            async with agent.claim(lease_seconds=30) as lease:
                if lease is not None:
                    await agent.call(contract.PHASE, MovePhase(run_id=lease.run.run_id, phase="execute",
                                                               attempt=lease.run.attempt))  # fmt: skip
                    lease.summary = {"keff": round(1 + rng.random() / 10, 4)}


async def evaluator_loop(url: str, stop: asyncio.Event) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    async with await EvaluatorClient.connect(url) as evaluator:
        submitted = 0
        while not stop.is_set():
            with contextlib.suppress(AgentstoreError):
                for _ in range(3):
                    submitted += 1
                    await evaluator.submit_run({"study": "demo", "n": submitted % 20}, priority=submitted % 3)
                for name in AGENTS[:4]:
                    result = CustodyTest(agent_id=name, passed=random.random() > 0.3,
                                         score=random.uniform(50, 100), duration=1.0)  # fmt: skip
                    await evaluator.custody_test(result)
                # Counted by the services (SQL, the agents registry), never by paging a list.
                tasks = await evaluator.query("task_counts", agent_ids=AGENTS)
                runs = await evaluator.query("run_counts")
                summary = await evaluator.query("summary")
                agents = await evaluator.query("agents", agent_ids=AGENTS, limit=len(AGENTS))
                table = Table(title="agentstore demo fleet (Ctrl-C stops)")
                for column in (
                    "tasks",
                    "completed",
                    "errors (1 h)",
                    "runs done",
                    "agents w/ profiles",
                    "total xp",
                ):
                    table.add_column(column)
                table.add_row(str(sum(tasks.counts.values())), str(tasks.counts.get("completed", 0)),
                              str(sum(a.errors for a in agents.items)), str(runs.counts.get("succeeded", 0)),
                              str(summary.total_agents), str(summary.summary.total_xp))  # fmt: skip
                console.print(table)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=3)  # the summary's refresh period


async def run_demo(url: str, stop: asyncio.Event) -> None:
    tasks = [asyncio.create_task(agent_loop(url, name, stop)) for name in AGENTS]
    tasks.append(asyncio.create_task(evaluator_loop(url, stop)))
    await stop.wait()
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
