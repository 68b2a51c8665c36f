"""Service lifecycle: start, serve, drain, stop; health, metrics, logs."""
