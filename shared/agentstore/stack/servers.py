"""Starting one real server on 127.0.0.1 and waiting until it answers.

Used by both the local stack (`agentstore up`) and the test fixtures, so the
tests run the servers exactly as users do.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentstore.config import Settings
from agentstore.errors import StackError
from agentstore.stack import binaries

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, what: str, env_var: str) -> None:
    with socket.socket() as sock:
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


def _wait(server: Server, ready: Callable[[], bool], timeout: float) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-1500:]
            raise StackError(
                f"{server.name} exited at start (code {server.process.returncode}):\n{tail}"
            )
        try:
            if ready():
                return server
        except OSError:
            pass
        time.sleep(0.05)  # polling a starting server's port
    server.kill()
    raise StackError(f"{server.name} did not answer within {timeout:g} s; see {server.log_path}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


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
    proc = _spawn(
        "nats", [str(binaries.nats_server()), "-c", str(conf)], data / "nats.log", detach=detach
    )
    server = Server("nats", proc, f"nats://{HOST}:{port}", f"{HOST}:{port}", data / "nats.log")
    return _wait(
        server, lambda: _http_ok(f"http://{HOST}:{http_port}/healthz?js-enabled-only=true"), 20
    )


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
    proc = _spawn("postgres", argv, log_path, detach=detach, user=user)
    url = f"postgresql://postgres@{HOST}:{port}/{database}"
    server = Server("postgres", proc, url, f"{HOST}:{port}", log_path)
    isready = [str(bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(port)]
    _wait(server, lambda: subprocess.run(isready).returncode == 0, 30)
    created = subprocess.run(
        [str(bin_dir / "createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", database],
        capture_output=True,
        text=True,
    )
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise StackError(f"createdb {database} failed: {created.stderr.strip()}")
    return server


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


def start_mongo(data: Path, port: int, debug_port: int, *, detach: bool = False) -> Server:
    """FerretDB 1.24 on SQLite, or a real mongod when one is on PATH."""
    data.mkdir(parents=True, exist_ok=True)
    mongod = binaries.mongod()
    if mongod is not None:
        (data / "db").mkdir(exist_ok=True)
        argv = [str(mongod), "--bind_ip", HOST, "--port", str(port), "--dbpath", str(data / "db")]
        name = "mongod"
    else:
        (data / "sqlite").mkdir(exist_ok=True)
        argv = [
            str(binaries.ferretdb()),
            "--handler=sqlite",
            f"--sqlite-url=file:{data / 'sqlite'}/",
            f"--listen-addr={HOST}:{port}",
            f"--debug-addr={HOST}:{debug_port}",
            f"--state-dir={data}",
            "--telemetry=disable",
            "--log-level=WARN",
        ]
        name = "ferretdb"
    proc = _spawn(name, argv, data / f"{name}.log", detach=detach)
    server = Server(name, proc, f"mongodb://{HOST}:{port}", f"{HOST}:{port}", data / f"{name}.log")
    return _wait(server, lambda: _tcp_open(port), 30)


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
    proc = _spawn("minio", argv, data / "minio.log", detach=detach, env=env)
    server = Server("minio", proc, f"{HOST}:{port}", f"{HOST}:{port}", data / "minio.log")
    return _wait(server, lambda: _http_ok(f"http://{HOST}:{port}/minio/health/live"), 60)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a service process these settings."""
    return {
        key.upper(): str(value) for key, value in settings.model_dump().items() if value is not None
    }


def start_service(
    name: str, env: dict[str, str], log_path: Path, health_port: int, *, detach: bool = False
) -> Server:
    """`python -m agentstore serve NAME` as its own process, ready when /readyz answers 200."""
    argv = [sys.executable, "-m", "agentstore", "serve", name]
    proc = _spawn(name, argv, log_path, detach=detach, env={**env, "HEALTH_PORT": str(health_port)})
    address = f"{HOST}:{health_port}"
    server = Server(name, proc, f"http://{address}", address, log_path)
    return _wait(server, lambda: _http_ok(f"http://{address}/readyz"), 60)
