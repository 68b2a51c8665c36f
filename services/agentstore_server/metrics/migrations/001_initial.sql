-- Time series (seed 000's metrics history) with rollups, and agent profiles (seed 002).

CREATE TABLE metric_points (
    agent_id       text             NOT NULL,
    id             text             NOT NULL,
    name           text             NOT NULL,
    ts             timestamptz      NOT NULL,
    value          double precision NOT NULL,
    experiment_id  text,
    task_id        text,
    tags           jsonb,
    PRIMARY KEY (agent_id, id)
);
CREATE INDEX metric_points_series ON metric_points (name, agent_id, ts);
CREATE INDEX metric_points_experiment ON metric_points (name, experiment_id, ts);
CREATE INDEX metric_points_ts ON metric_points (ts);

-- One row per (tier, series, bucket), kept at ingest from newly stored points
-- only, so redelivery never counts a point twice. tier is the bucket width in
-- seconds (60, 3600); experiment_id '' stands for "none".
CREATE TABLE metric_rollups (
    tier           integer          NOT NULL,
    name           text             NOT NULL,
    agent_id       text             NOT NULL,
    experiment_id  text             NOT NULL,
    bucket         timestamptz      NOT NULL,
    count          bigint           NOT NULL,
    sum            double precision NOT NULL,
    min            double precision NOT NULL,
    max            double precision NOT NULL,
    last           double precision NOT NULL,
    last_ts        timestamptz      NOT NULL,
    last_id        text             NOT NULL,
    PRIMARY KEY (tier, name, agent_id, experiment_id, bucket)
);
CREATE INDEX metric_rollups_bucket ON metric_rollups (tier, bucket);

CREATE TABLE agent_metrics (
    agent_id                 text        PRIMARY KEY,
    agent_type               text,
    learning_score           double precision NOT NULL DEFAULT 0,
    success_rate             double precision NOT NULL DEFAULT 0,
    failure_rate             double precision NOT NULL DEFAULT 0,
    pass_rate                double precision NOT NULL DEFAULT 0,
    total_learning_cycles    integer     NOT NULL DEFAULT 0,
    xp                       integer     NOT NULL DEFAULT 0,
    level                    integer     NOT NULL DEFAULT 1,
    prestige                 integer     NOT NULL DEFAULT 0,
    current_difficulty       text        NOT NULL DEFAULT 'basic',
    total_tests_given        integer     NOT NULL DEFAULT 0,
    total_tests_passed       integer     NOT NULL DEFAULT 0,
    total_tests_failed       integer     NOT NULL DEFAULT 0,
    consecutive_successes    integer     NOT NULL DEFAULT 0,
    consecutive_failures     integer     NOT NULL DEFAULT 0,
    last_test_date           timestamptz,
    test_history             jsonb       NOT NULL DEFAULT '[]',
    custody_level            integer     NOT NULL DEFAULT 1,
    custody_xp               integer     NOT NULL DEFAULT 0,
    adversarial_wins         integer     NOT NULL DEFAULT 0,
    learning_patterns        jsonb       NOT NULL DEFAULT '[]',
    improvement_suggestions  jsonb       NOT NULL DEFAULT '[]',
    status                   text        NOT NULL DEFAULT 'idle',
    is_active                boolean     NOT NULL DEFAULT true,
    priority                 text        NOT NULL DEFAULT 'medium',
    capabilities             jsonb,
    config                   jsonb,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- The custody difficulty ladder, climbed and descended by streaks.
CREATE FUNCTION agentstore_difficulty(current text, successes int, failures int)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT ladder[greatest(1, least(5,
        array_position(ladder, current)
        + CASE WHEN successes > 0 AND successes % 3 = 0 THEN 1 ELSE 0 END
        - CASE WHEN failures > 0 AND failures % 2 = 0 THEN 1 ELSE 0 END))]
    FROM (SELECT ARRAY['basic', 'standard', 'advanced', 'expert', 'master'] AS ladder) l
$$;
