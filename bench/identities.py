"""Run-time identities: what the auth callout path costs a connecting agent.

One nats-server with `agentstore auth generate`'s config (1,000 listed agents, and run-time
identities through the identity service, run here in-process):

- connect -> first acked publish: a new agent (enrolling through the callout) vs a listed one
  (a static user), 50 each, one at a time;
- 1,000 agents connecting at once: listed (static users, the baseline) vs enrolling.

    python -m bench.identities [--agents 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.client import Client

from agentstore import contract
from agentstore.auth import Fleet, generate, read_credentials, read_secrets
from agentstore_server.bus.provision import ensure_stream
from agentstore_server.config import Settings
from agentstore_server.devstack import servers
from agentstore_server.identity.service import SPEC as IDENTITY
from agentstore_server.lifecycle.runner import running


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def first_ack(url: str, user: str, password: str, agent: str) -> float:
    """Seconds from the connect call to the PubAck of the agent's first log."""
    started = time.perf_counter()
    nc = await nats.connect(url, user=user, password=password, inbox_prefix=f"_INBOX.agents.{agent}",
                            allow_reconnect=False)  # fmt: skip
    await nc.jetstream().publish(f"agents.{agent}.logs", b'{"id": "1", "level": "info", "message": "m"}')
    took = time.perf_counter() - started
    await nc.close()
    return took


async def at_once(url: str, logins: list[tuple[str, str]]) -> tuple[float, list[float]]:
    """All connect together: the wall time until the last is in, and each one's latency."""
    latencies: list[float] = []

    async def one(user: str, password: str) -> Client:
        started = time.perf_counter()
        nc = await nats.connect(url, user=user, password=password, allow_reconnect=False, connect_timeout=60)
        latencies.append(time.perf_counter() - started)
        return nc

    started = time.perf_counter()
    conns = await asyncio.gather(*(one(u, p) for u, p in logins))
    wall = time.perf_counter() - started
    await asyncio.gather(*(nc.close() for nc in conns))
    return wall, latencies


async def main(agents: int, singles: int) -> None:
    with tempfile.TemporaryDirectory(prefix="agentstore-bench-") as tmp:
        root = Path(tmp)
        listed = [f"s{i}" for i in range(agents)]
        generate(Fleet(agents=listed), root / "nats")
        server = servers.start_nats(root / "nats", servers.free_port(), servers.free_port(),
                                    extra_conf='include "auth.conf"')  # fmt: skip
        try:
            creds = root / "nats" / "credentials"
            keys = read_secrets(root / "nats")
            user, password = read_credentials(creds / "service-identity.json")
            logins = {n: read_credentials(creds / f"{n}.json") for n in ("identity", "system")}
            settings = Settings(
                _env_file=None, nats_url=server.url, nats_user=user, nats_password=password,
                identity_issuer_seed=keys.issuer_seed, agentstore_enrollment_token=keys.enrollment,
                identity_nats_user=logins["identity"][0], identity_nats_password=logins["identity"][1],
                system_nats_user=logins["system"][0], system_nats_password=logins["system"][1],
            )  # type: ignore[call-arg]  # fmt: skip
            admin = await nats.connect(
                server.url, user=user, password=password, inbox_prefix="_INBOX.service.identity"
            )
            await ensure_stream(admin.jetstream(), contract.STREAMS["LOGS"], 1)
            await admin.close()
            async with running(IDENTITY, settings):
                static_first = [await first_ack(server.url, *read_credentials(creds / f"agent-s{i}.json"), f"s{i}")
                                for i in range(singles)]  # fmt: skip
                enrolled_first = [await first_ack(server.url, f"agent-n{i}", keys.enrollment, f"n{i}")
                                  for i in range(singles)]  # fmt: skip
                static_wall, static_each = await at_once(
                    server.url, [read_credentials(creds / f"agent-{a}.json") for a in listed]
                )
                enrolled_wall, enrolled_each = await at_once(
                    server.url, [(f"agent-crowd{i}", keys.enrollment) for i in range(agents)]
                )
        finally:
            server.stop()
    ms = 1000.0
    print(f"\n== run-time identities (nats-server auth callout), {agents} agents")
    print(f"  connect -> first acked publish, one agent at a time ({singles} each), median / p99 ms:")
    print(
        f"    listed (static user)   {statistics.median(static_first) * ms:7.2f} / {pct(static_first, 0.99) * ms:7.2f}"
    )
    print(
        f"    new (enrolled)         {statistics.median(enrolled_first) * ms:7.2f} / {pct(enrolled_first, 0.99) * ms:7.2f}"
    )
    print(f"  {agents} agents connecting at once: wall s; per connect median / p99 ms:")
    print(
        f"    listed (static users)  {static_wall:7.2f}; {statistics.median(static_each) * ms:7.1f} / {pct(static_each, 0.99) * ms:7.1f}"
    )
    print(
        f"    new (enrolled)         {enrolled_wall:7.2f}; {statistics.median(enrolled_each) * ms:7.1f} / {pct(enrolled_each, 0.99) * ms:7.1f}"
    )
    print(
        f"  ratio enrolled / listed: first ack {statistics.median(enrolled_first) / statistics.median(static_first):.2f}x, "
        f"{agents} at once {enrolled_wall / static_wall:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.agents, args.singles))
