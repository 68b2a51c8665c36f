"""The web console (`agentstore serve web`)."""
