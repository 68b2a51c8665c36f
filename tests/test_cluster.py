"""A 3-node JetStream cluster with R3 streams: a node killed mid-ingest loses nothing acked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentstore.client import AgentClient
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from agentstore_server.lifecycle.runner import running
from agentstore_server.logs.service import SPEC as LOGS
from agentstore_server.stores.mongo import MongoStore
from tests.conftest import Stack, make_settings
from tests.helpers import eventually, new_agent

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Server]]:
    ports = [(servers.free_port(), servers.free_port(), servers.free_port()) for _ in range(3)]
    routes = ", ".join(f"nats://127.0.0.1:{route}" for _, _, route in ports)
    nodes: list[Server] = []

    async def start_all() -> None:
        # Each node waits for JetStream, which needs a quorum: start them side by side.
        def start(i: int) -> Server:
            client, http, route = ports[i]
            conf = f'server_name: "n{i}"\ncluster {{\n  name: "agentstore"\n  listen: "127.0.0.1:{route}"\n  routes: [{routes}]\n}}'
            return servers.start_nats(tmp_path / f"n{i}", client, http, extra_conf=conf)

        nodes.extend(await asyncio.gather(*(asyncio.to_thread(start, i) for i in range(3))))

    asyncio.run(start_all())
    yield nodes
    for node in nodes:
        node.stop()


async def test_killing_one_node_during_20000_event_ingest_loses_nothing_acked(
    cluster: list[Server], stack_servers: Stack
) -> None:
    url = ",".join(node.url for node in cluster)
    settings = make_settings(cluster[0], stack_servers.mongo, stack_servers, nats_url=url, stream_replicas=3)
    agent = new_agent()
    mongo = MongoStore(settings.mongodb_url, settings.mongodb_db)
    try:
        async with running(LOGS, settings) as host:
            assert host.nc is not None
            info = await host.nc.jetstream().stream_info("LOGS")
            assert info.config.num_replicas == 3 and len(info.cluster.replicas or []) == 2
            client = await AgentClient.connect(url, agent, window=1000, timeout=5)
            client.publish_retries = 8
            async with client:
                for i in range(20_000):
                    await client.log("info", f"event {i}", id=f"e{i:05d}")
                    if i == 8_000:
                        cluster[1].kill()  # a node dies with publishes in flight
            # Every publish was acknowledged (flush raised otherwise); each must be stored once.

            async def all_stored() -> bool:
                return await mongo.count("logs", {"agent_id": agent}) == 20_000

            try:
                await eventually(all_stored, timeout=120, what="all 20,000 acked events stored")
            except AssertionError:
                js = host.nc.jetstream()
                info = await js.consumer_info("LOGS", "logs")
                stream = await js.stream_info("LOGS", subjects_filter=f"agents.{agent}.logs")
                stored = await mongo.count("logs", {"agent_id": agent})
                raise AssertionError(
                    f"stored {stored}; stream holds {stream.state.messages}; consumer {info}"
                ) from None
            docs = await mongo.find("logs", {"agent_id": agent}, limit=20_100)
            assert len({d["id"] for d in docs}) == 20_000
    finally:
        await mongo.drop_database()
        await mongo.close()
