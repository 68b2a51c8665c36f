"""NATS plumbing: connection, stream catalogue, provisioning, ingest loop, request-reply."""
