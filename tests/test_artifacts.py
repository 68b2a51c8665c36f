"""artifacts service: MinIO objects under the agent's prefix, metadata in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from agentstore.errors import ConfigError
from agentstore_server.artifacts.reconcile import reconcile
from agentstore_server.artifacts.service import SPEC as ARTIFACTS
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import ServiceHost, running
from agentstore_server.stores.objects import ObjectStore
from agentstore_server.stores.postgres import PostgresStore
from tests.conftest import Stack, make_settings
from tests.helpers import after, dead_letters, eventually, new_agent, publish_all, request


def inline(agent: str, artifact_id: str, data: bytes, name: str = "shot.png",
           task: str | None = "t1", **headers: str) -> tuple[str, bytes, dict[str, str]]:  # fmt: skip
    h = {
        "Nats-Msg-Id": f"{agent}:{artifact_id}",
        "Content-Type": "image/png",
        "Artifact-Name": name,
    }
    if task:
        h["Task-Id"] = task
    h.update(headers)
    return (f"agents.{agent}.artifacts", data, h)


async def ok(nc: Client, subject: str, body: dict[str, Any]) -> Any:
    code, reply = await request(nc, subject, body)
    assert code == 200, (subject, reply)
    return reply


async def download(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


@pytest.fixture(params=["minio", "seaweedfs"])
def settings(request: pytest.FixtureRequest, nats_server: Server, stack_servers: Stack) -> Settings:
    """Every artifacts test on MinIO (the default) and on SeaweedFS (a maintained S3 server):
    the S3 code is plain S3."""
    s3 = stack_servers.minio if request.param == "minio" else request.getfixturevalue("seaweedfs_server")
    return make_settings(nats_server, stack_servers.mongo, stack_servers, s3_endpoint=s3.address)


async def test_inline_upload_end_to_end(artifacts_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    data = os.urandom(200 * 1024)
    acks = await publish_all(nc, [inline(agent, "a1", data), inline(agent, "a1", data)])
    files = await ok(nc, "query.files", {"agent_ids": [agent], "after": after(acks[-1])})
    [row] = files["items"]
    assert row["object_key"] == f"{agent}/t1/a1-shot.png" and row["bucket"] == "screenshots"
    assert row["size"] == len(data) and row["sha256"] == hashlib.sha256(data).hexdigest()
    url = await ok(nc, f"agents.{agent}.rpc.query.file_url", {"file_id": row["file_id"]})
    status, body = await download(url["url"])
    assert status == 200 and hashlib.sha256(body).hexdigest() == row["sha256"]
    assert (
        await ok(nc, "query.files", {"task_id": "t1", "agent_ids": [agent], "content_type": "image/png"})
    )["items"]


async def test_presigned_upload_end_to_end_and_pending_until_confirmed(
    artifacts_service: ServiceHost, nc: Client
) -> None:
    agent = new_agent()
    data = os.urandom(3 * 1024 * 1024)  # over the NATS payload limit
    grant = await ok(
        nc,
        f"agents.{agent}.rpc.presign",
        {"name": "big.bin", "content_type": "application/octet-stream", "task_id": "t9"},
    )
    assert grant["object_key"].startswith(f"{agent}/t9/")
    async with (
        aiohttp.ClientSession() as http,
        http.put(grant["upload_url"], data=io.BytesIO(data)) as r,
    ):
        assert r.status == 200
    acks = await publish_all(
        nc,
        [
            (
                f"agents.{agent}.uploads",
                f'{{"id": "u1", "object_key": "{grant["object_key"]}"}}'.encode(),
                None,
            )
        ],
    )
    files = await ok(nc, "query.files", {"agent_ids": [agent], "after": after(acks[-1])})
    [row] = files["items"]
    assert (row["name"], row["content_type"], row["task_id"], row["size"]) == (
        "big.bin",
        "application/octet-stream",
        "t9",
        len(data),
    )
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    url = await ok(nc, "query.file_url", {"file_id": row["file_id"], "expires_seconds": 60})
    assert (await download(url["url"]))[1] == data


@contextlib.asynccontextmanager
async def forwarder(target: str) -> AsyncIterator[str]:
    """A TCP relay to `target` on a port of its own: S3 at another address, as a cluster's
    ingress puts it in front of the in-cluster endpoint. Yields the relay's address."""
    host, port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_presigned_urls_carry_the_public_address_and_work_through_it(
    settings: Settings, nc: Client
) -> None:
    """S3_PUBLIC_URL: the service talks to S3_ENDPOINT, and the URLs it hands out are signed
    for the public address, where both a download and a presigned upload succeed."""
    async with forwarder(settings.s3_endpoint) as public:
        public_settings = settings.model_copy(update={"s3_public_url": f"http://{public}"})
        async with running(ARTIFACTS, public_settings):
            agent = new_agent()
            data = os.urandom(100 * 1024)
            acks = await publish_all(nc, [inline(agent, "p1", data)])
            [row] = (await ok(nc, "query.files", {"agent_ids": [agent], "after": after(acks[-1])}))["items"]
            url = (await ok(nc, "query.file_url", {"file_id": row["file_id"]}))["url"]
            assert url.startswith(f"http://{public}/")
            assert await download(url) == (200, data)
            # Signed for that address: the same URL at the internal endpoint is refused.
            assert (await download(url.replace(public, settings.s3_endpoint)))[0] == 403
            grant = await ok(nc, f"agents.{agent}.rpc.presign", {"name": "up.bin", "task_id": "t1",
                                                                 "content_type": "application/octet-stream"})  # fmt: skip
            assert grant["upload_url"].startswith(f"http://{public}/")
            async with aiohttp.ClientSession() as http, http.put(grant["upload_url"], data=data[:1000]) as r:
                assert r.status == 200
            async with ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                                   secure=False) as store:  # fmt: skip
                assert await store.get(grant["bucket"], grant["object_key"]) == data[:1000]


