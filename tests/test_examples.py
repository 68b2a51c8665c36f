"""The pytest plugin as a team uses it: `examples/agent-tests` (a tiny agent and its test,
using only the plugin's fixtures) run by pytest in a fresh process, which starts a private
local stack, tests against it, and stops it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_example_agent_tests_pass_with_the_plugin_and_a_private_stack(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSTORE_", "NATS_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t")],
        cwd=ROOT / "examples" / "agent-tests",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "2 passed" in result.stdout
    # The private stack is gone: no process of it is left.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert not leftovers.strip(), leftovers
