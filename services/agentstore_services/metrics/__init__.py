"""metrics service."""
