-- Named queries of the tasks service. Every statement is parameterised.

-- name: upsert_tasks
-- One row per (agent, task) per call (the caller keeps the newest of a batch);
-- the row is only updated by a newer (ts, seq).
INSERT INTO tasks AS t (agent_id, task_id, status, kind, title, meta, ts, seq, created_at)
SELECT a, i, s, k, ti, m::jsonb, ts, q, ts
FROM unnest(:agent_ids::text[], :task_ids::text[], :statuses::text[], :kinds::text[], :titles::text[], :metas::text[],
            :tss::timestamptz[], :seqs::bigint[]) AS u(a, i, s, k, ti, m, ts, q)
ON CONFLICT (agent_id, task_id) DO UPDATE SET
    status = EXCLUDED.status,
    kind = coalesce(EXCLUDED.kind, t.kind),
    title = coalesce(EXCLUDED.title, t.title),
    meta = coalesce(EXCLUDED.meta, t.meta),
    ts = EXCLUDED.ts,
    seq = EXCLUDED.seq,
    updated_at = now()
WHERE (t.ts, t.seq) < (EXCLUDED.ts, EXCLUDED.seq)

-- name: insert_progress
INSERT INTO task_progress (agent_id, id, task_id, ts, step, status, percent, detail)
SELECT * FROM unnest(:agent_ids::text[], :ids::text[], :task_ids::text[], :tss::timestamptz[], :steps::int[],
                     :statuses::text[], :percents::float8[], :details::jsonb[])
ON CONFLICT (agent_id, id) DO NOTHING

-- name: list_tasks
SELECT t.agent_id, t.task_id, t.status, coalesce(t.kind, 'task') AS kind, t.title, t.meta,
       t.ts, t.created_at, t.updated_at,
       p.id AS p_id, p.step AS p_step, p.status AS p_status, p.percent AS p_percent,
       p.detail AS p_detail, p.ts AS p_ts
FROM tasks t
LEFT JOIN LATERAL (
    SELECT * FROM task_progress p
    WHERE p.agent_id = t.agent_id AND p.task_id = t.task_id
    ORDER BY p.step DESC, p.ts DESC, p.id DESC
    LIMIT 1
) p ON true
WHERE (:agent_ids::text[] IS NULL OR t.agent_id = ANY(:agent_ids::text[]))
  AND (:statuses::text[] IS NULL OR t.status = ANY(:statuses::text[]))
  AND (:kind::text IS NULL OR coalesce(t.kind, 'task') = :kind)
  AND (:after_ts::timestamptz IS NULL OR (t.updated_at, t.agent_id, t.task_id) < (:after_ts, :after_agent, :after_task))
ORDER BY t.updated_at DESC, t.agent_id DESC, t.task_id DESC
LIMIT :limit

-- name: get_task
SELECT agent_id, task_id, status, coalesce(kind, 'task') AS kind, title, meta, ts,
       created_at, updated_at
FROM tasks WHERE agent_id = :agent_id AND task_id = :task_id

-- name: task_progress
SELECT id, step, status, percent, detail, ts FROM task_progress
WHERE agent_id = :agent_id AND task_id = :task_id
  AND (:after_ts::timestamptz IS NULL OR (step, ts, id) > (:after_step, :after_ts, :after_id))
ORDER BY step, ts, id
LIMIT :limit

-- name: task_evaluations
SELECT * FROM evaluations WHERE agent_id = :agent_id AND task_id = :task_id ORDER BY created_at, id

-- name: insert_evaluation
INSERT INTO evaluations (id, agent_id, task_id, evaluator, score, passed, notes, details)
VALUES (:id, :agent_id, :task_id, :evaluator, :score, :passed, :notes, :details::jsonb)
ON CONFLICT (id) DO NOTHING

-- name: get_evaluation
SELECT * FROM evaluations WHERE id = :id

