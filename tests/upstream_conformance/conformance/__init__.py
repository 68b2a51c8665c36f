"""langgraph-checkpoint-conformance: conformance test suite for checkpointer implementations."""

from tests.upstream_conformance.conformance.initializer import checkpointer_test
from tests.upstream_conformance.conformance.validate import validate

__all__ = [
    "checkpointer_test",
    "validate",
]
