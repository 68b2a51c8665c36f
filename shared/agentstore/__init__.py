"""agentstore: durable storage for fleets of AI agents, over NATS.

Agents publish to JetStream subjects (``agents.{agent}.logs`` ...); small
services store what they receive in MongoDB, PostgreSQL and MinIO and answer
queries by request-reply. The wire contract is in ``docs/CONTRACT.md``.
"""

__version__ = "0.1.0"
