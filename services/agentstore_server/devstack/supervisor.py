"""The local stack's supervisor: restarts what crashed, with backoff, as Kubernetes would.

`agentstore up` records how it started each process (`run/<name>.json`: argv,
environment, log file, OS user) beside its pid file, and starts one detached
supervisor (`agentstore supervise`, pid in `run/supervisor.pid`). Every
quarter second the supervisor looks at each recorded process; one that is gone
is started again the same way. Restarts in a row back off (0, 0.5, 1, 2 ... 30 s)
and the streak resets once a process has lived a minute; `status` shows the
count. `down` stops the supervisor first, so nothing comes back behind it.

A pid is only ever taken for one of ours after its command line is checked:
after a reboot or a long stop, the number may belong to another program.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agentstore.private import write_private

log = logging.getLogger("agentstore.supervisor")

TICK = 0.25
# `up` holds this file while it starts things; a pause older than this is a crashed `up`.
PAUSE_FILE = "supervisor.paused"
PAUSE_LIMIT = 600.0
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0


@dataclass
class Recipe:
    """How a stack process was started, so it can be started again the same way."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: str
    address: str
    user: str | None = None
    restarts: int = 0
    # Restarts since the process last lived STABLE_SECONDS (the backoff's exponent).
    streak: int = 0
    started_at: float = field(default_factory=time.time)

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{self.name}.json.tmp"
        write_private(tmp, json.dumps(asdict(self)))  # owner-only: `env` holds passwords
        tmp.replace(run_dir / f"{self.name}.json")

    @classmethod
    def load(cls, path: Path) -> Recipe | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def recipes(run_dir: Path) -> list[Recipe]:
    found = (Recipe.load(p) for p in sorted(run_dir.glob("*.json")) if not p.name.startswith("."))
    return [r for r in found if r is not None]


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def owns(pid: int, argv: list[str]) -> bool:
    """Whether `pid` runs `argv` (same program, same arguments): our process, not a reused pid."""
    found = command_line(pid)
    return bool(found) and Path(found[0]).name == Path(argv[0]).name and found[1:] == argv[1:]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie counts as gone
    except OSError:
        return True


def spawn(recipe: Recipe) -> int:
    """Start the recipe's process detached (its own session), appending to its log."""
    Path(recipe.log).parent.mkdir(parents=True, exist_ok=True)
    with open(recipe.log, "ab") as out:
        process = subprocess.Popen(
            recipe.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **recipe.env},
            start_new_session=True,
            user=recipe.user,
        )
    return process.pid


def backoff(streak: int) -> float:
    return 0.0 if streak <= 0 else min(MAX_BACKOFF, 0.5 * 2 ** (streak - 1))


class Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._stop = False
        self._reaped: list[subprocess.Popen[bytes]] = []

    def pid_of(self, name: str) -> int | None:
        try:
            return int((self.run_dir / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def tend(self, now: float) -> list[str]:
        """One look at every recorded process; returns the names restarted."""
        restarted: list[str] = []
        try:
            if now - (self.run_dir / PAUSE_FILE).stat().st_mtime < PAUSE_LIMIT:
                return restarted
        except OSError:
            pass
        for recipe in recipes(self.run_dir):
            pid = self.pid_of(recipe.name)
            if pid is not None and alive(pid) and owns(pid, recipe.argv):
                if recipe.streak and now - recipe.started_at > STABLE_SECONDS:
                    recipe.streak = 0
                    recipe.save(self.run_dir)
                continue
            if now - recipe.started_at < backoff(recipe.streak):
                continue
            try:
                new_pid = spawn(recipe)
            except OSError as exc:
                log.error("could not restart %s: %s", recipe.name, exc)
                recipe.started_at, recipe.streak = now, recipe.streak + 1
                recipe.save(self.run_dir)
                continue
            recipe.restarts += 1
            recipe.streak += 1
            recipe.started_at = now
            (self.run_dir / f"{recipe.name}.pid").write_text(f"{new_pid} {recipe.address}\n")
            recipe.save(self.run_dir)
            log.warning("%s was gone (pid %s); restarted as pid %s (restart %d)",
                        recipe.name, pid, new_pid, recipe.restarts)  # fmt: skip
            restarted.append(recipe.name)
        return restarted

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        log.info("supervising %s", self.run_dir)
        while not self._stop:
            self.tend(time.time())
            # Children that exited are reaped by the kernel's init once we are gone; while
            # we live, collect them so they do not stay zombies.
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            time.sleep(TICK)  # the supervision period
        log.info("supervisor stopped")
        return 0

    def _on_stop(self, *_: object) -> None:
        self._stop = True
