"""AgentClient's atomic-batch publishing: stored once whatever fails between client and server."""

from __future__ import annotations

from pathlib import Path

import nats
from nats.aio.client import Client

from agentstore import AgentClient
from agentstore.contract import STREAMS
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.devstack import servers
from agentstore_server.devstack.servers import Server
from tests.helpers import eventually, new_agent


async def subject_count(nc: Client, subject: str) -> int:
    info = await nc.jetstream().stream_info("LOGS", subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def stored_ids(nc: Client, subject: str) -> list[str]:
    """The Nats-Msg-Id of every message stored on `subject`, in stream order."""
    js = nc.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True)
    total = await subject_count(nc, subject)
    ids = []
    try:
        for _ in range(total):
            msg = await sub.next_msg(timeout=10)
            ids.append((msg.headers or {})["Nats-Msg-Id"])
    finally:
        await sub.unsubscribe()
    return ids


async def test_batches_are_atomic_and_every_message_keeps_its_id(nats_server: Server, nc: Client) -> None:
    await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
    agent = new_agent()
    async with await AgentClient.connect(nats_server.url, agent) as client:
        for i in range(2500):
            await client.log("info", f"m{i}", id=f"m{i:05d}")
        # A repeated id is JetStream's to drop, never a reason to lose its neighbours.
        await client.log("info", "again", id="m00007")
        await client.log("info", "last", id="last")
        positions = await client.flush()
        assert client._publisher.unbatched >= 1  # the batch holding the repeat went one by one
    assert positions["LOGS"].seq == 2501
    ids = await stored_ids(nc, f"agents.{agent}.logs")
    assert ids == [f"{agent}:m{i:05d}" for i in range(2500)] + [f"{agent}:last"]


async def test_a_batch_whose_commit_times_out_is_resent_without_duplicates(
    nats_server: Server, nc: Client
) -> None:
    await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
    agent = new_agent()
    # So short a PubAck timeout that commits time out after the server stored the batch;
    # the re-sent batch carries the same message ids, so JetStream keeps one copy.
    client = await AgentClient.connect(nats_server.url, agent, timeout=0.0005)
    client.publish_retries = 14
    async with client:
        for i in range(3000):
            await client.log("info", "once", id=f"x{i:05d}")
        await client.flush()
        assert client._publisher.resent >= 1
    ids = await stored_ids(nc, f"agents.{agent}.logs")
    assert sorted(ids) == [f"{agent}:x{i:05d}" for i in range(3000)]


async def test_a_sigkilled_nats_server_mid_batch_loses_nothing_acked(tmp_path: Path) -> None:
    port, http = servers.free_port(), servers.free_port()
    server = servers.start_nats(tmp_path / "nats", port, http)
    agent = new_agent()
    acked: set[str] = set()
    try:
        nc = await nats.connect(server.url)
        await ensure_stream(nc.jetstream(), STREAMS["LOGS"])
        await nc.close()
        client = await AgentClient.connect(server.url, agent, timeout=2)
        client.publish_retries = 10

        def record(ids: list[str]) -> object:
            return lambda future: acked.update(ids) if not future.exception() else None

        async with client:
            killed = False
            for i in range(20_000):
                event_id = f"k{i:05d}"
                future = await client.publish("logs", _log(event_id), event_id=event_id)
                future.add_done_callback(record([event_id]))
                if i == 6_000 and not killed:

                    async def some_acked() -> bool:
                        return bool(acked)

                    await eventually(some_acked, what="some batches acked")
                    server.kill()  # batches in flight, some half sent
                    killed = True
                    server.process = server.spawn()
            await client.flush()
        nc = await nats.connect(server.url)
        try:
            ids = await stored_ids(nc, f"agents.{agent}.logs")
        finally:
            await nc.close()
    finally:
        server.stop()
    stored = [i.split(":", 1)[1] for i in ids]
    assert len(stored) == len(set(stored)), "a message was stored twice"
    assert acked <= set(stored), f"{len(acked - set(stored))} acked messages lost"
    assert len(acked) == 20_000  # flush() returned: every publish was acknowledged


def _log(event_id: str) -> bytes:
    return f'{{"id": "{event_id}", "level": "info", "message": "m"}}'.encode()
