-- Named queries of the metrics service. Every statement is parameterised.

-- name: ingest_points
-- Points and their rollups in one statement (one transaction). Only points
-- stored now feed the rollups, so a redelivered point is never counted twice;
-- rollup rows are written in key order so concurrent batches lock alike.
WITH new AS (
    INSERT INTO metric_points (agent_id, id, name, ts, value, experiment_id, task_id, tags)
    SELECT * FROM unnest(:agent_ids::text[], :ids::text[], :names::text[], :tss::timestamptz[],
                         :values::float8[], :experiment_ids::text[], :task_ids::text[], :tags::jsonb[])
    ON CONFLICT (agent_id, id) DO NOTHING
    RETURNING agent_id, id, name, ts, value, coalesce(experiment_id, '') AS experiment_id
), tiers AS (
    SELECT unnest(:tiers::int[]) AS tier
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
-- Pages by (agent_id, ts, id): :after_agent/:after_ts/:after_id are the last row of the
-- previous page (all null on the first).
SELECT agent_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, value,
       ts, id
FROM metric_points
WHERE name = :name
  AND (:agent_ids::text[] IS NULL OR agent_id = ANY(:agent_ids::text[]))
  AND (:experiment_id::text IS NULL OR experiment_id = :experiment_id)
  AND (:since::timestamptz IS NULL OR ts >= :since)
  AND (:until::timestamptz IS NULL OR ts < :until)
  AND (:after_agent::text IS NULL OR (agent_id, ts, id) > (:after_agent, :after_ts::timestamptz, :after_id::text))
ORDER BY agent_id, ts, id
LIMIT :limit

-- name: raw_buckets
-- :agg (avg, min, max, sum, count, last) picks the aggregate; the FILTERs feed
-- only the chosen one, so the others cost a comparison per row, not a sum.
SELECT agent_id,
       to_char(date_bin(make_interval(secs => :bucket_seconds), ts, 'epoch') AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       CASE :agg::text
           WHEN 'avg' THEN avg(value) FILTER (WHERE :agg = 'avg')
           WHEN 'min' THEN min(value) FILTER (WHERE :agg = 'min')
           WHEN 'max' THEN max(value) FILTER (WHERE :agg = 'max')
           WHEN 'sum' THEN sum(value) FILTER (WHERE :agg = 'sum')
           WHEN 'count' THEN (count(*) FILTER (WHERE :agg = 'count'))::float8
           WHEN 'last' THEN (array_agg(value ORDER BY ts DESC, id DESC) FILTER (WHERE :agg = 'last'))[1]
       END AS value
FROM metric_points
WHERE name = :name
  AND (:agent_ids::text[] IS NULL OR agent_id = ANY(:agent_ids::text[]))
  AND (:experiment_id::text IS NULL OR experiment_id = :experiment_id)
  AND (:since::timestamptz IS NULL OR ts >= :since)
  AND (:until::timestamptz IS NULL OR ts < :until)
  -- Pages by (agent_id, bucket): the next page starts after the last bucket shown.
  AND (:after_agent::text IS NULL OR agent_id > :after_agent
       OR (agent_id = :after_agent AND ts >= :after_bucket::timestamptz + make_interval(secs => :bucket_seconds)))
GROUP BY agent_id, date_bin(make_interval(secs => :bucket_seconds), ts, 'epoch')
ORDER BY 1, 2
LIMIT :limit

-- name: rollup_buckets
-- :bucket_seconds is a multiple of tier :tier; :agg as in raw_buckets, from the rollups' columns.
SELECT agent_id,
       to_char(date_bin(make_interval(secs => :bucket_seconds), bucket, 'epoch') AT TIME ZONE 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       CASE :agg::text
           WHEN 'avg' THEN (sum(sum) FILTER (WHERE :agg = 'avg')) / (sum(count) FILTER (WHERE :agg = 'avg'))
           WHEN 'min' THEN min(min) FILTER (WHERE :agg = 'min')
           WHEN 'max' THEN max(max) FILTER (WHERE :agg = 'max')
           WHEN 'sum' THEN sum(sum) FILTER (WHERE :agg = 'sum')
           WHEN 'count' THEN (sum(count) FILTER (WHERE :agg = 'count'))::float8
           WHEN 'last' THEN (array_agg(last ORDER BY last_ts DESC, last_id DESC) FILTER (WHERE :agg = 'last'))[1]
       END AS value
FROM metric_rollups
WHERE tier = :tier AND name = :name
  AND (:agent_ids::text[] IS NULL OR agent_id = ANY(:agent_ids::text[]))
  AND (:experiment_id::text IS NULL OR experiment_id = :experiment_id)
  AND (:since::timestamptz IS NULL OR bucket >= :since)
  AND (:until::timestamptz IS NULL OR bucket < :until)
  AND (:after_agent::text IS NULL OR agent_id > :after_agent
       OR (agent_id = :after_agent AND bucket >= :after_bucket::timestamptz + make_interval(secs => :bucket_seconds)))
GROUP BY agent_id, date_bin(make_interval(secs => :bucket_seconds), bucket, 'epoch')
ORDER BY 1, 2
LIMIT :limit

-- name: oldest_raw
SELECT min(ts) AS ts FROM metric_points

-- name: sweep_points
DELETE FROM metric_points WHERE ts < :before

-- name: sweep_rollups
DELETE FROM metric_rollups WHERE tier = :tier AND bucket < :before

-- name: get_profile
SELECT * FROM agent_metrics WHERE agent_id = :agent_id

-- name: all_profiles
SELECT * FROM agent_metrics WHERE agent_id > :after ORDER BY agent_id LIMIT :limit

-- name: ensure_profile
INSERT INTO agent_metrics (agent_id) VALUES (:agent_id) ON CONFLICT (agent_id) DO NOTHING

-- name: apply_custody_test
-- One UPDATE computed from the row itself: the row lock serialises concurrent
-- results and each sees the previous one's values, so no increment is lost.
-- :agent_id agent, :passed passed, :xp xp awarded, :tested_at test time, :entry history entry,
-- :history_size history size, :xp_per_level xp per level.
UPDATE agent_metrics m SET
    total_tests_given = m.total_tests_given + 1,
    total_tests_passed = m.total_tests_passed + CASE WHEN :passed THEN 1 ELSE 0 END,
    total_tests_failed = m.total_tests_failed + CASE WHEN :passed THEN 0 ELSE 1 END,
    consecutive_successes = CASE WHEN :passed THEN m.consecutive_successes + 1 ELSE 0 END,
    consecutive_failures = CASE WHEN :passed THEN 0 ELSE m.consecutive_failures + 1 END,
    current_difficulty = agentstore_difficulty(
        m.current_difficulty,
        CASE WHEN :passed THEN m.consecutive_successes + 1 ELSE 0 END,
        CASE WHEN :passed THEN 0 ELSE m.consecutive_failures + 1 END),
    last_test_date = :tested_at,
    test_history = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(m.test_history || jsonb_build_array(:entry::jsonb))
                WITH ORDINALITY AS h(e, n)
            ORDER BY n DESC LIMIT :history_size
        ) kept
    ),
    custody_xp = m.custody_xp + :xp,
    custody_level = 1 + (m.custody_xp + :xp) / :xp_per_level,
    xp = m.xp + :xp,
    level = 1 + (m.xp + :xp) / :xp_per_level,
    pass_rate = (m.total_tests_passed + CASE WHEN :passed THEN 1 ELSE 0 END)::float8
                / (m.total_tests_given + 1),
    updated_at = now()
WHERE m.agent_id = :agent_id
RETURNING m.*

-- name: apply_learning
UPDATE agent_metrics m SET
    learning_score = coalesce(:learning_score, m.learning_score),
    success_rate = coalesce(:success_rate, m.success_rate),
    failure_rate = coalesce(:failure_rate, m.failure_rate),
    pass_rate = coalesce(:pass_rate, m.pass_rate),
    total_learning_cycles = m.total_learning_cycles + 1,
    learning_patterns = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(m.learning_patterns || :patterns::jsonb)
                WITH ORDINALITY AS h(e, n)
            ORDER BY n DESC LIMIT :patterns_cap
        ) kept
    ),
    improvement_suggestions = (
        SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb) FROM (
            SELECT e, n FROM jsonb_array_elements(m.improvement_suggestions || :suggestions::jsonb)
                WITH ORDINALITY AS h(e, n)
            ORDER BY n DESC LIMIT :suggestions_cap
        ) kept
    ),
    updated_at = now()
