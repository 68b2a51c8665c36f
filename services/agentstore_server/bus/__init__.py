"""NATS plumbing of the services: stream provisioning, the ingest loop, request-reply."""
