-- Named queries of the metrics service. Every statement is parameterised.

-- name: ingest_points
-- Points and their rollups in one statement (one transaction). Only points
-- stored now feed the rollups, so a redelivered point is never counted twice;
-- rollup rows are written in key order so concurrent batches lock alike.
WITH new AS (
    INSERT INTO metric_points (agent_id, id, name, ts, value, experiment_id, task_id, tags)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                         $5::float8[], $6::text[], $7::text[], $8::jsonb[])
    ON CONFLICT (agent_id, id) DO NOTHING
    RETURNING agent_id, id, name, ts, value, coalesce(experiment_id, '') AS experiment_id
), tiers AS (
    SELECT unnest($9::int[]) AS tier
), agg AS (
    SELECT t.tier, n.name, n.agent_id, n.experiment_id,
           date_bin(make_interval(secs => t.tier), n.ts, 'epoch') AS bucket,
           count(*) AS count, sum(n.value) AS sum, min(n.value) AS min, max(n.value) AS max,
           (array_agg(n.value ORDER BY n.ts DESC, n.id DESC))[1] AS last,
           max(n.ts) AS last_ts,
           (array_agg(n.id ORDER BY n.ts DESC, n.id DESC))[1] AS last_id
    FROM new n CROSS JOIN tiers t
    GROUP BY 1, 2, 3, 4, 5
)
INSERT INTO metric_rollups AS r
    (tier, name, agent_id, experiment_id, bucket, count, sum, min, max, last, last_ts, last_id)
SELECT * FROM agg ORDER BY tier, name, agent_id, experiment_id, bucket
ON CONFLICT (tier, name, agent_id, experiment_id, bucket) DO UPDATE SET
    count = r.count + EXCLUDED.count,
    sum = r.sum + EXCLUDED.sum,
    min = least(r.min, EXCLUDED.min),
    max = greatest(r.max, EXCLUDED.max),
    last = CASE WHEN (EXCLUDED.last_ts, EXCLUDED.last_id) > (r.last_ts, r.last_id)
                THEN EXCLUDED.last ELSE r.last END,
    last_id = CASE WHEN (EXCLUDED.last_ts, EXCLUDED.last_id) > (r.last_ts, r.last_id)
                THEN EXCLUDED.last_id ELSE r.last_id END,
    last_ts = greatest(r.last_ts, EXCLUDED.last_ts)

-- name: raw_points
SELECT agent_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, value
FROM metric_points
WHERE name = $1
  AND ($2::text[] IS NULL OR agent_id = ANY($2::text[]))
  AND ($3::text IS NULL OR experiment_id = $3)
  AND ($4::timestamptz IS NULL OR ts >= $4)
  AND ($5::timestamptz IS NULL OR ts < $5)
ORDER BY agent_id, ts, id
LIMIT $6

