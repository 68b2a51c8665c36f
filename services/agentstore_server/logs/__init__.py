"""logs service: logs, memories, conversations, messages, audit events, agent outputs in MongoDB."""
