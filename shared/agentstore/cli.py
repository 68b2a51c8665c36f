"""The `agentstore` command.

The SDK's commands (query, runs, tail, deadletter) work with `pip install agentstore` alone;
the operator's (up, serve, export, import, ...) come with `agentstore-server`, which registers
them under the entry-point group `agentstore.commands` (the SDK never imports the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from agentstore.errors import AgentstoreError

Command = Callable[[argparse.Namespace], int]
# What agentstore-server adds; named here only so that an SDK-only install answers them with the
# distribution to install (tests/test_install.py keeps this equal to what the server registers).
SERVER_COMMANDS = frozenset(
    ["up", "down", "status", "supervise", "run", "serve", "export", "import", "mirror", "artifacts", "auth"]
)
# The commands that start servers need the stack's binaries too (agentstore-server's `stack` extra).
STACK_COMMANDS = frozenset(["up", "down", "status", "run", "supervise"])


def install_hint(command: str) -> str:
    target = "'agentstore-server[stack]'" if command in STACK_COMMANDS else "agentstore-server"
    return f"pip install {target}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="agentstore", description=__doc__)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = _add_sdk_commands(sub)
    for plugin in entry_points(group="agentstore.commands"):
        commands |= plugin.load()(sub)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted in SERVER_COMMANDS and wanted not in commands:
        # An SDK-only install: one line naming what to install, as httpx's CLI does.
        print(f"agentstore {wanted}: a command of the server, which is not installed; "
              f"install it with: {install_hint(wanted)}", file=sys.stderr)  # fmt: skip
        return 2
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except AgentstoreError as exc:
        print(f"agentstore: {exc}", file=sys.stderr)
        return 2


def _add_sdk_commands(sub: Any) -> dict[str, Command]:
    tail = sub.add_parser("tail", help="follow agents' logs live")
    tail.add_argument("agent", nargs="?", help="one agent (default: all)")
    tail.add_argument("--level", help="minimum level")
    tail.add_argument("--grep", help="only messages containing this text")
    tail.add_argument("--last", action="store_true", help="start with the newest log of each agent")
    query = sub.add_parser("query", help="any query subject: agentstore query logs agent_ids='[\"a1\"]'")
    query.add_argument("name", help="logs, memories, tasks, task, files, metrics, runs, summary, ...")
    query.add_argument("fields", nargs="*", help="key=value; values are JSON when they parse as JSON")
    query.add_argument("--agent", help="shorthand for agent_ids=[AGENT]")
    runs = sub.add_parser("runs", help="submit and list runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    submit = runs_sub.add_parser("submit", help="submit a run of a study spec (a JSON file)")
    submit.add_argument("spec", type=Path)
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--kind", default="run")
    submit.add_argument("--run-id")
    listing = runs_sub.add_parser("list", help="list runs")
    listing.add_argument("--status")
    dead = sub.add_parser("deadletter", help="inspect and redrive dead letters")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_sub.add_parser("list")
    dead_list.add_argument("--service")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_sub.add_parser("show").add_argument("seq", type=int)
    redrive = dead_sub.add_parser("redrive", help="publish back to the original subject")
    redrive.add_argument("seqs", type=int, nargs="*")
    redrive.add_argument("--all", action="store_true")
    redrive.add_argument("--service")
    store = sub.add_parser("store", help="an agent's memory store (LangGraph's BaseStore)")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    reindex = store_sub.add_parser(
        "reindex", help="re-embed an agent's items after its index fields or embedding model changed"
    )
    reindex.add_argument("agent", help="the agent whose store it is (the command connects as it)")
    reindex.add_argument(
        "--embed", required=True, help="module:function, the embed function (texts -> vectors)"
    )
    reindex.add_argument("--fields", default="$", help="comma-separated field paths to embed (default: $)")
    reindex.add_argument("--dims", type=int, help="the vectors' size (checked against the first one)")
    reindex.add_argument("--prefix", default="", help="only items under this namespace, labels joined by /")
    reindex.add_argument("--page", type=int, default=200)
    reindex.add_argument("--server", help="NATS URL (default: from the environment / stack.env)")
    threads = sub.add_parser("threads", help="an agent's LangGraph threads: list them by size, prune them")
    threads_sub = threads.add_subparsers(dest="threads_command", required=True)
    by_size = threads_sub.add_parser("list", help="the agent's threads, largest first (as an evaluator)")
    by_size.add_argument("agent")
    by_size.add_argument("--limit", type=int, default=50)
    by_size.add_argument("--recent", action="store_true", help="most recently checkpointed first instead")
    prune = threads_sub.add_parser(
        "prune", help="keep each thread's latest checkpoint and what it needs, or delete it (as the agent)"
    )
    prune.add_argument("agent", help="the agent whose threads they are (the command connects as it)")
    prune.add_argument("thread_ids", nargs="+", metavar="THREAD")
    prune.add_argument("--strategy", choices=["keep_latest", "delete"], default="keep_latest")
    prune.add_argument("--server", help="NATS URL (default: from the environment / stack.env)")
    return {"tail": _tail, "query": _query, "runs": _runs, "deadletter": _deadletter, "store": _store,
            "threads": _threads}  # fmt: skip


def _threads(args: argparse.Namespace) -> int:
    if args.threads_command == "list":
        order = "updated" if args.recent else "bytes"
        body = {"agent_id": args.agent, "limit": args.limit, "order": order}
        print_items(request_endpoint("query.threads", body), args.json)
        return 0
    from agentstore import contract
    from agentstore.client import AgentClient
    from agentstore.schemas.checkpoints import PruneThreads

    async def go() -> Any:
        async with await AgentClient.connect(args.server, args.agent) as client:
            return await client.call(
                contract.CHECKPOINT_PRUNE, PruneThreads(thread_ids=args.thread_ids, strategy=args.strategy)
            )

    removed = asyncio.run(go())
    if args.json:
        print(json.dumps({"checkpoints": removed.checkpoints, "objects": removed.objects}))
    else:
        print(f"agentstore threads prune: {removed.checkpoints:,} checkpoints and {removed.objects:,} "
              f"objects of {args.agent} removed ({args.strategy})")  # fmt: skip
    return 0


def _store(args: argparse.Namespace) -> int:
    import importlib

    module, _, name = args.embed.partition(":")
    if not module or not name:
        raise AgentstoreError(f"--embed takes module:function, got {args.embed!r}")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise AgentstoreError(f"--embed {args.embed}: cannot load it ({exc})") from None
    try:
        from agentstore.langgraph import AgentstoreStore
    except ImportError:
        raise AgentstoreError("store reindex needs LangGraph: pip install 'agentstore[langgraph]'") from None
    from agentstore.client import AgentClient

    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    prefix = tuple(p for p in args.prefix.split("/") if p)

    def embed(texts: Sequence[str]) -> list[list[float]]:
        vectors = [list(v) for v in func(list(texts))]
        if args.dims is not None and vectors and len(vectors[0]) != args.dims:
            raise AgentstoreError(f"--dims {args.dims}, but the embed function returns {len(vectors[0])}")
        return vectors

    def show(done: int, seen: int) -> None:
        if args.json:
            print(json.dumps({"reindexed": done, "seen": seen}), flush=True)
        else:
            print(f"\rre-embedded {done:,} of {seen:,} items read", end="", file=sys.stderr, flush=True)

    async def go() -> int:
        async with await AgentClient.connect(args.server, args.agent) as client:
            index: Any = {"dims": args.dims or 0, "embed": embed, "fields": fields}  # LangGraph's IndexConfig
            store = AgentstoreStore(client, index=index)
            return await store.areindex(prefix, page=args.page, progress=show)

    done = asyncio.run(go())
    if not args.json:
        print(f"\nagentstore store reindex: {done:,} items of {args.agent} re-embedded", file=sys.stderr)
    return 0


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT or SIGTERM sets (call it with the loop running): the graceful stop of
    a long-running command."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def connect_from_env() -> Any:
    from agentstore.bus.connect import NatsSettings, connect_nats

    return await connect_nats(NatsSettings.from_env(), name="agentstore-cli")


def _tail(args: argparse.Namespace) -> int:
    from agentstore.tail import tail

    async def go() -> None:
        nc = await connect_from_env()
        stop = stop_on_signals()
        try:
            await tail(nc, args.agent, level=args.level, text=args.grep, last=args.last,
                       as_json=args.json, stop=stop)  # fmt: skip
        finally:
            await nc.drain()

    asyncio.run(go())
    return 0


def _parse_fields(pairs: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise AgentstoreError(f"expected key=value, got {pair!r}")
        try:
            body[key] = json.loads(raw)
        except json.JSONDecodeError:
            body[key] = raw
    return body


def request_endpoint(name: str, body: dict[str, Any]) -> Any:
    """An endpoint by short name, as the evaluator (NATS settings from the environment and
    `.agentstore/stack.env`); the reply as plain JSON values."""
    import msgspec

    from agentstore.client import EvaluatorClient

    async def go() -> Any:
        async with await EvaluatorClient.connect(None) as client:
            return msgspec.to_builtins(await client.request(name, **body))

    return asyncio.run(go())


def print_items(reply: Any, as_json: bool) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # the SDK alone (no `server` extra): plain JSON
        as_json = True
    if as_json or not isinstance(reply, dict) or "items" not in reply:
        print(json.dumps(reply, indent=None if as_json else 2))
        return

    items = reply["items"]
    columns: list[str] = []
    for item in items:
        columns += [k for k in item if k not in columns and not isinstance(item[k], dict | list)]
    table = Table(*columns)
    for item in items:
        table.add_row(*(str(item.get(c, "")) for c in columns))
    Console().print(table)
    if reply.get("next_cursor"):
        print(f"more: cursor={reply['next_cursor']}")


def _query(args: argparse.Namespace) -> int:
    body = _parse_fields(args.fields)
    if args.agent:
        body["agent_ids"] = [args.agent]
    print_items(request_endpoint(f"query.{args.name}", body), args.json)
    return 0


def _runs(args: argparse.Namespace) -> int:
    if args.runs_command == "submit":
        body = {"spec": json.loads(args.spec.read_text()), "priority": args.priority,
                "kind": args.kind, "run_id": args.run_id}  # fmt: skip
        print(json.dumps(request_endpoint("runs.submit", {k: v for k, v in body.items() if v is not None})))
    else:
        print_items(request_endpoint("query.runs", {"status": args.status} if args.status else {}), args.json)
    return 0


def _deadletter(args: argparse.Namespace) -> int:
    from agentstore.bus import deadletter

    async def go() -> int:
        nc = await connect_from_env()
        try:
            if args.dead_command == "list":
                letters = await deadletter.list_dead(nc, service=args.service, limit=args.limit)
                print_items({"items": [d.summary() for d in letters]}, args.json)
            elif args.dead_command == "show":
                letter = await deadletter.show(nc, args.seq)
                if letter is None:
                    raise AgentstoreError(f"no dead letter {args.seq}")
                print(json.dumps({**letter.summary(), "headers": letter.headers,
                                  "body": letter.data.decode(errors="replace")}, indent=2))  # fmt: skip
            else:
                seqs = list(args.seqs)
                if args.all:
                    seqs += [
                        d.seq for d in await deadletter.list_dead(nc, service=args.service, limit=100_000)
                    ]
                for seq in seqs:
                    print(f"redriven {seq} -> {await deadletter.redrive(nc, seq)}")
        finally:
            await nc.drain()
        return 0

    return asyncio.run(go())