WHERE m.agent_id = :agent_id
RETURNING m.*

-- name: update_profile
-- Sets exactly the fields :updates names (a JSON object of ProfileUpdate's
-- fields); jsonb_populate_record keeps every other column as it is.
UPDATE agent_metrics AS m SET
    (agent_type, learning_score, success_rate, failure_rate, pass_rate, total_learning_cycles,
     xp, level, prestige, current_difficulty, custody_level, custody_xp, adversarial_wins,
     status, is_active, priority, capabilities, config) =
    (SELECT r.agent_type, r.learning_score, r.success_rate, r.failure_rate, r.pass_rate,
            r.total_learning_cycles, r.xp, r.level, r.prestige, r.current_difficulty,
            r.custody_level, r.custody_xp, r.adversarial_wins, r.status, r.is_active, r.priority,
            r.capabilities, r.config
     FROM jsonb_populate_record(m, :updates::jsonb) AS r),
    updated_at = now()
WHERE m.agent_id = :agent_id
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
WHERE agent_id = :agent_id
RETURNING m.*

-- name: summary
SELECT count(*) AS total_agents,
       coalesce(array_agg(agent_id ORDER BY agent_id), '{}') AS agents,
       coalesce(sum(learning_score), 0) AS total_learning_score,
       coalesce(sum(xp), 0) AS total_xp,
       coalesce(sum(total_tests_given), 0) AS total_tests_given,
       coalesce(sum(total_tests_passed), 0) AS total_tests_passed,
       coalesce(avg(level), 0) AS average_level,
       coalesce(sum(total_tests_failed), 0) AS total_tests_failed,
       coalesce(sum(custody_xp), 0) AS total_custody_xp,
       coalesce(avg(custody_level), 0) AS average_custody_level,
       coalesce(sum(adversarial_wins), 0) AS total_adversarial_wins
