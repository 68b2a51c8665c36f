-- query.latest_metrics (v1.4; rpc.restore's latest values of open experiments): the newest
-- hourly rollup of each (experiment, name) of one agent. The rollups' key leads with name,
-- so without this index the lookup would read the whole tier. Rollup rows are mostly
-- updated in place and no indexed column changes, so ingest keeps its HOT updates.
CREATE INDEX metric_rollups_latest ON metric_rollups (tier, agent_id, experiment_id, name, bucket);
