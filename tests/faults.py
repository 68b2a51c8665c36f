"""The fault suite's cases: each fault the contract promises to survive, run against real
servers and service processes, measured (a `Result`: what must hold, the figures, whether it
held). `tests/test_faults.py` runs each as a pytest test: short sizes in `make test`, full
sizes under the `soak` marker in `make faults` (about 25 minutes), which also writes the
figures to .cache/faults.json and prints the table README's Faults section shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats

from agentstore import contract
from agentstore.auth import Fleet, generate, read_credentials
from agentstore.client import AgentClient, EvaluatorClient
from agentstore.errors import AgentstoreError
from agentstore.schemas.logs import LogIn, MemoryIn
from agentstore.schemas.metrics import MetricIn
from agentstore.schemas.tasks import ClaimRun, ProgressIn, ReleaseRun, TaskIn
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.stores.mongo import MongoStore
from tests import helpers

# The cases poll stores that may hold 100k rows: every quarter second is enough.
poll_until = functools.partial(helpers.poll_until, every=0.25)
SERVICES = ("logs", "tasks", "artifacts", "metrics")


@dataclass
class Result:
    case: str
    fault: str
    must: str
    figures: str
    holds: bool
    test: str = ""


@dataclass
class Sizes:
    events: int = 100_000  # T1, per service
    artifacts: int = 100_000  # T1 for artifacts: each is an S3 PUT
    t1_services: tuple[str, ...] = SERVICES
    dupes: int = 10_000  # T2
    nats_events: int = 50_000  # T3
    outages: tuple[float, ...] = (30.0, 120.0)  # T4
    # T4's databases. Short, PostgreSQL only: the MongoDB-wire server's and MinIO's outages
    # have their own tests in make test (test_durability, test_artifacts), PostgreSQL's (which
    # FerretDB stands on) only this one.
    t4_stores: tuple[str, ...] = ("postgres", "mongo", "minio")
    runs: int = 10_000  # T11
    cluster_events: int = 30_000  # T16

    @classmethod
    def short(cls) -> Sizes:
        """`make test`'s sizes: each case's behaviour, in seconds rather than minutes."""
        return cls(events=500, artifacts=100, dupes=300, nats_events=2_000, outages=(6.0,),
                   t4_stores=("postgres",), runs=200, cluster_events=2_000)  # fmt: skip


# -- the stack ------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    nats: Server
    postgres: Server
    mongo: Server
    minio: Server
    running: dict[str, Server] = field(default_factory=dict)

    def settings(self, **extra: Any) -> Settings:
        name = f"f{uuid.uuid4().hex[:10]}"
        values: dict[str, Any] = {
            "nats_url": self.nats.url, "mongodb_url": self.mongo.url, "mongodb_db": name,
            "postgres_url": servers.create_database(self.postgres.address, name),
            "s3_endpoint": self.minio.address, "drain_seconds": 10, **extra,
        }  # fmt: skip
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    def start(self, service: str, settings: Settings, tag: str = "") -> Server:
        env = {**os.environ, **servers.service_env(settings)}
        server = servers.start_service(service, env, self.root / f"{service}{tag}.log", servers.free_port())
        self.running[f"{service}{tag}"] = server
        return server

    def stop_services(self) -> None:
        for server in self.running.values():
            server.stop()
        self.running.clear()


async def provision(url: str, replicas: int = 1) -> None:
    nc = await nats.connect(url)
    try:
        for stream in (*contract.STREAMS.values(), contract.DEADLETTER):
            await ensure_stream(nc.jetstream(), stream, replicas)
    finally:
        await nc.close()


# -- counting what was stored -----------------------------------------------------------


async def stored_ids(settings: Settings, service: str, agent: str) -> tuple[int, set[str]]:
    """(rows, distinct ids) stored for `agent` by `service`: rows > distinct is a duplicate."""
    if service == "logs":
        async with MongoStore(settings.mongodb_url, settings.mongodb_db) as mongo:
            docs = await mongo.find("logs", {"agent_id": agent}, projection={"id": 1})
        return len(docs), {d["id"] for d in docs}
    table, column = {"tasks": ("task_progress", "id"), "metrics": ("metric_points", "id"),
                     "artifacts": ("binary_file_metadata", "file_id")}[service]  # fmt: skip
    conn = await asyncpg.connect(settings.postgres_url)
    try:
        rows = await conn.fetch(f"SELECT {column} AS id FROM {table} WHERE agent_id = $1", agent)
    finally:
        await conn.close()
    ids = {r["id"].split(":", 1)[-1] if service == "artifacts" else r["id"] for r in rows}
    return len(rows), ids


async def dead_letters(url: str, agent: str | None = None) -> list[tuple[str, str]]:
    """(subject, reason) of every dead letter (of one agent's subjects)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(contract.DEADLETTER_STREAM)
        except Exception:
            return []
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(Exception):
                msg = await js.get_msg(contract.DEADLETTER_STREAM, seq)
                headers = msg.headers or {}
                subject = headers.get("Dead-Subject", "")
                if agent is None or subject.startswith(f"agents.{agent}."):
                    found.append((subject, headers.get("Dead-Reason", "")))
        return found
    finally:
        await nc.close()


def body_for(service: str, i: int) -> tuple[str, msgspec.Struct | bytes, dict[str, str] | None]:
    if service == "logs":
        return "logs", LogIn(id=f"e{i}", level="info", message=f"event {i}"), None
    if service == "tasks":
        return "progress", ProgressIn(id=f"e{i}", task_id=f"t{i % 100}", step=i, status="ok"), None
    if service == "metrics":
        return "metrics", MetricIn(id=f"e{i}", name="reward", value=float(i)), None
    return "artifacts", f"artifact {i}".encode(), {"Content-Type": "text/plain", "Artifact-Name": f"a{i}.txt"}


async def publish_events(url: str, agent: str, service: str, n: int, start: int = 0) -> int:
    async with await AgentClient.connect(url, agent, timeout=30) as client:
        client.publish_retries = 20
        for i in range(start, start + n):
            kind, body, headers = body_for(service, i)
            await client.publish(kind, body, event_id=f"e{i}", headers=headers)
        await client.flush()
    return n


# -- the cases ----------------------------------------------------------------------------


async def t1(stack: Stack, sizes: Sizes) -> Result:
    figures, holds = [], True
    for service in sizes.t1_services:
        n = sizes.artifacts if service == "artifacts" else sizes.events
        settings = stack.settings()
        agent = f"t1{service}"
        await publish_events(stack.nats.url, agent, service, n)
        proc = stack.start(service, settings, "-t1")
        kills, started = 0, time.monotonic()

        async def all_stored(settings: Settings = settings, service: str = service, agent: str = agent,
                             n: int = n) -> bool:  # fmt: skip
            return len((await stored_ids(settings, service, agent))[1]) >= n

        while time.monotonic() - started < 900:
            # The fault's period: a SIGKILL every 2 s, until every event is stored.
            if await poll_until(all_stored, 2, every=1.0):  # a full read of what is stored: not often
                break
            proc.process.send_signal(signal.SIGKILL)
            proc.process.wait(5)
            kills += 1
            proc.restart()
        rows, ids = await stored_ids(settings, service, agent)
        lost, dup = n - len(ids), rows - len(ids)
        holds &= lost == 0 and dup == 0
        figures.append(f"{service}: {n:,} events, {kills} kills, {lost} lost, {dup} dup")
        proc.stop()
    return Result("T1", "SIGKILL a consumer every 2 s, per service", "0 lost, 0 duplicated",
                  "; ".join(figures), holds, "test_durability.py::test_sigkilled_service_loses_nothing_acked")  # fmt: skip


async def t2(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    procs = [stack.start(s, settings, "-t2") for s in ("logs", "tasks", "metrics")]
    agent, n = "t2", sizes.dupes
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream(publish_async_max_pending=4000)
    futures = []
    for service in ("logs", "tasks", "metrics"):
        for i in range(n):
            kind, body, _ = body_for(service, i)
            data = msgspec.json.encode(body)
            for copy in range(3):
                # Copies 1 and 2 share the Nats-Msg-Id (JetStream dedupes); copy 3 has its own,
                # as a retry after the dedupe window would: the service's idempotency catches it.
                msg_id = f"{agent}:{kind}:{i}" + ("" if copy < 2 else ":late")
                futures.append(await js.publish_async(f"agents.{agent}.{kind}", data,
                                                      headers={"Nats-Msg-Id": msg_id}))  # fmt: skip
    await asyncio.gather(*futures)
    await nc.close()
    figures, holds = [], True
    for service in ("logs", "tasks", "metrics"):

        async def complete(service: str = service) -> bool:
            return len((await stored_ids(settings, service, agent))[1]) >= n

        await poll_until(complete, 120)
        rows, ids = await stored_ids(settings, service, agent)
        holds &= rows == n and len(ids) == n
        figures.append(f"{service}: {3 * n:,} sent, {rows:,} stored")
    for p in procs:
        p.stop()
    return Result("T2", "every publish sent 3x (twice within, once past the dedupe window)",
                  "exactly 1 stored each", "; ".join(figures), holds,
                  "test_faults.py::test_t2_…, test_logs.py::test_every_log_published_twice_is_stored_once")  # fmt: skip


async def t3(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    proc = stack.start("logs", settings, "-t3")
    agent, n = "t3", sizes.nats_events
    acked: set[str] = set()
    failed = 0

    async def publisher() -> None:
        nonlocal failed
        async with await AgentClient.connect(stack.nats.url, agent, timeout=5) as client:
            client.publish_retries = 30
            pending: list[tuple[str, asyncio.Future[int]]] = []
            for i in range(n):
                fut = await client.publish(
                    "logs", LogIn(id=f"e{i}", level="info", message="m"), event_id=f"e{i}"
                )
                pending.append((f"e{i}", fut))
                if i % 100 == 0:
                    # A steady agent over about 10 s, so the five kills land mid-stream.
                    await asyncio.sleep(1000 / n)
            for event_id, fut in pending:
                try:
                    await fut
                    acked.add(event_id)
                except Exception:
                    failed += 1

    task = asyncio.create_task(publisher())
    kills = 0
    for _ in range(5):
        # A kill a second, while the publisher still publishes.
        if (await asyncio.wait({task}, timeout=1.0))[0]:
            break
        stack.nats.process.send_signal(signal.SIGKILL)
        stack.nats.process.wait(5)
        await asyncio.to_thread(stack.nats.restart)
        kills += 1
    await task

    async def all_acked_stored() -> bool:
        return acked <= (await stored_ids(settings, "logs", agent))[1]

    await poll_until(all_acked_stored, 120)
    rows, ids = await stored_ids(settings, "logs", agent)
    lost = len(acked - ids)
    proc.stop()
    return Result("T3", f"SIGKILL nats-server {kills}x during {n:,} publishes", "0 acked lost",
                  f"{len(acked):,} acked, {failed} refused to the caller, {lost} acked lost, {rows - len(ids)} dup",
                  lost == 0 and rows == len(ids) and kills == 5, "test_publisher.py::test_a_sigkilled_nats_server_mid_batch_loses_nothing_acked")  # fmt: skip


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def t4(stack: Stack, sizes: Sizes) -> Result:
    figures, holds = [], True
    targets = {"postgres": stack.postgres, "mongo": stack.mongo, "minio": stack.minio}
    targets = {name: server for name, server in targets.items() if name in sizes.t4_stores}
    # Which services a store's outage holds up (FerretDB keeps its data in PostgreSQL).
    affected = {
        "postgres": ("logs", "tasks", "metrics", "artifacts"),
        "mongo": ("logs",),
        "minio": ("artifacts",),
    }
    for name, server in targets.items():
        for seconds in sizes.outages:
            settings = stack.settings()
            procs = {s: stack.start(s, settings, f"-t4{name}{int(seconds)}") for s in SERVICES}
            agent = f"t4{name}{int(seconds)}"
            dead_before = len(await dead_letters(stack.nats.url, agent))
            stop = asyncio.Event()
            counts = dict.fromkeys(SERVICES, 0)

            async def load(
                stop: asyncio.Event = stop, agent: str = agent, counts: dict[str, int] = counts
            ) -> None:
                async with await AgentClient.connect(stack.nats.url, agent, timeout=30) as client:
                    client.publish_retries = 30
                    i = 0
                    while not stop.is_set():
                        for service in SERVICES:
                            kind, body, headers = body_for(service, i)
                            await client.publish(kind, body, event_id=f"e{i}", headers=headers)
                            counts[service] += 1
                        i += 1
                        await helpers.until_set(stop, 0.02)  # ~200 events/s of each kind, until stopped
                    await client.flush()

            loader = asyncio.create_task(load())

            async def stored_since(
                mark: dict[str, int], settings: Settings = settings, agent: str = agent
            ) -> bool:
                """Every service has stored more than `mark` of the load: it is flowing."""
                found = [len((await stored_ids(settings, s, agent))[1]) for s in SERVICES]
                return all(n > mark[s] for n, s in zip(found, SERVICES, strict=True))

            # The load flows into every service before the outage...
            await poll_until(functools.partial(stored_since, dict.fromkeys(SERVICES, 100)), 60)
            server.stop()
            down_at = time.monotonic()
            polls = not_ready = 0
            while time.monotonic() - down_at < seconds:
                # The sampling period: readiness is measured through the whole outage.
                await asyncio.sleep(0.5)
                if time.monotonic() - down_at < 5:
                    continue  # detection: a readiness check's timeout
                for s in affected[name]:
                    polls += 1
                    health_port = int(procs[s].address.rsplit(":", 1)[1])
                    not_ready += not await asyncio.to_thread(ready, health_port)
            await asyncio.to_thread(server.restart)
            # ...and after it: events published after the restart are stored too.
            published = dict(counts)
            await poll_until(functools.partial(stored_since, published), 120)
            stop.set()
            await loader
            missing = 0
            for s in SERVICES:

                async def complete(s: str = s, settings: Settings = settings, agent: str = agent,
                                   counts: dict[str, int] = counts) -> bool:  # fmt: skip
                    return len((await stored_ids(settings, s, agent))[1]) >= counts[s]

                await poll_until(complete, 180)
                _, ids = await stored_ids(settings, s, agent)
                missing += counts[s] - len(ids)
            dead = len(await dead_letters(stack.nats.url, agent)) - dead_before
            # Nothing polled measures nothing: that fails the check instead of passing it.
            share = not_ready / polls if polls else 0.0
            holds &= polls > 0 and missing == 0 and dead == 0 and share == 1.0
            figures.append(f"{name} {seconds:g} s: {sum(counts.values()):,} sent, {missing} lost, {dead} dead, "
                           f"not ready {share:.0%}")  # fmt: skip
            for p in procs.values():
                p.stop()
    return Result("T4", "PostgreSQL, the MongoDB wire server, MinIO each down", "0 lost, 0 dead-lettered, not ready while down",
                  "; ".join(figures), holds, "test_durability.py::test_mongodb_down_20s_…, test_artifacts.py::test_minio_down_20s_…, test_deployment_faults.py")  # fmt: skip


async def t5(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    proc = stack.start("logs", settings, "-t5")
    agent = "t5"
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream(publish_async_max_pending=4000)
    poison = set(random.Random(5).sample(range(10_100), 100))
    futures = []
    for i in range(10_100):
        data = b'{"id": "p%d", "level": "loud", "message": "m"}' % i if i in poison else msgspec.json.encode(
            LogIn(id=f"e{i}", level="info", message="m"))  # fmt: skip
        futures.append(await js.publish_async(f"agents.{agent}.logs", data))
    await asyncio.gather(*futures)
    await nc.close()

    async def complete() -> bool:
        return len((await stored_ids(settings, "logs", agent))[1]) >= 10_000

    await poll_until(complete, 120)
    rows, ids = await stored_ids(settings, "logs", agent)
    letters = await poll_until(lambda: _at_least(dead_letters(stack.nats.url, agent), 100), 60)
    letters = await dead_letters(stack.nats.url, agent)
    with_reason = sum(1 for _, reason in letters if "level" in reason)
    proc.stop()
    return Result("T5", "100 poison messages among 10k", "10k stored, 100 dead letters with reasons",
                  f"{len(ids):,} stored, {len(letters)} dead letters, {with_reason} naming the bad field",
                  len(ids) == 10_000 and rows == 10_000 and len(letters) == 100 and with_reason == 100,
                  "test_logs.py::test_invalid_logs_go_to_deadletter_and_neighbours_are_stored")  # fmt: skip


async def _at_least(found: Awaitable[list[Any]], n: int) -> bool:
    return len(await found) >= n


async def t6(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    proc = stack.start("logs", settings, "-t6")
    agent = "t6"
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    refusals = []
    try:
        await js.publish(f"agents.{agent}.logs", b"x" * (1024 * 1024 + 1))
    except Exception as exc:
        refusals.append(f"1 MiB + 1: {type(exc).__name__}")
    wide = {"id": "wide", "level": "info", "message": "m", "fields": {f"k{i}": i for i in range(10_000)}}
    # Written by hand: an encoder would recurse 1,000 deep.
    tall = (
        b'{"id": "deep", "level": "info", "message": "m", "fields": ' + b'{"d": ' * 1000 + b"1" + b"}" * 1001
    )
    for i in range(100):
        await js.publish(
            f"agents.{agent}.logs", msgspec.json.encode(LogIn(id=f"n{i}", level="info", message="m"))
        )
    for bad in (msgspec.json.encode(wide), tall):
        await js.publish(f"agents.{agent}.logs", bad)
    for i in range(100, 200):
        await js.publish(
            f"agents.{agent}.logs", msgspec.json.encode(LogIn(id=f"n{i}", level="info", message="m"))
        )
    await nc.close()

    async def complete() -> bool:
        return len((await stored_ids(settings, "logs", agent))[1]) >= 200

    await poll_until(complete, 60)
    await poll_until(lambda: _at_least(dead_letters(stack.nats.url, agent), 2), 30)
    letters = await dead_letters(stack.nats.url, agent)
    reasons = [r for _, r in letters]
    _, ids = await stored_ids(settings, "logs", agent)
    proc.stop()
    clear = (len(refusals) == 1 and any("keys in the map" in r for r in reasons)
             and any("nesting deeper" in r for r in reasons))  # fmt: skip
    return Result("T6", "a 1 MiB + 1 body; 10k fields; depth 1,000", "refused with a clear error, neighbours stored",
                  f"{'; '.join(refusals)}; dead letters: {' / '.join(r[:60] for r in reasons)}; neighbours {len(ids)}/200",
                  clear and len(ids) == 200 and not ({"wide", "deep"} & ids), "test_logs_domain.py::test_bad_bodies_on_every_subject_are_deadlettered_and_neighbours_stored")  # fmt: skip


async def t7(stack: Stack, sizes: Sizes) -> Result:
    folder = stack.root / "auth"
    fleet = Fleet(agents=["a", "b"], evaluators=["ev"], frontends=["fe"], consoles=["web"])
    found = generate(fleet, folder)
    # nats-server resolves an include relative to its own config file.
    include = os.path.relpath(folder / "auth.conf", stack.root / "nats-auth")
    server = servers.start_nats(stack.root / "nats-auth", servers.free_port(), servers.free_port(),
                                extra_conf=f'include "{include}"')  # fmt: skip
    classes = {
        "own ingest": "agents.{self}.logs", "other's ingest": "agents.{other}.logs",
        "own rpc": "agents.{self}.rpc.claim", "other's rpc": "agents.{other}.rpc.claim",
        "query": "query.logs", "frontend query": "query.tasks", "eval": "eval.record", "runs": "runs.cancel",
        "stream admin": "$JS.API.STREAM.DELETE.LOGS", "dead letters": "$JS.API.STREAM.MSG.GET.DEADLETTER",
        "deadletter publish": "deadletter.logs", "service api": "$SRV.PING",
        # A mirror pulls from its own LOGS consumer only; nobody but the services from theirs.
        "own consumer": "$JS.API.CONSUMER.MSG.NEXT.LOGS.{self}",
        "the logs service's consumer": "$JS.API.CONSUMER.MSG.NEXT.LOGS.logs",
    }  # fmt: skip
    forbidden = refused = allowed = wrongly_refused = 0
    try:
        for identity in found:
            user, password = read_credentials(folder / "credentials" / f"{identity.user}.json")
            me = identity.user.split("-", 1)[1]
            other = "b" if me == "a" else "a"
            errors: list[str] = []

            async def on_error(exc: Exception, errors: list[str] = errors) -> None:
                errors.append(str(exc))

            inbox = {"agent": f"_INBOX.agents.{me}", "evaluator": "_INBOX.evaluator", "frontend": "_INBOX.frontend",
                     "console": "_INBOX.service.web", "service": f"_INBOX.service.{me}",
                     "mirror": f"_INBOX.mirror.{me}"}[identity.user.split("-")[0]]  # fmt: skip
            nc = await nats.connect(server.url, user=user, password=password, error_cb=on_error,
                                    inbox_prefix=inbox, allow_reconnect=False)  # fmt: skip
            try:
                for subject in classes.values():
                    subject = subject.format(self=me, other=other)
                    permitted = any(_matches(p, subject) for p in identity.publish)
                    await nc.publish(subject, b"{}")
                    # A PING round trip: the server answers a refused publish (-ERR) before the
                    # PONG, and nats-py runs the error callback as it reads the -ERR.
                    await nc.flush()

                    def seen(subject: str = subject, errors: list[str] = errors) -> bool:
                        return any(subject.lower() in e.lower() for e in errors)

                    was_refused = seen()
                    if not permitted and not was_refused:  # a late -ERR still counts, within 2 s
                        was_refused = bool(await poll_until(helpers.as_async(seen), 2))
                    if permitted:
                        allowed += 1
                        wrongly_refused += was_refused
                    else:
                        forbidden += 1
                        refused += was_refused
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()
    finally:
        server.stop()
    # No forbidden subject tried, or none allowed: nothing shown, so the check fails.
    share = refused / forbidden if forbidden else 0.0
    return Result("T7", f"{len(found)} identities x {len(classes)} subject classes, auth on",
                  "100 % of forbidden refused", f"{refused}/{forbidden} forbidden refused ({share:.0%}); "
                  f"{allowed - wrongly_refused}/{allowed} allowed passed",
                  forbidden > 0 and allowed > 0 and share == 1.0 and wrongly_refused == 0,
                  "test_auth.py (each role, the console)")  # fmt: skip


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


async def t10(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    procs = [stack.start(s, settings, "-t10") for s in SERVICES]
    injections = [{"$where": "sleep(1000)"}, {"$ne": None}, {"$gt": ""}, [{"$ne": None}]]
    total = refused = 0
    nc = await nats.connect(stack.nats.url)
    leaks = []
    try:
        for endpoint in contract.ENDPOINTS:
            if endpoint.agent_only or not endpoint.subject.startswith("query."):
                continue
            for name in endpoint.request.__struct_fields__:
                for value in injections:
                    body: dict[str, Any] = {name: value}
                    if name != "name" and "name" in endpoint.request.__struct_fields__:
                        body["name"] = "reward"  # a required field, so only the injected one is wrong
                    for required in ("agent_id", "task_id", "run_id", "conversation_id", "file_id"):
                        if required != name and required in endpoint.request.__struct_fields__:
                            body.setdefault(required, "x")
                    total += 1
                    try:
                        reply = await nc.request(endpoint.subject, msgspec.json.encode(body), timeout=10)
                    except Exception as exc:
                        leaks.append(f"{endpoint.subject}: {type(exc).__name__}")
                        continue
                    code = (reply.headers or {}).get("Nats-Service-Error-Code")
                    if code == "400":
                        refused += 1
                    else:
                        leaks.append(f"{endpoint.subject}.{name}={value!r} → {code or 200}")
    finally:
        await nc.close()
        for p in procs:
            p.stop()
    return Result("T10", "operator injection in every field of every query", "100 % → 400",
                  f"{refused}/{total} refused with 400" + (f"; not: {leaks[:3]}" if leaks else ""),
                  refused == total, "test_logs.py::test_bad_query_gets_400_with_the_error_convention, test_tasks.py::test_bad_task_requests_get_400")  # fmt: skip


async def t11(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    procs = [stack.start("tasks", settings, f"-t11-{i}") for i in range(2)]
    n = sizes.runs
    async with await EvaluatorClient.connect(stack.nats.url) as evaluator:
        for i in range(n):
            await evaluator.submit_run({"n": i}, run_id=f"r{i}", max_attempts=100)
    workers: list[subprocess.Popen[bytes]] = []

    def spawn(i: int) -> subprocess.Popen[bytes]:
        with open(stack.root / f"worker{i}.log", "ab") as log:  # the child has its own copy
            return subprocess.Popen([sys.executable, "-m", "tests.faults", stack.nats.url, f"w{i}"],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    workers = [spawn(i) for i in range(4)]  # 4 processes x 5 workers = 20
    conn = await asyncpg.connect(settings.postgres_url)
    kills, started = 0, time.monotonic()
    try:

        async def none_left() -> bool:
            return await conn.fetchval("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')") == 0

        while time.monotonic() - started < 1200:
            # A worker is SIGKILLed every 3 s, until no run is left.
            if await poll_until(none_left, 3):
                break
            victim = random.randrange(len(workers))
            workers[victim].kill()
            workers[victim].wait()
            workers[victim] = spawn(victim + 10 * (kills + 1))
            kills += 1
        stuck = await conn.fetchval("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
        done = await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        double = await conn.fetchval("SELECT count(*) FROM (SELECT run_id FROM run_events WHERE type = 'succeeded' "
                                     "GROUP BY run_id HAVING count(*) > 1) d")  # fmt: skip
        expired = await conn.fetchval("SELECT count(*) FROM run_events WHERE type = 'lease_expired'")
    finally:
        await conn.close()
        for w in workers:
            w.kill()
            w.wait()
        for p in procs:
            p.stop()
    return Result("T11", f"20 workers, {n:,} runs, stalls past the lease, {kills} worker SIGKILLs",
                  "0 double completion, 0 stuck", f"{done:,} succeeded, {double} double, {stuck} stuck, "
                  f"{expired} leases expired and re-run", double == 0 and stuck == 0 and done == n,
                  "test_runs.py::test_20_workers_10000_runs_stalling_quarter_completes_each_exactly_once")  # fmt: skip


async def worker_process(url: str, name: str) -> None:
    """Five claiming workers; one claim in 20 stalls past its lease before releasing."""

    async def work(i: int) -> None:
        rng = random.Random(f"{name}{i}")
        async with await AgentClient.connect(url, f"{name}x{i}", timeout=10) as agent:
            while True:
                try:
                    claimed = await agent.call(contract.CLAIM, ClaimRun(lease_seconds=2))
                except AgentstoreError:
                    await asyncio.sleep(0.2)  # the service is busy: back off
                    continue
                if claimed.run is None:
                    await asyncio.sleep(0.2)  # the queue is empty for now
                    continue
                await asyncio.sleep(2.5 if rng.random() < 0.05 else 0.01)  # the work; sometimes a stall
                with contextlib.suppress(AgentstoreError):  # a stalled worker is fenced: 409
                    await agent.call(contract.RELEASE, ReleaseRun(run_id=claimed.run.run_id, status="succeeded",
                                                                  attempt=claimed.run.attempt))  # fmt: skip

    await asyncio.gather(*(work(i) for i in range(5)))


async def t13(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    proc = stack.start("artifacts", settings, "-t13")
    refused = total = 0
    nc = await nats.connect(stack.nats.url)
    try:
        async with await AgentClient.connect(stack.nats.url, "owner") as owner:
            file_id = await owner.screenshot(b"secret", "s.png")
            await owner.flush()
        async with await EvaluatorClient.connect(stack.nats.url) as ev:
            url = (await poll_until(lambda: _file_url(ev, file_id, 1), 30)).url
            # Refused once its 1 s expiry has passed: polled with a deadline, counted refused
            # only if it is by then.
            total += 1
            refused += bool(await poll_until(lambda: asyncio.to_thread(_http_refused, url), 10))
        traversal = ["../x", "owner/../../etc/passwd", "owner/t/..%2f..%2fx", "owner/t/%2e%2e/x", "/abs",
                     "owner/t/a\\..\\b", "owner/t/x\x00y", "other/t/1-x.png", "owner/" + "a" * 1100]  # fmt: skip
        js = nc.jetstream()
        for i, key in enumerate(traversal):
            total += 1
            await js.publish("agents.owner.uploads",
                             msgspec.json.encode({"id": f"u{i}", "object_key": key, "name": "x"}))  # fmt: skip
        for rpc, body in (("agents.other.rpc.query.file_url", {"file_id": file_id}),
                          ("agents.other.rpc.presign", {"name": "../../x", "content_type": "image/png"})):  # fmt: skip
            total += 1
            reply = await nc.request(rpc, msgspec.json.encode(body), timeout=10)
            refused += (reply.headers or {}).get("Nats-Service-Error-Code") in ("400", "403")
        letters = await poll_until(
            lambda: _at_least(dead_letters(stack.nats.url, "owner"), len(traversal)), 30
        )
        refused += len(await dead_letters(stack.nats.url, "owner")) if letters else 0
    finally:
        await nc.close()
        proc.stop()
    return Result("T13", "presign: expired URL, traversal keys, other agents' keys", "100 % refused",
                  f"{refused}/{total} refused", refused == total, "test_artifacts.py::test_expired_url_is_refused, …_other_agents_prefixes, …_bad_names_…")  # fmt: skip


async def _file_url(ev: EvaluatorClient, file_id: str, seconds: int) -> Any:
    with contextlib.suppress(AgentstoreError):
        return await ev.query("file_url", file_id=file_id, expires_seconds=seconds)
    return None


def _http_refused(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code in (400, 403)


async def t16(stack: Stack, sizes: Sizes) -> Result:
    ports = [(servers.free_port(), servers.free_port(), servers.free_port()) for _ in range(3)]
    routes = ", ".join(f"nats://127.0.0.1:{r}" for _, _, r in ports)

    def start(i: int) -> Server:
        client, http, route = ports[i]
        conf = (f'server_name: "n{i}"\ncluster {{\n  name: "agentstore"\n  listen: "127.0.0.1:{route}"\n'
                f"  routes: [{routes}]\n}}")  # fmt: skip
        return servers.start_nats(stack.root / f"c{i}", client, http, extra_conf=conf)

    nodes = list(await asyncio.gather(*(asyncio.to_thread(start, i) for i in range(3))))
    url = ",".join(n.url for n in nodes)
    settings = stack.settings(nats_url=url, stream_replicas=3)
    proc = stack.start("logs", settings, "-t16")
    agent, n = "t16", sizes.cluster_events
    acked: set[str] = set()
    try:
        async with await AgentClient.connect(url, agent, window=1000, timeout=5) as client:
            client.publish_retries = 30
            futures = []
            killed = []
            for i in range(n):
                futures.append((f"e{i}", await client.publish("logs", LogIn(id=f"e{i}", level="info", message="m"),
                                                               event_id=f"e{i}")))  # fmt: skip
                if i == n // 3:  # a follower first, then (once it is back) the stream leader
                    killed.append(await _kill_node(nodes, url, leader=False))
                if i == 2 * n // 3:
                    killed.append(await _kill_node(nodes, url, leader=True))
            for event_id, fut in futures:
                with contextlib.suppress(Exception):
                    await fut
                    acked.add(event_id)

        async def stored() -> bool:
            return acked <= (await stored_ids(settings, "logs", agent))[1]

        await poll_until(stored, 120)
        rows, ids = await stored_ids(settings, "logs", agent)
    finally:
        proc.stop()
        for node in nodes:
            node.stop()
    lost = len(acked - ids)
    return Result("T16", f"3-node NATS, killed {' then '.join(killed)} mid-ingest", "0 acked lost",
                  f"{len(acked):,}/{n:,} acked, {lost} acked lost, {rows - len(ids)} dup", lost == 0,
                  "test_cluster.py::test_killing_one_node_during_20000_event_ingest_loses_nothing_acked")  # fmt: skip


async def _kill_node(nodes: list[Server], url: str, *, leader: bool) -> str:
    nc = await nats.connect(servers=url.split(","))
    try:
        info = await nc.jetstream().stream_info("LOGS")
        assert info.cluster is not None, "LOGS is not replicated"
        name = info.cluster.leader if leader else (info.cluster.replicas or [])[0].name
    finally:
        await nc.close()
    index = int(str(name).lstrip("n"))
    node = nodes[index]
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(5)
    # Down until the cluster has noticed: a leader on another node, the killed one a replica
    # that is offline or behind (bounded: the case goes on either way, as a real outage would).
    nc = await nats.connect(servers=url.split(","))
    try:

        async def noticed() -> bool:
            try:
                cluster = (await nc.jetstream().stream_info("LOGS")).cluster
            except Exception:
                return False  # no leader to answer yet
            if cluster is None or not cluster.leader or cluster.leader == name:
                return False
            return leader or any(
                r.name == name and (r.offline or not r.current) for r in cluster.replicas or []
            )

        await poll_until(noticed, 30)
    finally:
        await nc.close()
    await asyncio.to_thread(node.restart)
    return f"{'leader' if leader else 'follower'} {name}"


async def t17(stack: Stack, sizes: Sizes) -> Result:
    mount = stack.root / "tiny"
    mount.mkdir()
    try:
        await asyncio.to_thread(subprocess.run, ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                                check=True, capture_output=True)  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        return Result("T17", "disk full on the JetStream store", "errors, nothing acked lost, recovery",
                      f"not run: cannot mount a tmpfs here ({exc})", False)  # fmt: skip
    server = servers.start_nats(mount / "nats", servers.free_port(), servers.free_port())
    settings = stack.settings(nats_url=server.url)
    proc = stack.start("logs", settings, "-t17")
    agent = "t17"
    acked: set[str] = set()
    errors = 0
    first_error = ""
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        blob = "x" * 20_000
        i = 0
        while errors < 20 and i < 5000:
            body = msgspec.json.encode(LogIn(id=f"e{i}", level="info", message=blob))
            try:
                await js.publish(
                    f"agents.{agent}.logs", body, headers={"Nats-Msg-Id": f"{agent}:e{i}"}, timeout=5
                )
                acked.add(f"e{i}")
            except Exception as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:90]
            i += 1
        await nc.close()
        # Space returns. JetStream sized its store from the disk when it started, so the
        # operator's step is a restart of nats-server; what was acked is on disk.
        await asyncio.to_thread(subprocess.run, ["mount", "-o", "remount,size=256m", str(mount)], check=True)
        await asyncio.to_thread(server.restart)
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        recovered = 0
        for j in range(50):
            with contextlib.suppress(Exception):
                await js.publish(f"agents.{agent}.logs",
                                 msgspec.json.encode(LogIn(id=f"r{j}", level="info", message="after")),
                                 headers={"Nats-Msg-Id": f"{agent}:r{j}"}, timeout=5)  # fmt: skip
                acked.add(f"r{j}")
                recovered += 1
        await nc.close()

        async def stored() -> bool:
            return acked <= (await stored_ids(settings, "logs", agent))[1]

        await poll_until(stored, 120)
        _, ids = await stored_ids(settings, "logs", agent)
    finally:
        proc.stop()
        server.stop()
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(mount)], check=False)
    lost = len(acked - ids)
    return Result("T17", "disk full on the JetStream store dir (a 24 MiB tmpfs), then 256 MiB",
                  "publishers get errors, nothing acked lost, recovery after space returns",
                  f"{len(acked):,} acked, {errors} publish errors ({first_error}), {lost} acked lost, "
                  f"{recovered}/50 published after space returned and a nats-server restart", errors > 0 and lost == 0 and recovered == 50,
                  "test_faults.py::test_t17_…")  # fmt: skip


async def t18(stack: Stack, sizes: Sizes) -> Result:
    settings = stack.settings()
    procs = [stack.start(s, settings, "-t18") for s in ("logs", "tasks")]
    agent = "t18"
    ahead = datetime.now(UTC) + timedelta(hours=1)
    async with await AgentClient.connect(stack.nats.url, agent) as client:
        for i in range(100):
            await client.send(
                MemoryIn(id=f"m{i}", kind="note", content="from the future", key=f"k{i}", ts=ahead)
            )
            await client.send(TaskIn(id=f"t{i}", status="running", ts=ahead))
        for i in range(100):  # later, from a correct clock
            await client.send(
                MemoryIn(id=f"n{i}", kind="note", content="now", key=f"k{i}", ts=datetime.now(UTC))
            )
            await client.send(TaskIn(id=f"t{i}", status="completed", ts=datetime.now(UTC)))
        written = await client.flush()
    async with await EvaluatorClient.connect(stack.nats.url) as ev:
        memories = [
            m async for m in ev.pages("memories", agent_ids=[agent], after=written["LOGS"].as_after())
        ]
        tasks = [t async for t in ev.pages("tasks", agent_ids=[agent], after=written["TASKS"].as_after())]
    dead = await dead_letters(stack.nats.url, agent)
    for p in procs:
        p.stop()
    future_won = sum(1 for m in memories if m.content == "from the future")
    running = sum(1 for t in tasks if t.status == "running")
    holds = len(memories) == 100 and future_won == 100 and running == 100 and not dead
    return Result("T18", "clock skew: an agent 1 h ahead writing keyed memories and tasks",
                  "newest-wins by ts as documented, nothing rejected silently",
                  f"{len(memories)} keys: the +1 h write kept for {future_won}; tasks kept at +1 h state: {running}/100; "
                  f"{len(dead)} dead letters", holds, "test_faults.py::test_t18_…, test_logs_domain.py::test_keyed_memory_keeps_the_newest_…")  # fmt: skip


CASES: dict[str, Callable[[Stack, Sizes], Awaitable[Result]]] = {
    "T1": t1, "T2": t2, "T3": t3, "T4": t4, "T5": t5, "T6": t6, "T7": t7,
    "T10": t10, "T11": t11, "T13": t13, "T16": t16, "T17": t17, "T18": t18,
}  # fmt: skip


if __name__ == "__main__":  # T13's worker processes: python -m tests.faults URL NAME
    asyncio.run(worker_process(sys.argv[1], sys.argv[2]))
