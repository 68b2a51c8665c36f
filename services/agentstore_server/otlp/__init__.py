"""OpenTelemetry ingest (`agentstore serve otlp`): an OTLP/HTTP receiver."""
