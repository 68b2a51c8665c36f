"""Several processes of one service on one host: the way past Python's one core.

Every process binds its own workers to the same durable pull consumer and
joins the same queue groups, exactly as replicas do; the parent forwards
SIGTERM/SIGINT and, if a child dies, stops the rest and exits non-zero so
the orchestrator restarts the whole pod.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

log = logging.getLogger("agentstore.processes")


async def with_children(
    count: int, argv: list[str], run_self: Callable[[asyncio.Event], Awaitable[int]]
) -> int:
    """Run `count - 1` copies of argv as children, and `run_self` here; the exit code."""
    env = {**os.environ, "SERVICE_PROCESSES": "1", "HEALTH_PORT": "0"}
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "agentstore", *argv, env=env)
        for _ in range(count - 1)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch(child: asyncio.subprocess.Process) -> None:
        code = await child.wait()
        if not stop.is_set():
            log.error("worker process %d exited with %s; stopping the others", child.pid, code)
            stop.set()

    watchers = [asyncio.create_task(watch(c)) for c in children]
    own = await run_self(stop)
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    codes = [await c.wait() for c in children]
    for w in watchers:
        w.cancel()
    return own or next((c for c in codes if c), 0)
