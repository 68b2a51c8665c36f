"""artifacts service."""
