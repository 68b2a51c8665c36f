"""Imports run one way. Between the distributions: the server (agentstore_server) depends on the
SDK (agentstore), never the reverse, at any depth (the SDK finds the server's commands and its
private stack through entry points). Inside the server: lifecycle -> bus -> stores/contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SDK = ROOT / "shared" / "agentstore"
SERVER = ROOT / "services" / "agentstore_server"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, in every form: `import a.b`, `from a.b import c` (as a.b
    and a.b.c: c may be a module), `from agentstore_server import x`, relative imports."""
    found = set()
    package = _package_of(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if base:
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _package_of(path: Path) -> list[str]:
    for root, name in ((SDK, "agentstore"), (SERVER, "agentstore_server")):
        if path.is_relative_to(root):
            return [name, *path.relative_to(root).parts[:-1]]
    return []


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


@pytest.mark.parametrize("path", _files(SDK), ids=lambda p: str(p.relative_to(SDK)))
def test_the_sdk_imports_nothing_of_the_server(path: Path) -> None:
    server = {m for m in _imports(path) if m.partition(".")[0] == "agentstore_server"}
    assert not server, f"{path.relative_to(ROOT)} imports {sorted(server)}"


# What an agent's `pip install agentstore` brings: nats-py (with its nkeys extra) and msgspec. The SDK's modules import
# nothing else beyond the standard library, except what a module tries and does without: pytest in
# the pytest plugin, rich for colour in the CLI, the caller's OpenTelemetry in logging; and a framework
# adapter its framework, which its extra brings (`agentstore[langgraph]`), imported by nothing else.
SDK_THIRD_PARTY = {"nats", "msgspec", "nkeys"}  # nkeys: nats-py[nkeys]
OPTIONAL = {"testing.py": {"pytest", "pytest_asyncio"}, "cli.py": {"rich"}, "tail.py": {"rich"},
            "logging.py": {"opentelemetry"}, "langgraph.py": {"langgraph", "langchain_core", "pyfastcdc"},
            "adk.py": {"google"}}  # fmt: skip


@pytest.mark.parametrize("path", _files(SDK), ids=lambda p: str(p.relative_to(SDK)))
def test_the_sdk_needs_only_its_two_dependencies(path: Path) -> None:
    import sys

    tops = {m.partition(".")[0] for m in _imports(path)}
    third_party = {
        t for t in tops if t not in sys.stdlib_module_names and t not in {"agentstore", "__future__"}
    }
    extra = third_party - SDK_THIRD_PARTY - OPTIONAL.get(str(path.relative_to(SDK)), set())
    assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


@pytest.mark.parametrize("path", _files(SERVER / "bus"), ids=lambda p: p.name)
def test_the_bus_never_imports_the_lifecycle_above_it(path: Path) -> None:
    upward = {m for m in _imports(path) if m.startswith(("agentstore_server.lifecycle", "agentstore_server.devstack",
              "agentstore_server.ops", "agentstore_server.web", "agentstore_server.logs"))}  # fmt: skip
    assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"


@pytest.mark.parametrize("path", _files(SERVER / "stores"), ids=lambda p: p.name)
def test_the_stores_know_no_service(path: Path) -> None:
    above = {m for m in _imports(path) if m.startswith("agentstore_server.")
             and not m.startswith(("agentstore_server.stores", "agentstore_server.config"))}  # fmt: skip
    assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"


@pytest.mark.parametrize("path", _files(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_the_services_sit_below_the_local_stack_and_the_operator_commands(path: Path) -> None:
    part = path.relative_to(SERVER).parts[0]
    above = {"ops": ("bench", "tests"), "devstack": ("agentstore_server.ops", "bench", "tests")}.get(
        part, ("agentstore_server.ops", "agentstore_server.devstack", "bench", "tests")
    )
    found = {m for m in _imports(path) if m.startswith(above)}
    assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


# The server's layers, import-linter style: each top-level part of agentstore_server and the
# parts it may import (besides itself, the SDK and the standard library). One table, so a new
# edge is a decision made here, not an accident.
SERVICES = ("artifacts", "identity", "logs", "metrics", "otlp", "tasks", "web")
LOWER = {"config", "stores", "bus", "lifecycle"}
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "config": set(),
    "stores": {"config"},
    "bus": {"config", "stores"},
    "lifecycle": {"config", "stores", "bus"},
    **{service: LOWER for service in SERVICES},
    "registry": LOWER | set(SERVICES),
    "devstack": LOWER | {"registry"},
    "ops": LOWER | set(SERVICES) | {"registry", "devstack"},
}
# The database and object-store drivers: only `stores/` imports them.
DRIVERS = {"asyncpg", "pymongo", "bson", "motor", "miniopy_async", "minio", "psycopg", "psycopg_pool"}


@pytest.mark.parametrize("path", _files(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_each_part_of_the_server_imports_only_what_its_layer_allows(path: Path) -> None:
    rel = path.relative_to(SERVER)
    part = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    assert part in ALLOWED, f"{rel}: a new part of the server: declare its layer in ALLOWED"
    used = {m.split(".")[1] for m in _imports(path) if m.startswith("agentstore_server.")}
    used = {u for u in used if u in ALLOWED}  # `from agentstore_server import x` names x
    assert used - {part} <= ALLOWED[part], f"{rel} imports {sorted(used - {part} - ALLOWED[part])}"


@pytest.mark.parametrize("path", _files(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_only_the_stores_import_a_database_driver(path: Path) -> None:
    rel = path.relative_to(SERVER)
    drivers = {m.partition(".")[0] for m in _imports(path)} & DRIVERS
    assert rel.parts[0] == "stores" or not drivers, f"{rel} imports {sorted(drivers)}"


def test_the_import_reader_sees_every_form(tmp_path: Path) -> None:
    probe = SERVER / "logs" / "_probe.py"
    try:
        probe.write_text(
            "from agentstore_server import devstack\nfrom .. import ops\nfrom ..bus import rpc\nimport asyncpg\n"
        )
        found = _imports(probe)
    finally:
        probe.unlink()
    assert {
        "agentstore_server.devstack",
        "agentstore_server.ops",
        "agentstore_server.bus.rpc",
        "asyncpg",
    } <= found