-- name: raw_buckets
-- {agg} is one of RAW_AGGREGATES (series.py), never request text; $6 is the bucket width (s).
SELECT agent_id,
       to_char(date_bin(make_interval(secs => $6), ts, 'epoch') AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       {agg} AS value
FROM metric_points
WHERE name = $1
  AND ($2::text[] IS NULL OR agent_id = ANY($2::text[]))
  AND ($3::text IS NULL OR experiment_id = $3)
  AND ($4::timestamptz IS NULL OR ts >= $4)
  AND ($5::timestamptz IS NULL OR ts < $5)
GROUP BY agent_id, date_bin(make_interval(secs => $6), ts, 'epoch')
ORDER BY 1, 2

-- name: rollup_buckets
-- {agg} is one of ROLLUP_AGGREGATES (series.py); $6 the bucket width (s), a multiple of tier $7.
SELECT agent_id,
       to_char(date_bin(make_interval(secs => $6), bucket, 'epoch') AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       {agg} AS value
FROM metric_rollups
WHERE tier = $7 AND name = $1
  AND ($2::text[] IS NULL OR agent_id = ANY($2::text[]))
  AND ($3::text IS NULL OR experiment_id = $3)
  AND ($4::timestamptz IS NULL OR bucket >= $4)
  AND ($5::timestamptz IS NULL OR bucket < $5)
GROUP BY agent_id, date_bin(make_interval(secs => $6), bucket, 'epoch')
ORDER BY 1, 2

-- name: oldest_raw
SELECT min(ts) AS ts FROM metric_points

-- name: sweep_points
DELETE FROM metric_points WHERE ts < $1

-- name: sweep_rollups
DELETE FROM metric_rollups WHERE tier = $1 AND bucket < $2

-- name: get_profile
SELECT * FROM agent_metrics WHERE agent_id = $1

-- name: all_profiles
SELECT * FROM agent_metrics ORDER BY agent_id

-- name: ensure_profile
INSERT INTO agent_metrics (agent_id) VALUES ($1) ON CONFLICT (agent_id) DO NOTHING

-- name: apply_custody_test
-- One UPDATE computed from the row itself: the row lock serialises concurrent
-- results and each sees the previous one's values, so no increment is lost.
-- $1 agent, $2 passed, $3 xp awarded, $4 test time, $5 history entry,
-- $6 history size, $7 xp per level.
UPDATE agent_metrics m SET
    total_tests_given = m.total_tests_given + 1,
    total_tests_passed = m.total_tests_passed + CASE WHEN $2 THEN 1 ELSE 0 END,
    total_tests_failed = m.total_tests_failed + CASE WHEN $2 THEN 0 ELSE 1 END,
    consecutive_successes = CASE WHEN $2 THEN m.consecutive_successes + 1 ELSE 0 END,
    consecutive_failures = CASE WHEN $2 THEN 0 ELSE m.consecutive_failures + 1 END,
    current_difficulty = agentstore_difficulty(
        m.current_difficulty,
        CASE WHEN $2 THEN m.consecutive_successes + 1 ELSE 0 END,
        CASE WHEN $2 THEN 0 ELSE m.consecutive_failures + 1 END),
    last_test_date = $4,
    test_history = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(m.test_history || jsonb_build_array($5::jsonb))
                WITH ORDINALITY AS h(e, n)
            ORDER BY n DESC LIMIT $6
        ) kept
    ),
    custody_xp = m.custody_xp + $3,
    custody_level = 1 + (m.custody_xp + $3) / $7,
    xp = m.xp + $3,
    level = 1 + (m.xp + $3) / $7,
    pass_rate = (m.total_tests_passed + CASE WHEN $2 THEN 1 ELSE 0 END)::float8
                / (m.total_tests_given + 1),
    updated_at = now()
WHERE m.agent_id = $1
RETURNING m.*

-- name: apply_learning
UPDATE agent_metrics m SET
    learning_score = coalesce($2, m.learning_score),
    success_rate = coalesce($3, m.success_rate),
    failure_rate = coalesce($4, m.failure_rate),
    pass_rate = coalesce($5, m.pass_rate),
    total_learning_cycles = m.total_learning_cycles + 1,
    learning_patterns = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(m.learning_patterns || $6::jsonb)
                WITH ORDINALITY AS h(e, n)
            ORDER BY n DESC LIMIT 100
        ) kept
    ),
    improvement_suggestions = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(m.improvement_suggestions || $7::jsonb)
                WITH ORDINALITY AS h(e, n)
            ORDER BY n DESC LIMIT 50
        ) kept
    ),
    updated_at = now()
WHERE m.agent_id = $1
RETURNING m.*

-- name: reset_profile
UPDATE agent_metrics m SET
    learning_score = 0, success_rate = 0, failure_rate = 0, pass_rate = 0,
    total_learning_cycles = 0, xp = 0, level = 1, prestige = 0,
    current_difficulty = 'basic', total_tests_given = 0, total_tests_passed = 0,
    total_tests_failed = 0, consecutive_successes = 0, consecutive_failures = 0,
    last_test_date = NULL, test_history = '[]', custody_level = 1, custody_xp = 0,
    adversarial_wins = 0, learning_patterns = '[]', improvement_suggestions = '[]',
    status = 'idle', updated_at = now()
WHERE agent_id = $1
RETURNING m.*

-- name: summary
SELECT count(*) AS total_agents,
       coalesce(array_agg(agent_id ORDER BY agent_id), '{}') AS agents,
       coalesce(sum(learning_score), 0) AS total_learning_score,
       coalesce(sum(xp), 0) AS total_xp,
       coalesce(sum(total_tests_given), 0) AS total_tests_given,
       coalesce(sum(total_tests_passed), 0) AS total_tests_passed,
       coalesce(avg(level), 0) AS average_level
FROM agent_metrics
