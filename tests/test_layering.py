"""Imports run one way: lifecycle -> bus -> stores/contract, and the SDK's modules import
nothing of the server at load time (issue 25's first step; the packages split later)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).parent.parent / "shared" / "agentstore"
# What an agent's `pip install agentstore` is for: these load without any server module.
SDK = ["__init__.py", "client.py", "publisher.py", "errors.py", "ids.py", "logging.py", "asyncapi.py",
       "auth.py", "bus/connect.py", "bus/deadletter.py", "contract", "schemas"]  # fmt: skip
SERVER = ("agentstore.bus.ingest", "agentstore.bus.rpc", "agentstore.bus.provision", "agentstore.bus.handle",
          "agentstore.bus.fetch", "agentstore.lifecycle", "agentstore.stores", "agentstore.devstack",
          "agentstore.ops", "agentstore.config", "agentstore_services")  # fmt: skip


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _files(*names: str) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = SHARED / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


@pytest.mark.parametrize("path", _files("bus"), ids=lambda p: p.name)
def test_the_bus_never_imports_the_lifecycle_above_it(path: Path) -> None:
    upward = {m for m in _imports(path, top_level_only=False)
              if m.startswith(("agentstore.lifecycle", "agentstore.devstack", "agentstore.ops", "agentstore_services"))}  # fmt: skip
    assert not upward, f"{path.relative_to(SHARED)} imports {sorted(upward)}"


@pytest.mark.parametrize("path", _files(*SDK), ids=lambda p: str(p.relative_to(SHARED)))
def test_the_sdk_loads_nothing_of_the_server(path: Path) -> None:
    server = {m for m in _imports(path, top_level_only=True) if m.startswith(SERVER)}
    assert not server, f"{path.relative_to(SHARED)} imports {sorted(server)} at load time"