-- name: insert_study
INSERT INTO studies (spec_hash, spec) VALUES (:spec_hash, :spec::jsonb)
ON CONFLICT (spec_hash) DO NOTHING
RETURNING spec_hash

-- name: insert_run
INSERT INTO runs (run_id, spec_hash, kind, priority, max_attempts)
VALUES (:run_id, :spec_hash, :kind, :priority, :max_attempts)
ON CONFLICT (run_id) DO NOTHING
RETURNING *

-- name: get_run
SELECT * FROM runs WHERE run_id = :run_id

-- name: get_study
SELECT * FROM studies WHERE spec_hash = :spec_hash

-- name: run_events
SELECT id, ts, type, agent_id, attempt, payload FROM run_events
WHERE run_id = :run_id AND id > :after_id
ORDER BY id
LIMIT :limit

-- name: add_run_event
INSERT INTO run_events (run_id, type, agent_id, attempt, payload)
VALUES (:run_id, :type, :agent_id, :attempt, :payload::jsonb)
RETURNING id, ts

-- name: expire_leases
-- Expired leases go back to the queue, or fail the run once its attempts are
-- spent; each move is recorded. SKIP LOCKED: concurrent sweeps share the work.
WITH expired AS (
    SELECT run_id, claimed_by AS holder FROM runs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE runs r SET
        status = CASE WHEN r.attempt >= r.max_attempts THEN 'failed' ELSE 'queued' END,
        error = CASE WHEN r.attempt >= r.max_attempts
            THEN jsonb_build_object('reason', 'lease expired on the last attempt',
                                    'attempts', r.attempt, 'holder', expired.holder)
            ELSE r.error END,
        ended_at = CASE WHEN r.attempt >= r.max_attempts THEN now() END,
        claimed_by = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM expired WHERE r.run_id = expired.run_id
    RETURNING r.run_id, r.status, r.attempt, expired.holder
)
INSERT INTO run_events (run_id, type, agent_id, attempt, payload)
SELECT run_id, CASE WHEN status = 'failed' THEN 'failed' ELSE 'lease_expired' END,
       holder, attempt, NULL
FROM moved
RETURNING run_id, type, agent_id, attempt, id, ts

-- name: claim_run
-- One round trip: claim the next queued run, record the event, return it with its spec.
WITH next AS (
    SELECT run_id FROM runs
    WHERE status = 'queued' AND (:kinds::text[] IS NULL OR kind = ANY(:kinds::text[]))
    ORDER BY priority DESC, created_at, run_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE runs r SET
        status = 'running',
        claimed_by = :agent_id,
        lease_expires_at = now() + make_interval(secs => :lease_seconds),
        attempt = r.attempt + 1,
        started_at = coalesce(r.started_at, now()),
        updated_at = now()
    FROM next WHERE r.run_id = next.run_id
    RETURNING r.*
), event AS (
    INSERT INTO run_events (run_id, type, agent_id, attempt)
    SELECT run_id, 'claimed', :agent_id, attempt FROM claimed
)
SELECT claimed.*, studies.spec FROM claimed JOIN studies USING (spec_hash)

