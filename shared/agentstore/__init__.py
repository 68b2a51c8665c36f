"""agentstore: durable storage for fleets of AI agents, over NATS.

Agents publish to JetStream subjects (``agents.{agent}.logs`` ...); small
services store what they receive in MongoDB, PostgreSQL and MinIO and answer
queries by request-reply. The wire contract is ``agentstore.contract`` (and
``docs/CONTRACT.md``); this package's top level is the SDK:

    from agentstore import AgentClient, EvaluatorClient

``pip install agentstore`` brings only what the SDK needs (nats-py, msgspec);
the services and the local stack come with the ``server``/``stack`` extras.
"""

from agentstore.bus.connect import NatsSettings
from agentstore.client import AgentClient, EvaluatorClient, Lease, Position
from agentstore.errors import (
    AgentstoreError,
    BadRequest,
    Conflict,
    Forbidden,
    LeaseLost,
    NotFound,
    RequestError,
    Unavailable,
)
from agentstore.ids import new_id

__version__ = "0.3.0"

__all__ = [
    "AgentClient",
    "AgentstoreError",
    "BadRequest",
    "Conflict",
    "EvaluatorClient",
    "Forbidden",
    "Lease",
    "LeaseLost",
    "NatsSettings",
    "NotFound",
    "Position",
    "RequestError",
    "Unavailable",
    "__version__",
    "new_id",
]