@pytest.mark.parametrize("bad", ["files.example.com", "ftp://files.example.com", "https://h/s3", "http://h?x=1",
                                 "https://"])  # fmt: skip
def test_a_public_s3_address_that_cannot_be_presigned_for_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="S3_PUBLIC_URL"):
        Settings(s3_public_url=bad).s3_public()
    assert Settings(s3_public_url="https://files.example.com:8443/").s3_public() == (
        "files.example.com:8443",
        True,
    )
    assert Settings().s3_public() is None


async def test_expired_url_is_refused(artifacts_service: ServiceHost, nc: Client) -> None:
    agent = new_agent()
    acks = await publish_all(nc, [inline(agent, "x", b"bytes")])
    [row] = (await ok(nc, "query.files", {"agent_ids": [agent], "after": after(acks[-1])}))["items"]
    url = (await ok(nc, "query.file_url", {"file_id": row["file_id"], "expires_seconds": 1}))["url"]

    async def refused() -> bool:
        return (await download(url))[0] == 403

    await eventually(refused, timeout=10, what="the 1 s URL to expire")


async def test_agents_cannot_reach_other_agents_prefixes(artifacts_service: ServiceHost, nc: Client) -> None:
    me, other = new_agent(), new_agent()
    acks = await publish_all(nc, [inline(other, "secret", b"theirs")])
    [theirs] = (await ok(nc, "query.files", {"agent_ids": [other], "after": after(acks[-1])}))["items"]
    code, _ = await request(nc, f"agents.{me}.rpc.query.file_url", {"file_id": theirs["file_id"]})
    assert code == 403
    code, _ = await request(nc, f"agents.{me}.rpc.query.files", {"agent_ids": [other]})
    assert code == 403
    # Registering another agent's object, or a key outside any prefix, is dead-lettered.
    bodies = [{"id": "steal", "object_key": theirs["object_key"]},
              {"id": "up", "object_key": f"{me}/../{other}/t1/x-secret"},
              {"id": "abs", "object_key": f"/{me}/t/x-y"}]  # fmt: skip
    import msgspec

    await publish_all(nc, [(f"agents.{me}.uploads", msgspec.json.encode(b), None) for b in bodies])
    dead = await eventually(lambda: _n(dead_letters(nc), 3), what="dead letters")
    assert all(
        "prefix" in d.headers["Dead-Reason"]
        or "not '{agent}" in d.headers["Dead-Reason"]
        or ".." in d.headers["Dead-Reason"]
        for d in dead
    )
    code, reply = await request(
        nc,
        f"agents.{me}.rpc.presign",
        {"name": "x", "content_type": "image/png", "bucket": "private"},
    )
    assert code == 400 and "bucket" in reply["error"]["message"]


