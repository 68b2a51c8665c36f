"""One way to connect: NatsSettings from the environment, stack.env, `nats` contexts, identities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentstore.bus.connect import NatsSettings, connect_options
from agentstore.errors import ConfigError


def test_environment_wins_over_stack_env(tmp_path: Path) -> None:
    home = tmp_path / ".agentstore"
    home.mkdir()
    (home / "stack.env").write_text("NATS_URL=nats://127.0.0.1:1111\nNATS_USER=evaluator-evaluator\n")
    env = {"AGENTSTORE_HOME": str(home), "NATS_USER": "someone", "XDG_CONFIG_HOME": str(tmp_path)}
    settings = NatsSettings.from_env(env=env)
    assert (settings.url, settings.user) == ("nats://127.0.0.1:1111", "someone")


def test_a_nats_cli_context_fills_what_is_unset(tmp_path: Path) -> None:
    contexts = tmp_path / "nats" / "context"
    contexts.mkdir(parents=True)
    (contexts / "prod.json").write_text(json.dumps({
        "url": "tls://nats.example:4222", "user": "ctx-user", "password": "pw", "ca": "/etc/ca.pem",
        "nkey": "/keys/agent.nk",
    }))  # fmt: skip
    (tmp_path / "nats" / "context.txt").write_text("prod\n")
    selected = NatsSettings.from_env(env={"XDG_CONFIG_HOME": str(tmp_path)}, env_file=tmp_path / "none")
    assert (selected.url, selected.user, selected.tls_ca, selected.nkey) == (
        "tls://nats.example:4222", "ctx-user", "/etc/ca.pem", "/keys/agent.nk")  # fmt: skip
    mine = NatsSettings.from_env(
        env={"XDG_CONFIG_HOME": str(tmp_path), "NATS_CONTEXT": "prod", "NATS_USER": "me"},
        env_file=tmp_path / "none",
    )
    assert (mine.user, mine.password) == ("me", "pw")  # the environment's user, the context's password
    with pytest.raises(ConfigError, match="no nats context 'nope'"):
        NatsSettings.from_env(env={"XDG_CONFIG_HOME": str(tmp_path), "NATS_CONTEXT": "nope"})


def test_identities_come_from_the_credentials_folder(tmp_path: Path) -> None:
    (tmp_path / "agent-a1.json").write_text(json.dumps({"user": "agent-a1", "password": "s3cret"}))
    base = NatsSettings(user="evaluator-evaluator", password="x", credentials_dir=str(tmp_path))
    agent = base.as_identity("agent-a1")
    assert connect_options(agent) == {"user": "agent-a1", "password": "s3cret"}
    # No file for it: never the evaluator's login (issue 26), a ConfigError naming what to do.
    with pytest.raises(ConfigError, match="no NATS credentials for agent-unknown"):
        base.as_identity("agent-unknown")
    assert NatsSettings(user="u", password="p").as_identity("agent-x").user == "u"  # no folder: as given


def test_every_login_kind_maps_to_the_client(tmp_path: Path) -> None:
    assert connect_options(NatsSettings(creds="/x/user.creds")) == {"user_credentials": "/x/user.creds"}
    assert connect_options(NatsSettings(nkey="/x/seed.nk", token="t")) == {
        "nkeys_seed": "/x/seed.nk",
        "token": "t",
    }
    assert "tls" not in connect_options(NatsSettings())
    with pytest.raises(ConfigError, match="cannot read credentials"):
        connect_options(NatsSettings(creds=str(tmp_path / "missing.json")))
