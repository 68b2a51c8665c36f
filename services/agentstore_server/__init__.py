"""The agentstore services: logs, tasks, artifacts, metrics. Each declares a ServiceSpec."""