async def _n(value: Any, n: int) -> Any:
    items = await value
    return items if len(items) >= n else None


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "..",
        "a\\b",
        "/abs",
        "%2e%2e%2fsecret",
        "%252e%252e",
        "bell\x07",
        "x" * 1030,
        "tab\tname",
        "a/b",
    ],
)
async def test_bad_names_are_rejected_before_minio(
    artifacts_service: ServiceHost, nc: Client, name: str
) -> None:
    agent = new_agent()
    code, reply = await request(
        nc, f"agents.{agent}.rpc.presign", {"name": name, "content_type": "image/png"}
    )
    assert code == 400, reply
    headers = {"Nats-Msg-Id": f"{agent}:n1", "Content-Type": "image/png", "Artifact-Name": name}
    await publish_all(nc, [(f"agents.{agent}.artifacts", b"x", headers)])
    [dead] = await eventually(lambda: _n(dead_letters(nc), 1), what="a dead letter")
    assert dead.headers["Dead-Subject"] == f"agents.{agent}.artifacts"


@pytest.fixture
def own_minio(tmp_path: Path) -> Iterator[Server]:
    server = servers.start_minio(tmp_path / "minio", servers.free_port(), servers.free_port())
    yield server
    server.stop()


@pytest.mark.slow
async def test_minio_down_20s_during_200_uploads_stores_all_once(
    nats_server: Server, stack_servers: Stack, own_minio: Server, nc: Client
) -> None:
    settings = make_settings(nats_server, stack_servers.mongo, stack_servers, s3_endpoint=own_minio.address)
    agent = new_agent()
    async with running(ARTIFACTS, settings):
        await publish_all(nc, [inline(agent, f"a{i:03d}", os.urandom(2048)) for i in range(50)])
        own_minio.stop()
        outage = asyncio.create_task(
            publish_all(nc, [inline(agent, f"a{i:03d}", os.urandom(2048)) for i in range(50, 200)])
        )
        await asyncio.sleep(20)  # the outage itself: MinIO stays down for 20 s
        acks = await outage
        own_minio.restart()
        files = await eventually(lambda: _files(nc, agent, 200), timeout=60, what="200 files")
        assert sorted(f["file_id"] for f in files) == [f"{agent}:a{i:03d}" for i in range(200)]
        assert acks
    assert not await dead_letters(nc)


async def _files(nc: Client, agent: str, n: int) -> Any:
    code, page = await request(nc, "query.files", {"agent_ids": [agent], "limit": 1000})
    return page["items"] if code == 200 and len(page["items"]) == n else None


async def test_reconcile_finds_and_repairs_orphans_on_both_sides(
    artifacts_service: ServiceHost, settings: Settings, nc: Client
) -> None:
    agent = new_agent()
    acks = await publish_all(nc, [inline(agent, "keep", b"k"), inline(agent, "lost", b"l", name="lost.png")])
    files = (await ok(nc, "query.files", {"agent_ids": [agent], "after": after(acks[-1])}))["items"]
    lost = next(f for f in files if f["name"] == "lost.png")
    async with ObjectStore(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=False) as objects, \
            PostgresStore(settings.postgres_url) as pg:  # fmt: skip
        await objects.remove("screenshots", lost["object_key"])  # metadata without object
        await objects.put(
            "screenshots", f"{agent}/_/stray-planted.txt", b"orphan", "text/plain"
        )  # object without metadata
        report = await reconcile(pg, objects, ["screenshots"])
        assert f"screenshots/{agent}/_/stray-planted.txt" in report.orphan_objects
        assert lost["file_id"] in report.missing_objects
        await reconcile(pg, objects, ["screenshots"], repair=True)
        again = await reconcile(pg, objects, ["screenshots"])
    assert (
        not [o for o in again.orphan_objects if agent in o] and lost["file_id"] not in again.missing_objects
    )
    names = {f["name"] for f in (await ok(nc, "query.files", {"agent_ids": [agent]}))["items"]}
    assert names == {"shot.png", "stray-planted.txt"}
