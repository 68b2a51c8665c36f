"""tasks service."""
