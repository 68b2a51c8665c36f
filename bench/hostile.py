"""The Hypothesis suite of hostile input (tests/test_hostile.py) at its large size: 300
generated examples of bodies and of each endpoint's requests instead of make test's 15.

    python -m bench.hostile [pytest args]
"""

from __future__ import annotations

import os
import sys

import pytest


def main() -> int:
    os.environ["AGENTSTORE_HYPOTHESIS"] = "large"
    return int(pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_hostile.py", *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
