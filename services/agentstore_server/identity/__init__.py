"""The identity service: run-time identities for agents nobody listed (NATS auth callout)."""
