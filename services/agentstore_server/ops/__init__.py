"""Operator tools behind the `agentstore` command: dead letters, tail, demo fleet."""
