"""TLS to NATS: a service connects to a TLS-only nats-server with the CA it is given."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agentstore.bus.connect import NatsSettings, connect_nats
from agentstore.errors import ConfigError
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import running
from agentstore_server.logs.service import SPEC as LOGS
from tests.conftest import Stack, make_settings


def make_certs(folder: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "1", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    make_certs(tmp_path)
    conf = f'tls {{\n  cert_file: "{tmp_path / "server.pem"}"\n  key_file: "{tmp_path / "server.key"}"\n}}'
    server = servers.start_nats(tmp_path / "nats", servers.free_port(), servers.free_port(), extra_conf=conf)
    yield server, tmp_path / "ca.pem"
    server.stop()


async def test_service_talks_tls_with_the_given_ca_and_refuses_without(
    tls_nats: tuple[Server, Path], stack_servers: Stack
) -> None:
    server, ca = tls_nats
    url = server.url.replace("nats://", "tls://")
    with pytest.raises(ConfigError):
        await connect_nats(url, name="no-ca", connect_timeout=2)
    settings = make_settings(server, stack_servers.mongo, stack_servers, nats_url=url, nats_tls_ca=str(ca))
    async with running(LOGS, settings):
        client = await connect_nats(NatsSettings(url=url, tls_ca=str(ca)), name="probe")
        try:
            reply = await client.request("query.logs", b"{}", timeout=5)
            assert msgspec.json.decode(reply.data) == {"items": [], "next_cursor": None}
        finally:
            await client.close()