FROM agent_metrics

-- name: metric_names
-- A loose index scan over metric_points_series: one index probe per distinct
-- name, not a scan of every point; then one probe per (name, agent).
WITH RECURSIVE names AS (
    (SELECT name FROM metric_points ORDER BY name LIMIT 1)
    UNION ALL
    SELECT (SELECT p.name FROM metric_points p WHERE p.name > n.name ORDER BY p.name LIMIT 1)
    FROM names n WHERE n.name IS NOT NULL
)
SELECT name FROM names
WHERE name IS NOT NULL
  AND (:agent_ids::text[] IS NULL OR EXISTS (
      SELECT 1 FROM metric_points p WHERE p.name = names.name AND p.agent_id = ANY(:agent_ids::text[])))
ORDER BY name

-- name: set_profile
-- Every settable column of seed 002's table, from :fields (a JSON object of exactly the
-- fields given); jsonb_populate_record keeps every other column as it is.
UPDATE agent_metrics AS m SET
    (agent_type, learning_score, success_rate, failure_rate, pass_rate, total_learning_cycles,
     xp, level, prestige, current_difficulty, custody_level, custody_xp, adversarial_wins,
     status, is_active, priority, capabilities, config, total_tests_given, total_tests_passed,
     total_tests_failed, consecutive_successes, consecutive_failures, last_test_date,
     test_history, learning_patterns, improvement_suggestions) =
    (SELECT r.agent_type, r.learning_score, r.success_rate, r.failure_rate, r.pass_rate,
            r.total_learning_cycles, r.xp, r.level, r.prestige, r.current_difficulty,
            r.custody_level, r.custody_xp, r.adversarial_wins, r.status, r.is_active, r.priority,
            r.capabilities, r.config, r.total_tests_given, r.total_tests_passed,
            r.total_tests_failed, r.consecutive_successes, r.consecutive_failures, r.last_test_date,
            r.test_history, r.learning_patterns, r.improvement_suggestions
     FROM jsonb_populate_record(m, :fields::jsonb) AS r),
    -- Setting what is already there is not an update: an importer run twice leaves the row
    -- exactly as it was.
    updated_at = CASE
        WHEN (SELECT to_jsonb(r) FROM jsonb_populate_record(m, :fields::jsonb) AS r) IS DISTINCT FROM to_jsonb(m)
        THEN now() ELSE m.updated_at END
WHERE m.agent_id = :agent_id
RETURNING m.*

-- name: latest_values
-- Each (experiment, name)'s newest value among :experiment_ids of :agent_id, from the hourly
-- rollups (their `last` is the bucket's newest point): hours x names rows per experiment,
-- never its raw points. An experiment whose points are older than the hourly retention has none.
SELECT DISTINCT ON (experiment_id, name) experiment_id, name, last AS value, last_ts AS ts
FROM metric_rollups
WHERE tier = 3600 AND agent_id = :agent_id AND experiment_id = ANY(:experiment_ids::text[])
ORDER BY experiment_id, name, bucket DESC