-- name: claim_runs
-- claim_run for many claimants at once (the claims that arrived while the previous
-- statement ran): one statement and one commit for all. Claimant n (1-based, in the order
-- of :agent_ids) gets the n-th queued run in queue order, or nothing when the queue is
-- shorter; each run is taken by one claimant only (FOR UPDATE SKIP LOCKED).
WITH claimant AS (
    SELECT a AS agent_id, l AS lease_seconds, n
    FROM unnest(:agent_ids::text[], :leases::float8[]) WITH ORDINALITY AS u(a, l, n)
), locked AS (
    SELECT run_id, priority, created_at FROM runs
    WHERE status = 'queued' AND (:kinds::text[] IS NULL OR kind = ANY(:kinds::text[]))
    ORDER BY priority DESC, created_at, run_id
    LIMIT cardinality(:agent_ids::text[])
    FOR UPDATE SKIP LOCKED
), next AS (
    SELECT run_id, row_number() OVER (ORDER BY priority DESC, created_at, run_id) AS n FROM locked
), claimed AS (
    UPDATE runs r SET
        status = 'running',
        claimed_by = c.agent_id,
        lease_expires_at = now() + make_interval(secs => c.lease_seconds),
        attempt = r.attempt + 1,
        started_at = coalesce(r.started_at, now()),
        updated_at = now()
    FROM next JOIN claimant c USING (n)
    WHERE r.run_id = next.run_id
    RETURNING r.*, c.n AS claimant
), event AS (
    INSERT INTO run_events (run_id, type, agent_id, attempt)
    SELECT run_id, 'claimed', claimed_by, attempt FROM claimed
)
SELECT claimed.*, studies.spec FROM claimed JOIN studies USING (spec_hash)

-- name: renew_lease
UPDATE runs SET lease_expires_at = now() + make_interval(secs => :lease_seconds), updated_at = now()
WHERE run_id = :run_id AND status = 'running' AND claimed_by = :agent_id AND lease_expires_at > now()
  AND (:attempt::int IS NULL OR attempt = :attempt)
RETURNING *

-- name: move_phase
UPDATE runs SET phase = :phase, updated_at = now()
WHERE run_id = :run_id AND status = 'running' AND claimed_by = :agent_id AND lease_expires_at > now()
  AND (:attempt::int IS NULL OR attempt = :attempt)
RETURNING *

-- name: release_run
UPDATE runs SET
    status = :status,
    phase = CASE WHEN :status = 'succeeded' THEN 'done' ELSE phase END,
    error = coalesce(:error::jsonb, error),
    summary = coalesce(:summary::jsonb, summary),
    artifacts = coalesce(:artifacts::jsonb, artifacts),
    claimed_by = NULL,
    lease_expires_at = NULL,
    ended_at = CASE WHEN :status = 'queued' THEN NULL ELSE now() END,
    updated_at = now()
WHERE run_id = :run_id AND status = 'running' AND claimed_by = :agent_id AND lease_expires_at > now()
  AND (:attempt::int IS NULL OR attempt = :attempt)
RETURNING *

-- name: cancel_run
UPDATE runs SET status = 'cancelled', claimed_by = NULL, lease_expires_at = NULL,
                ended_at = now(), updated_at = now()
WHERE run_id = :run_id AND status IN ('queued', 'running')
RETURNING *

-- name: held_runs
SELECT * FROM runs
WHERE claimed_by = :agent_id AND status = 'running' AND lease_expires_at > now()
ORDER BY created_at

-- name: list_runs
SELECT * FROM runs
WHERE (:status::text IS NULL OR status = :status)
  AND (:spec_hash::text IS NULL OR spec_hash = :spec_hash)
  AND (:phase::text IS NULL OR phase = :phase)
  AND (:claimed_by::text IS NULL OR claimed_by = :claimed_by)
  AND (:after_ts::timestamptz IS NULL OR (created_at, run_id) < (:after_ts, :after_run))
ORDER BY created_at DESC, run_id DESC
LIMIT :limit

-- name: count_tasks
SELECT status, count(*) AS n FROM tasks
WHERE (:kind::text IS NULL OR coalesce(kind, 'task') = :kind)
GROUP BY status

-- name: count_tasks_by_agent
SELECT agent_id, status, count(*) AS n FROM tasks
WHERE agent_id = ANY(:agent_ids::text[])
  AND (:kind::text IS NULL OR coalesce(kind, 'task') = :kind)
GROUP BY agent_id, status

-- name: count_runs
SELECT status, count(*) AS n FROM runs
WHERE (:spec_hash::text IS NULL OR spec_hash = :spec_hash)
GROUP BY status

