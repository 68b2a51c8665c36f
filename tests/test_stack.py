"""`agentstore up / status / down`: the local stack a newcomer runs."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from agentstore import AgentClient, EvaluatorClient, NatsSettings
from agentstore.errors import ConfigError, Forbidden
from agentstore_server.devstack import servers
from agentstore_server.devstack.manager import AUTH_ONLY, SERVICES
from tests.helpers import as_json, eventually, log_body, request

pytestmark = pytest.mark.slow

PORT_VARS = [
    "NATS", "NATS_HTTP", "POSTGRES", "MONGO", "MONGO_DEBUG", "MINIO", "MINIO_CONSOLE", "WEB", "OTLP",
    *(f"{s.upper()}_HEALTH" for s in SERVICES),
]  # fmt: skip


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "AGENTSTORE_HOME": str(tmp_path / ".agentstore")}
    for var in PORT_VARS:
        env[f"AGENTSTORE_{var}_PORT"] = str(servers.free_port())
    env.pop("MONGODB_URL", None)
    yield env
    cli(env, "down")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: bytes = reply.read()
        return body


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentstore", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


async def test_up_serves_a_plain_nats_client_and_down_leaves_nothing(
    stack_env: dict[str, str],
) -> None:
    up = cli(stack_env, "up")
    assert up.returncode == 0, up.stderr
    home = Path(stack_env["AGENTSTORE_HOME"])
    settings = dict(line.split("=", 1) for line in (home / "stack.env").read_text().splitlines())
    # It and the supervisor's recipes hold the stack's passwords: the owner's eyes only.
    private = [home / "stack.env", *(home / "run").glob("*.json")]
    assert len(private) > 3, private  # the recipes are there
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in private if p.stat().st_mode & 0o077} == {}
    assert set(settings) == {
        "NATS_URL", "POSTGRES_URL", "MONGODB_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "WEB_URL",
        "OTLP_URL", "MONGODB_SQL_URL",
    }  # fmt: skip
    # FerretDB on the stack's PostgreSQL: the logs service reads its tables in SQL.
    assert settings["MONGODB_SQL_URL"].endswith("/ferretdb")
    # The console is part of the stack, at WEB_URL.
    assert b"<h1>Fleet</h1>" in await asyncio.to_thread(fetch, settings["WEB_URL"] + "/")
    status = cli(stack_env, "--json", "status")
    assert status.returncode == 0, status.stdout
    rows = json.loads(status.stdout)
    # (the identity service runs only under AUTH=1)
    assert {r["name"] for r in rows} == {"nats", "postgres", "mongo", "minio", *SERVICES, "supervisor"} - set(
        AUTH_ONLY
    )
    assert all(r["health"] in ("running", "ready") for r in rows)
    pids = {r["name"]: int(r["pid"]) for r in rows}
    for name, pid in pids.items():
        assert (home / "run" / f"{name}.pid").read_text().split()[0] == str(pid)

    # A plain nats-py client, as any agent would be.
    nc = await nats.connect(settings["NATS_URL"])
    try:
        ack = await nc.jetstream().publish(
            "agents.a1.logs", as_json(log_body(1)), headers={"Nats-Msg-Id": "a1:log-000001"}
        )
        code, page = await request(
            nc, "query.logs", {"agent_ids": ["a1"], "after": {"stream": ack.stream, "seq": ack.seq}}
        )
        assert code == 200 and [it["id"] for it in page["items"]] == ["log-000001"]
    finally:
        await nc.close()

    again = cli(stack_env, "--json", "status")
    assert {r["name"]: int(r["pid"]) for r in json.loads(again.stdout)} == pids
    assert cli(stack_env, "up").returncode == 0  # idempotent: nothing restarted
    assert {r["name"]: int(r["pid"]) for r in json.loads(cli(stack_env, "--json", "status").stdout)} == pids

    down = cli(stack_env, "down")
    assert down.returncode == 0
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert "nothing was running" in cli(stack_env, "down").stdout


async def test_a_killed_service_is_back_within_10_s_losing_nothing_and_down_up_works_at_once(
    stack_env: dict[str, str],
) -> None:
    """The local stack heals itself: SIGKILL the logs service while logs are published;
    the supervisor restarts it, ready within 10 s, every log stored once; `status` shows
    the restart; `down && up` then succeeds at once (no TIME_WAIT "port taken")."""
    assert cli(stack_env, "up").returncode == 0
    home = Path(stack_env["AGENTSTORE_HOME"])
    settings = dict(line.split("=", 1) for line in (home / "stack.env").read_text().splitlines())
    rows = {r["name"]: r for r in json.loads(cli(stack_env, "--json", "status").stdout)}
    victim, address = int(rows["logs"]["pid"]), rows["logs"]["address"]
    async with await AgentClient.connect(settings["NATS_URL"], "healer") as agent:
        for i in range(500):
            await agent.log("info", f"before {i}", id=f"b{i}")
        os.kill(victim, signal.SIGKILL)
        for i in range(500):
            await agent.log("info", f"during {i}", id=f"d{i}")
        written = await agent.flush()

        async def ready_again() -> bool:
            return await asyncio.to_thread(ready, address)

        await eventually(ready_again, timeout=10, what="the killed logs service ready again")
        async with await EvaluatorClient.connect(settings["NATS_URL"]) as evaluator:
            ids = [i.id async for i in evaluator.pages("logs", agent_ids=["healer"], limit=1000,
                                                        after=written["LOGS"].as_after())]  # fmt: skip
    assert sorted(ids) == sorted([f"b{i}" for i in range(500)] + [f"d{i}" for i in range(500)])
    rows = {r["name"]: r for r in json.loads(cli(stack_env, "--json", "status").stdout)}
    assert rows["logs"]["restarts"] == "1" and int(rows["logs"]["pid"]) != victim, rows["logs"]
    assert cli(stack_env, "down").returncode == 0
    again = cli(stack_env, "up")
    assert again.returncode == 0, again.stderr
    assert all(
        r["health"] in ("running", "ready") for r in json.loads(cli(stack_env, "--json", "status").stdout)
    )


def ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def test_a_taken_port_gets_a_one_line_error_that_says_what_to_do(stack_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack_env["AGENTSTORE_NATS_PORT"] = str(taken.getsockname()[1])
        up = cli(stack_env, "up")
    assert up.returncode == 2
    assert up.stderr.count("\n") == 1
    assert "AGENTSTORE_NATS_PORT" in up.stderr and "taken" in up.stderr


async def test_up_with_auth_serves_only_known_identities(stack_env: dict[str, str]) -> None:
    stack_env["AGENTSTORE_AUTH"] = "1"
    up = cli(stack_env, "up")
    assert up.returncode == 0, up.stderr
    home = Path(stack_env["AGENTSTORE_HOME"])
    settings = dict(line.split("=", 1) for line in (home / "stack.env").read_text().splitlines())
    agent = json.loads((home / "auth" / "credentials" / "agent-a1.json").read_text())
    nc = await nats.connect(settings["NATS_URL"], user=agent["user"], password=agent["password"],
                            inbox_prefix="_INBOX.agents.a1")  # fmt: skip
    try:
        ack = await nc.jetstream().publish("agents.a1.logs", as_json(log_body(7)))
        code, page = await request(
            nc, "agents.a1.rpc.query.logs", {"after": {"stream": ack.stream, "seq": ack.seq}}
        )
        assert code == 200 and [it["id"] for it in page["items"]] == ["log-000007"]
    finally:
        await nc.close()
    evaluator = await nats.connect(settings["NATS_URL"], user=settings["NATS_USER"],
                                   password=settings["NATS_PASSWORD"], inbox_prefix="_INBOX.evaluator")  # fmt: skip
    try:
        code, page = await request(evaluator, "query.logs", {"agent_ids": ["a1"]})
        assert code == 200 and len(page["items"]) == 1
    finally:
        await evaluator.close()
    # Without credentials the server refuses the connection (raw protocol: no client library state).
    host, port = settings["NATS_URL"].removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.recv(4096)  # INFO
        raw.sendall(b'CONNECT {"verbose": false}\r\nPING\r\n')
        assert b"Authorization Violation" in raw.recv(4096)


async def test_both_clients_and_the_cli_log_in_under_auth(stack_env: dict[str, str]) -> None:
    """`make up AUTH=1`: the shipped clients and `agentstore query` find their identities."""
    stack_env["AGENTSTORE_AUTH"] = "1"
    up = cli(stack_env, "up")
    assert up.returncode == 0, up.stderr
    settings = NatsSettings.from_env(env=stack_env)
    assert settings.user == "evaluator-evaluator" and settings.credentials_dir
    async with await AgentClient.connect(settings, "a1") as agent:
        await agent.log("error", "logged in as agent-a1", id="auth-1")
        mine = await agent.query("logs")  # its own rpc subject, reading its own writes
        assert [item.id for item in mine.items] == ["auth-1"]
        with pytest.raises(Forbidden):
            await agent.query("logs", agent_ids=["a2"])
    async with await EvaluatorClient.connect(settings) as evaluator:
        page = await evaluator.query("logs", agent_ids=["a1"], level="error")
        assert [item.message for item in page.items] == ["logged in as agent-a1"]
    shown = cli(stack_env, "--json", "query", "logs", "--agent", "a1")
    assert shown.returncode == 0, shown.stderr
    assert [item["id"] for item in json.loads(shown.stdout)["items"]] == ["auth-1"]
    await mirrors_under_auth(stack_env, settings, Path(stack_env["AGENTSTORE_HOME"]).parent / "mirror")
    await console_asks_for_its_login(Path(stack_env["AGENTSTORE_HOME"]))

    # An agent the fleet does not know cannot log in, and says why.
    with pytest.raises(ConfigError, match=r"NATS_URL|credentials"):
        await AgentClient.connect(NatsSettings(url=settings.url, user="nobody", password="x"), "zz")


async def console_asks_for_its_login(home: Path) -> None:
    """Issue 40: under AUTH=1 the console shows nothing before its login (the token in
    .agentstore/auth/web.token, owner-only), and everything after."""
    import aiohttp

    web_url = dict(line.split("=", 1) for line in (home / "stack.env").read_text().splitlines())["WEB_URL"]
    token_file = home / "auth" / "web.token"
    assert token_file.stat().st_mode & 0o077 == 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{web_url}/", allow_redirects=False) as reply:
            assert reply.status == 303 and reply.headers["Location"].startswith("/login")
        async with http.post(
            f"{web_url}/login", data={"token": token_file.read_text().strip(), "next": "/"}
        ) as r:
            assert r.status == 200 and "<h1>Fleet</h1>" in await r.text()


async def mirrors_under_auth(stack_env: dict[str, str], settings: NatsSettings, folder: Path) -> None:
    """Issue 37: `agentstore mirror` under `make up AUTH=1` logs in as its own identity
    (`mirror-mirror`, provisioned with the others) and mirrors what an agent says."""
    mirror = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentstore", "mirror", "--to", str(folder), env=stack_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with await AgentClient.connect(settings, "a1") as agent:
            await agent.conversation("c1", user_id="u1")
            await agent.message("c1", "user", "mirrored under auth", id="m1")
            await agent.flush()
        file = folder / "a1" / "c1.jsonl"

        async def mirrored() -> bool:
            assert mirror.returncode is None, await mirror.communicate()
            return file.exists() and "mirrored under auth" in file.read_text()

        await eventually(mirrored, timeout=30, what="the conversation in the mirror's folder")
    finally:
        mirror.send_signal(signal.SIGINT)
        out, err = (part.decode() for part in await asyncio.wait_for(mirror.communicate(), 30))
    assert mirror.returncode == 0 and "mirrored 2 records into 1 files" in out, (out, err)
    assert "refused" not in err and "Permissions Violation" not in err, err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (as in test_auth.py)
async def test_an_agent_nobody_listed_joins_an_auth_stack_and_the_cli_revokes_it_and_undoes_that(
    stack_env: dict[str, str],
) -> None:
    """Issue 26's reproduction: `make up AUTH=1`, a bare client as `newcomer-1` (not in
    fleet.json) with only what stack.env gives. It gets its own identity at login, and the
    operator's `agentstore auth revoke` cuts it off."""
    stack_env["AGENTSTORE_AUTH"] = "1"
    up = cli(stack_env, "up")
    assert up.returncode == 0, up.stderr
    assert "identity" in cli(stack_env, "status").stdout
    settings = NatsSettings.from_env(env=stack_env)
    assert settings.enrollment  # stack.env carries the fleet's enrollment token
    agent = await AgentClient.connect(settings, "newcomer-1")
    try:
        await agent.log("info", "joined without a restart", id="new-1")
        mine = await agent.query("logs")
        assert [item.id for item in mine.items] == ["new-1"]
        with pytest.raises(Forbidden):
            await agent.query("logs", agent_ids=["a1"])
        listed = cli(stack_env, "--json", "auth", "list")
        assert listed.returncode == 0, listed.stderr
        assert "newcomer-1" in {i["id"] for i in json.loads(listed.stdout)["items"]}
        revoked = cli(stack_env, "auth", "revoke", "agent", "newcomer-1")
        assert revoked.returncode == 0 and "connections closed" in revoked.stdout, revoked.stderr

        async def cut() -> bool:
            return not agent.nc.is_connected

        await eventually(cut, timeout=5, what="the revoked agent's connection closed")
    finally:
        await agent.nc.close()
    with pytest.raises(ConfigError, match="refused the login as user 'agent-newcomer-1'"):
        await AgentClient.connect(settings, "newcomer-1")
    listed = cli(stack_env, "--json", "auth", "list", "--revoked")
    assert [i["id"] for i in json.loads(listed.stdout)["items"]] == ["newcomer-1"], listed.stdout
    # When and who: the operator's user@host and the CLI's NATS identity (stack.env's evaluator).
    (revocation,) = json.loads(listed.stdout)["items"]
    assert revocation["revoked_at"] and revocation["revoked_by"] == (
        f"{getpass.getuser()}@{socket.gethostname()} as evaluator-evaluator"
    ), revocation
    # The operator's undo: it logs in again, and no longer lists as revoked.
    undone = cli(stack_env, "auth", "unrevoke", "agent", "newcomer-1")
    assert undone.returncode == 0 and "may log in again" in undone.stdout, (undone.stdout, undone.stderr)
    again = cli(stack_env, "auth", "unrevoke", "agent", "newcomer-1")
    assert again.returncode == 0 and "was not revoked" in again.stdout, again.stdout
    assert json.loads(cli(stack_env, "--json", "auth", "list", "--revoked").stdout)["items"] == []
    async with await AgentClient.connect(settings, "newcomer-1") as back:
        await back.log("info", "back after the undo", id="new-2")
        await back.flush()
