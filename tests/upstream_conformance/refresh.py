"""Refresh the vendored copy of LangGraph's checkpointer conformance suite from a checkout
of https://github.com/langchain-ai/langgraph (its `libs/checkpoint-conformance`):

    git clone https://github.com/langchain-ai/langgraph /tmp/langgraph
    python -m tests.upstream_conformance.refresh /tmp/langgraph

Copies the package's modules here with their imports pointed at this folder (the released
`langgraph-checkpoint-conformance` package keeps its own name beside it), records the
commit in SOURCE, and keeps LangGraph's licence. Then run `make test`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = Path("libs/checkpoint-conformance/langgraph/checkpoint/conformance")
OURS = "tests.upstream_conformance.conformance"


def refresh(checkout: Path) -> str:
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    target = HERE / "conformance"
    for old in target.rglob("*.py"):
        old.unlink()
    for source in sorted((checkout / PACKAGE).rglob("*.py")):
        dest = target / source.relative_to(checkout / PACKAGE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(source.read_text().replace("langgraph.checkpoint.conformance", OURS))
    (HERE / "LICENSE").write_text((checkout / "LICENSE").read_text())
    (HERE / "SOURCE").write_text(
        f"https://github.com/langchain-ai/langgraph/tree/{commit}/{PACKAGE.parent.parent.parent}\n"
        f"commit {commit}\n"
    )
    return commit


if __name__ == "__main__":
    print("vendored langgraph commit", refresh(Path(sys.argv[1])))
