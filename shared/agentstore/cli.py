"""The `agentstore` command: the local stack and the services."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from agentstore.errors import AgentstoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentstore", description=__doc__)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing, start the local stack and the services")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="every process of the stack: pid, address, health")
    sub.add_parser("run", help="`up` in the foreground; Ctrl-C stops everything")
    serve = sub.add_parser("serve", help="run services in this process until SIGTERM")
    serve.add_argument("services", nargs="*", help="logs, tasks, artifacts, metrics (default: all)")
    export = sub.add_parser(
        "export", help="conversations, messages, memories, events as JSON Lines"
    )
    export.add_argument("--agent", help="one agent's data (default: all agents)")
    export.add_argument("--to", required=True, help="a folder, or s3://bucket/prefix")
    load = sub.add_parser("import", help="load an export (idempotent) or seed-001 JSON files")
    load.add_argument("--from", dest="source", help="a folder or s3://bucket/prefix of an export")
    load.add_argument("--seed-json", nargs="+", type=Path, help="seed-001 conversation files")
    load.add_argument("--agent", help="the agent the --seed-json conversations belong to")
    artifacts = sub.add_parser("artifacts", help="artifact maintenance")
    artifacts_sub = artifacts.add_subparsers(dest="artifacts_command", required=True)
    rec = artifacts_sub.add_parser(
        "reconcile", help="objects without metadata, metadata without objects, stale uploads"
    )
    rec.add_argument("--repair", action="store_true", help="register, drop and remove as needed")
    args = parser.parse_args(argv)
    try:
        result: int = COMMANDS[args.command](args)
        return result
    except AgentstoreError as exc:
        print(f"agentstore: {exc}", file=sys.stderr)
        return 2


def _up(args: argparse.Namespace) -> int:
    from agentstore.stack.manager import Stack

    stack = Stack()
    settings = stack.up()
    if args.json:
        print(json.dumps(settings))
    else:
        print(f"agentstore is up; settings in {stack.env_file}")
        _print_status(stack.status(), as_json=False)
    return 0


def _down(args: argparse.Namespace) -> int:
    from agentstore.stack.manager import Stack

    stopped = Stack().down()
    print(
        json.dumps(stopped)
        if args.json
        else f"stopped: {', '.join(stopped) or 'nothing was running'}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from agentstore.stack.manager import Stack

    rows = Stack().status()
    _print_status(rows, as_json=args.json)
    return 0 if all(r["health"] in ("running", "ready") for r in rows) else 1


def _print_status(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "pid", "address", "health")
    for row in rows:
        color = "green" if row["health"] in ("running", "ready") else "red"
        table.add_row(row["name"], row["pid"], row["address"], f"[{color}]{row['health']}[/]")
    Console().print(table)


def _run(args: argparse.Namespace) -> int:
    from agentstore.stack.manager import Stack

    stack = Stack()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.up()
        _print_status(stack.status(), as_json=False)
        print("agentstore is running; Ctrl-C stops it", flush=True)
        while not stopping:
            signal.pause()
    finally:
        print("stopping ...", flush=True)
        stack.down()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from agentstore.config import Settings
    from agentstore.lifecycle.logging import configure_logging
    from agentstore.lifecycle.runner import serve
    from services.registry import SERVICES

    names = args.services or list(SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise AgentstoreError(f"unknown service {unknown}; choose from {sorted(SERVICES)}")
    settings = Settings()
    configure_logging("+".join(names), settings.log_level)
    return asyncio.run(serve([SERVICES[n] for n in names], settings))


def _export(args: argparse.Namespace) -> int:
    from agentstore.portable import export_to

    counts = asyncio.run(export_to(args.to, args.agent))
    _print_counts("exported", counts, as_json=args.json)
    return 0


def _import(args: argparse.Namespace) -> int:
    from agentstore.portable import import_from, import_seed

    if bool(args.source) == bool(args.seed_json):
        raise AgentstoreError("give either --from (an export) or --seed-json FILES --agent A")
    if args.seed_json:
        if not args.agent:
            raise AgentstoreError(
                "--seed-json needs --agent: the agent the conversations belong to"
            )
        counts = asyncio.run(import_seed(args.seed_json, args.agent))
    else:
        counts = asyncio.run(import_from(args.source))
    _print_counts("imported", counts, as_json=args.json)
    return 0


def _print_counts(verb: str, counts: dict[str, int], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(counts))
    else:
        print(f"{verb}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))


def _artifacts(args: argparse.Namespace) -> int:
    from agentstore.portable import reconcile_artifacts

    report = asyncio.run(reconcile_artifacts(repair=args.repair))
    if args.json:
        print(json.dumps(report))
    else:
        for kind, items in report.items():
            if isinstance(items, list):
                print(f"{kind}: {len(items)}")
                for item in items[:50]:
                    print(f"  {item}")
        print("repaired" if args.repair else "report only; --repair to fix")
    return 0


COMMANDS = {
    "artifacts": _artifacts,
    "up": _up,
    "down": _down,
    "status": _status,
    "run": _run,
    "serve": _serve,
    "export": _export,
    "import": _import,
}
