"""The client side of NATS: connecting (credentials, refusals) and reading dead letters."""