-- name: update_run
-- An orchestrator's change outside a lease: only the fields given; a terminal status
-- ends the lease and stamps ended_at.
UPDATE runs SET
    status = coalesce(:status, status),
    phase = coalesce(:phase, phase),
    summary = coalesce(:summary::jsonb, summary),
    error = coalesce(:error::jsonb, error),
    artifacts = coalesce(:artifacts::jsonb, artifacts),
    claimed_by = CASE WHEN :status IN ('succeeded', 'failed', 'cancelled', 'queued') THEN NULL ELSE claimed_by END,
    lease_expires_at = CASE WHEN :status IN ('succeeded', 'failed', 'cancelled', 'queued') THEN NULL
                            ELSE lease_expires_at END,
    ended_at = CASE WHEN :status IN ('succeeded', 'failed', 'cancelled') THEN now()
                    WHEN :status IN ('queued', 'running') THEN NULL ELSE ended_at END,
    updated_at = now()
WHERE run_id = :run_id
RETURNING *

-- name: import_studies
-- Seed 004's studies with their own spec_hash (never re-hashed); the first import wins.
INSERT INTO studies (spec_hash, spec, created_at)
SELECT h, s::jsonb, coalesce(c, now())
FROM unnest(:hashes::text[], :specs::text[], :created::timestamptz[]) AS u(h, s, c)
ON CONFLICT (spec_hash) DO NOTHING

-- name: existing_studies
SELECT spec_hash FROM studies WHERE spec_hash = ANY(:hashes::text[])

-- name: existing_runs
SELECT run_id FROM runs WHERE run_id = ANY(:run_ids::text[])

-- name: import_runs
-- Seed 004's runs as they were (status, phase, holder, lease, times); a run already here
-- (imported before, or living on since) is left alone.
INSERT INTO runs (run_id, spec_hash, kind, priority, status, phase, claimed_by, lease_expires_at,
                  attempt, max_attempts, error, summary, artifacts, created_at, updated_at,
                  started_at, ended_at)
SELECT r, h, k, p, s, ph, c, l, a, m, e::jsonb, su::jsonb, ar::jsonb, coalesce(ca, now()),
       coalesce(ua, ca, now()), sa, ea
FROM unnest(:run_ids::text[], :hashes::text[], :kinds::text[], :priorities::int[], :statuses::text[],
            :phases::text[], :holders::text[], :leases::timestamptz[], :attempts::int[],
            :max_attempts::int[], :errors::text[], :summaries::text[], :artifacts::text[],
            :created::timestamptz[], :updated::timestamptz[], :started::timestamptz[],
            :ended::timestamptz[])
    AS u(r, h, k, p, s, ph, c, l, a, m, e, su, ar, ca, ua, sa, ea)
ON CONFLICT (run_id) DO NOTHING

-- name: import_summaries
-- A seed 004 summary merged into its run's summary (its keys win); unchanged rows untouched,
-- so a second import writes nothing.
UPDATE runs AS r SET summary = coalesce(r.summary, '{}'::jsonb) || u.s::jsonb
FROM unnest(:run_ids::text[], :summaries::text[]) AS u(id, s)
WHERE r.run_id = u.id AND r.summary IS DISTINCT FROM coalesce(r.summary, '{}'::jsonb) || u.s::jsonb

-- name: import_run_events
-- Appended in the order given, each once (by source_id), at the run's current attempt.
INSERT INTO run_events (run_id, type, agent_id, ts, payload, source_id, attempt)
SELECT u.r, u.t, u.a, coalesce(u.ts, clock_timestamp()), u.p::jsonb, u.src, runs.attempt
FROM unnest(:run_ids::text[], :types::text[], :agents::text[], :tss::timestamptz[], :payloads::text[],
            :sources::text[]) WITH ORDINALITY AS u(r, t, a, ts, p, src, n)
JOIN runs ON runs.run_id = u.r
ORDER BY u.n
ON CONFLICT (source_id) WHERE source_id IS NOT NULL DO NOTHING
