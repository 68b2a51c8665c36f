"""`agentstore up | down | status | run`: the local stack and the four services.

State lives in ``.agentstore/`` (git-ignored): ``stack.env`` with the
connection settings, ``run/<name>.pid`` per process, ``data/`` and ``logs/``.
``down`` stops exactly the processes whose pid files ``up`` wrote.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentstore.errors import StackError
from agentstore.private import write_private
from agentstore_server.devstack import binaries, servers
from agentstore_server.devstack.supervisor import PAUSE_FILE, Recipe, alive, owns, spawn

SUPERVISOR_ARGV = [sys.executable, "-m", "agentstore", "supervise"]
SERVICES = ("logs", "tasks", "artifacts", "metrics", "web", "otlp", "identity")
# Under AGENTSTORE_AUTH=1, the console's login token (WEB_LOGIN_TOKEN), in the auth folder.
WEB_TOKEN_FILE = "web.token"
# Started only under AGENTSTORE_AUTH=1 (there is nobody to identify without it).
AUTH_ONLY = ("identity",)


@dataclass(frozen=True)
class Ports:
    nats: int
    nats_http: int
    postgres: int
    mongo: int
    mongo_debug: int
    minio: int
    minio_console: int
    web: int
    otlp: int
    health: dict[str, int]

    @classmethod
    def from_env(cls) -> Ports:
        def port(name: str, default: int) -> int:
            return int(os.environ.get(f"AGENTSTORE_{name}_PORT", default))

        return cls(
            nats=port("NATS", 4222),
            nats_http=port("NATS_HTTP", 8222),
            postgres=port("POSTGRES", 5432),
            mongo=port("MONGO", 27017),
            mongo_debug=port("MONGO_DEBUG", 27018),
            minio=port("MINIO", 9000),
            minio_console=port("MINIO_CONSOLE", 9001),
            web=port("WEB", 8080),
            otlp=port("OTLP", 4318),
            health={name: port(f"{name.upper()}_HEALTH", 8091 + i) for i, name in enumerate(SERVICES)},
        )


class Stack:
    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or Path(os.environ.get("AGENTSTORE_HOME", ".agentstore"))).resolve()
        self.run_dir = self.home / "run"
        self.data = self.home / "data"
        self.logs = self.home / "logs"
        self.env_file = self.home / "stack.env"
        self.ports = Ports.from_env()
        # AGENTSTORE_AUTH=1 (make up AUTH=1): NATS with per-identity permissions.
        self.auth = os.environ.get("AGENTSTORE_AUTH", "") not in ("", "0")
        # AGENTSTORE_S3=seaweedfs (make up S3=seaweedfs): SeaweedFS instead of MinIO, on the same port.
        self.s3 = os.environ.get("AGENTSTORE_S3") or "minio"
        if self.s3 not in ("minio", "seaweedfs"):
            raise StackError(f"AGENTSTORE_S3={self.s3!r}: choose minio (the default) or seaweedfs")

    # -- pid files ---------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The live pid of `name`, only if that process is the one we started (its command
        line matches the recorded one): a pid reused by another program is not ours."""
        try:
            pid = int(self._pid_file(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if not alive(pid):
            return None
        recipe = Recipe.load(self.run_dir / f"{name}.json")
        return pid if recipe is None or owns(pid, recipe.argv) else None

    def _record(self, name: str, server: servers.Server) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = Recipe.load(self.run_dir / f"{name}.json")
        Recipe(
            name, server.argv, server.env, str(server.log_path), server.address, server.user,
            restarts=previous.restarts if previous else 0,
        ).save(self.run_dir)  # fmt: skip
        self._pid_file(name).write_text(f"{server.pid} {server.address}\n")

    def restarts(self, name: str) -> int:
        recipe = Recipe.load(self.run_dir / f"{name}.json")
        return recipe.restarts if recipe else 0

    # -- the supervisor ----------------------------------------------------------
    def start_supervisor(self) -> int:
        """One detached `agentstore supervise` for this stack (kept if already running)."""
        pid = self.pid("supervisor")
        if pid is not None:
            return pid
        # Spawned like any recorded process, but its recipe is not saved: the supervisor
        # does not restart itself; `up` does.
        recipe = Recipe("supervisor", SUPERVISOR_ARGV, {"AGENTSTORE_HOME": str(self.home)},
                        str(self.logs / "supervisor.log"), "-")  # fmt: skip
        pid = spawn(recipe)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._pid_file("supervisor").write_text(f"{pid} -\n")
        return pid

    def stop_supervisor(self) -> None:
        pid = self.pid("supervisor")
        if pid is not None and owns(pid, SUPERVISOR_ARGV):
            _terminate(pid, timeout=10)
        self._pid_file("supervisor").unlink(missing_ok=True)

    def _address(self, name: str) -> str:
        try:
            return self._pid_file(name).read_text().split()[1]
        except (OSError, IndexError):
            return "-"

    # -- up ------------------------------------------------------------------
    def up(self) -> dict[str, str]:
        """Start whatever is not running, leave what runs; idempotent. Returns the connection
        settings. The supervisor pauses while `up` works (one authority at a time: it
        would otherwise race `up` to restart the same process), then watches everything."""
        paused = self.run_dir / PAUSE_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)
        paused.touch()
        try:
            settings = self._up()
        finally:
            paused.unlink(missing_ok=True)
        self.start_supervisor()
        return settings

    def _up(self) -> dict[str, str]:
        p = self.ports
        settings = {
            "NATS_URL": f"nats://{servers.HOST}:{p.nats}",
            "POSTGRES_URL": f"postgresql://postgres@{servers.HOST}:{p.postgres}/agentstore",
            "MONGODB_URL": os.environ.get("MONGODB_URL") or f"mongodb://{servers.HOST}:{p.mongo}",
            "S3_ENDPOINT": f"{servers.HOST}:{p.minio}",
            "S3_ACCESS_KEY": servers.S3_ACCESS_KEY,
            "S3_SECRET_KEY": servers.S3_SECRET_KEY,
            "WEB_URL": f"http://{servers.HOST}:{p.web}",
            # OTEL_EXPORTER_OTLP_ENDPOINT for agents instrumented with OpenTelemetry.
            "OTLP_URL": f"http://{servers.HOST}:{p.otlp}",
        }
        nats_conf = ""
        service_env: dict[str, dict[str, str]] = {name: {} for name in SERVICES}
        if self.auth:
            nats_conf, service_env, evaluator = self._auth()
            settings.update(evaluator)
        self._ensure(
            "nats",
            p.nats,
            "AGENTSTORE_NATS_PORT",
            lambda: servers.start_nats(
                self.data / "nats", p.nats, p.nats_http, detach=True, extra_conf=nats_conf
            ),
        )
        self._ensure(
            "postgres",
            p.postgres,
            "AGENTSTORE_POSTGRES_PORT",
            lambda: servers.start_postgres(self.data / "postgres", p.postgres, detach=True),
        )
        if not os.environ.get("MONGODB_URL"):
            # FerretDB keeps its data in the stack's PostgreSQL (database `ferretdb`),
            # whose backend pushes equality filters down.
            ferret_pg = servers.create_database(f"{servers.HOST}:{p.postgres}", "ferretdb")
            self._ensure(
                "mongo",
                p.mongo,
                "AGENTSTORE_MONGO_PORT",
                lambda: servers.start_mongo(
                    self.data / "mongo", p.mongo, p.mongo_debug, postgres_url=ferret_pg, detach=True
                ),
            )
            if binaries.mongod() is None:
                # FerretDB on the stack's PostgreSQL: the logs service reads its tables in SQL.
                settings["MONGODB_SQL_URL"] = ferret_pg
        if self.s3 == "seaweedfs":
            self._ensure(
                "seaweedfs",
                p.minio,
                "AGENTSTORE_MINIO_PORT",
                lambda: servers.start_seaweedfs(self.data / "seaweedfs", p.minio, detach=True),
            )
        else:
            self._ensure(
                "minio",
                p.minio,
                "AGENTSTORE_MINIO_PORT",
                lambda: servers.start_minio(self.data / "minio", p.minio, p.minio_console, detach=True),
            )
        self.home.mkdir(parents=True, exist_ok=True)
        # Owner-only: it holds the stack's passwords (and, under AUTH=1, the evaluator's login).
        write_private(self.env_file, "".join(f"{k}={v}\n" for k, v in settings.items()))
        if self.pid("web") is None:
            servers.check_port_free(p.web, "web console", "AGENTSTORE_WEB_PORT")
        if self.pid("otlp") is None:
            servers.check_port_free(p.otlp, "OTLP receiver", "AGENTSTORE_OTLP_PORT")
        service_env["web"].update({"WEB_PORT": str(p.web)})
        service_env["otlp"].update({"OTLP_PORT": str(p.otlp)})
        if os.environ.get("WEB_EVALUATOR"):
            # `make up WEB_EVALUATOR=evaluator`: the console's write actions log in as it.
            service_env["web"]["WEB_EVALUATOR"] = os.environ["WEB_EVALUATOR"]
        for name in SERVICES:
            if name in AUTH_ONLY and not self.auth:
                continue
            self._ensure_service(name, {**settings, **service_env[name]})
        return settings

    def _ensure(self, name: str, port: int, env_var: str, start: Callable[[], servers.Server]) -> None:
        if self.pid(name) is not None:
            return
        servers.check_port_free(port, name, env_var)
        server = start()
        self._record(name, server)

    def _ensure_service(self, name: str, settings: dict[str, str]) -> None:
        port = self.ports.health[name]
        log_path = self.logs / f"{name}.log"
        self._ensure(
            name,
            port,
            f"AGENTSTORE_{name.upper()}_HEALTH_PORT",
            lambda: servers.start_service(name, settings, log_path, port, detach=True),
        )

    def _auth(self) -> tuple[str, dict[str, dict[str, str]], dict[str, str]]:
        """NATS authorization for the fleet in `fleet.json` (made once, kept across `up`s).

        Returns the nats-server config lines, each service's NATS_USER/NATS_PASSWORD,
        and the evaluator's for `stack.env` (so the CLI can query).
        """
        from agentstore.auth import (
            ENROLLMENT_FILE,
            Fleet,
            generate,
            load_fleet,
            read_credentials,
            read_secrets,
        )

        folder = self.home / "auth"
        fleet_file = self.home / "fleet.json"
        if not fleet_file.exists():
            fleet_file.parent.mkdir(parents=True, exist_ok=True)
            fleet_file.write_text(
                '{"agents": ["a1", "a2"], "evaluators": ["evaluator"], "frontends": ["frontend"]}\n'
            )
        if not (folder / "auth.conf").exists() or not (folder / ENROLLMENT_FILE).exists():
            generate(load_fleet(fleet_file), folder)  # (a folder from before run-time identities: anew)
        fleet: Fleet = load_fleet(fleet_file)

        def creds(user: str, prefix: str = "NATS") -> dict[str, str]:
            name, password = read_credentials(folder / "credentials" / f"{user}.json")
            return {f"{prefix}_USER": name, f"{prefix}_PASSWORD": password}

        services = {name: creds(f"service-{name}") for name in SERVICES if name != "web"}
        # The console logs in as the fleet's first console identity (frontend + read-only).
        services["web"] = creds(f"console-{fleet.consoles[0]}") if fleet.consoles else {}
        keys = read_secrets(folder)
        # OTLP exports then need the agent's own token (bound to the agent they are for).
        services["otlp"]["AGENTSTORE_ENROLLMENT_TOKEN"] = keys.enrollment
        # The console asks for a login; the operator's token is kept beside the other secrets.
        web_token = folder / WEB_TOKEN_FILE
        if not web_token.exists():
            write_private(web_token, secrets.token_urlsafe(24) + "\n")
        services["web"]["WEB_LOGIN_TOKEN"] = web_token.read_text().strip()
        services["identity"].update(
            {**creds("identity", "IDENTITY_NATS"), **creds("system", "SYSTEM_NATS"),
             "IDENTITY_ISSUER_SEED": keys.issuer_seed, "AGENTSTORE_ENROLLMENT_TOKEN": keys.enrollment}
        )  # fmt: skip
        evaluator = creds(f"evaluator-{fleet.evaluators[0]}") if fleet.evaluators else {}
        # Clients pick their own identity's file from here (NatsSettings.as_identity); an agent
        # with none enrolls with the token (the identity service issues its identity).
        evaluator["AGENTSTORE_CREDENTIALS"] = str((folder / "credentials").resolve())
        evaluator["AGENTSTORE_ENROLLMENT_TOKEN"] = keys.enrollment
        # nats-server resolves includes relative to its own config file.
        include = os.path.relpath(folder / "auth.conf", self.data / "nats")
        return f'include "{include}"', services, evaluator

    # -- down ----------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop exactly what `up` started (the supervisor first, so nothing comes back, then
        services, then servers); idempotent. A pid whose command line is not the recorded
        one belongs to someone else now and is left alone."""
        self.stop_supervisor()
        stopped = []
        for name in (*SERVICES, "minio", "seaweedfs", "mongo", "postgres", "nats"):
            pid = self.pid(name)
            if pid is not None:
                _terminate(pid, timeout=30)
                stopped.append(name)
            self._pid_file(name).unlink(missing_ok=True)
            (self.run_dir / f"{name}.json").unlink(missing_ok=True)
        return stopped

    # -- status --------------------------------------------------------------
    def status(self) -> list[dict[str, str]]:
        rows = []
        started = [s for s in SERVICES if s not in AUTH_ONLY or self.auth or self.pid(s) is not None]
        for name in ("nats", "postgres", "mongo", self.s3, *started):
            pid = self.pid(name)
            address = self._address(name)
            if pid is None:
                health = "stopped"
            elif name in SERVICES:
                health = "ready" if _ready(address) else "not ready"
            else:
                health = "running"
            rows.append({"name": name, "pid": str(pid or "-"), "address": address, "health": health,
                         "restarts": str(self.restarts(name))})  # fmt: skip
        supervisor = self.pid("supervisor")
        rows.append({"name": "supervisor", "pid": str(supervisor or "-"), "address": "-",
                     "health": "running" if supervisor else "stopped", "restarts": "-"})  # fmt: skip
        return rows


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for a process to exit
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def _ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# Every port `up` binds, named as Ports.from_env reads them.
PORT_NAMES = (
    "NATS", "NATS_HTTP", "POSTGRES", "MONGO", "MONGO_DEBUG", "MINIO", "MINIO_CONSOLE", "WEB", "OTLP"
)  # fmt: skip


def private_stack(home: Path) -> tuple[Callable[[], dict[str, str]], Callable[[], list[str]]]:
    """A whole stack in `home` on free ports, for tests of agents (the SDK's pytest plugin finds
    this through the entry point `agentstore.stack:private`): (start, stop). `start` returns
    the settings `up` wrote (NATS_URL, WEB_URL, ...); a failed start stops what it started."""
    env = {f"AGENTSTORE_{name}_PORT": str(servers.free_port()) for name in PORT_NAMES}
    env |= {f"AGENTSTORE_{s.upper()}_HEALTH_PORT": str(servers.free_port()) for s in SERVICES}
    env["AGENTSTORE_HOME"] = str(home)

    def in_env(action: Callable[[Stack], object]) -> object:
        saved = dict(os.environ)
        os.environ.update(env)
        os.environ.pop("MONGODB_URL", None)  # a private stack runs its own MongoDB-wire server
        try:
            return action(Stack(home))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start() -> dict[str, str]:
        def up(stack: Stack) -> dict[str, str]:
            try:
                return stack.up()
            except BaseException:
                stack.down()
                raise

        return in_env(up)  # type: ignore[return-value]

    def stop() -> list[str]:
        return in_env(lambda stack: stack.down())  # type: ignore[return-value]

    return start, stop
