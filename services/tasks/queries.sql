-- Named queries of the tasks service. Every statement is parameterised.

-- name: upsert_tasks
-- One row per (agent, task) per call (the caller keeps the newest of a batch);
-- the row is only updated by a newer (ts, seq).
INSERT INTO tasks AS t (agent_id, task_id, status, kind, title, meta, ts, seq, created_at)
SELECT a, i, s, k, ti, m::jsonb, ts, q, ts
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::bigint[]) AS u(a, i, s, k, ti, m, ts, q)
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
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[],
                     $6::text[], $7::real[], $8::jsonb[])
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
WHERE ($1::text[] IS NULL OR t.agent_id = ANY($1::text[]))
  AND ($2::text[] IS NULL OR t.status = ANY($2::text[]))
  AND ($3::text IS NULL OR coalesce(t.kind, 'task') = $3)
  AND ($4::timestamptz IS NULL OR (t.updated_at, t.agent_id, t.task_id) < ($4, $5, $6))
ORDER BY t.updated_at DESC, t.agent_id DESC, t.task_id DESC
LIMIT $7

-- name: get_task
SELECT agent_id, task_id, status, coalesce(kind, 'task') AS kind, title, meta, ts,
       created_at, updated_at
FROM tasks WHERE agent_id = $1 AND task_id = $2

-- name: task_progress
SELECT id, step, status, percent, detail, ts FROM task_progress
WHERE agent_id = $1 AND task_id = $2
ORDER BY step, ts, id

-- name: task_evaluations
SELECT * FROM evaluations WHERE agent_id = $1 AND task_id = $2 ORDER BY created_at, id

-- name: insert_evaluation
INSERT INTO evaluations (id, agent_id, task_id, evaluator, score, passed, notes, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT (id) DO NOTHING

-- name: get_evaluation
SELECT * FROM evaluations WHERE id = $1

-- name: insert_study
INSERT INTO studies (spec_hash, spec) VALUES ($1, $2::jsonb)
ON CONFLICT (spec_hash) DO NOTHING
RETURNING spec_hash

-- name: insert_run
INSERT INTO runs (run_id, spec_hash, kind, priority, max_attempts)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (run_id) DO NOTHING
RETURNING *

-- name: get_run
SELECT * FROM runs WHERE run_id = $1

-- name: get_study
SELECT * FROM studies WHERE spec_hash = $1

-- name: run_events
SELECT id, ts, type, agent_id, attempt, payload FROM run_events WHERE run_id = $1 ORDER BY id

-- name: add_run_event
INSERT INTO run_events (run_id, type, agent_id, attempt, payload)
VALUES ($1, $2, $3, $4, $5::jsonb)
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
    WHERE status = 'queued' AND ($2::text[] IS NULL OR kind = ANY($2::text[]))
    ORDER BY priority DESC, created_at, run_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE runs r SET
        status = 'running',
        claimed_by = $1,
        lease_expires_at = now() + make_interval(secs => $3),
        attempt = r.attempt + 1,
        started_at = coalesce(r.started_at, now()),
        updated_at = now()
    FROM next WHERE r.run_id = next.run_id
    RETURNING r.*
), event AS (
    INSERT INTO run_events (run_id, type, agent_id, attempt)
    SELECT run_id, 'claimed', $1, attempt FROM claimed
)
SELECT claimed.*, studies.spec FROM claimed JOIN studies USING (spec_hash)

-- name: renew_lease
UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
WHERE run_id = $1 AND status = 'running' AND claimed_by = $2 AND lease_expires_at > now()
  AND ($4::int IS NULL OR attempt = $4)
RETURNING *

-- name: move_phase
UPDATE runs SET phase = $3, updated_at = now()
WHERE run_id = $1 AND status = 'running' AND claimed_by = $2 AND lease_expires_at > now()
  AND ($4::int IS NULL OR attempt = $4)
RETURNING *

-- name: release_run
UPDATE runs SET
    status = $3,
    phase = CASE WHEN $3 = 'succeeded' THEN 'done' ELSE phase END,
    error = coalesce($4::jsonb, error),
    summary = coalesce($5::jsonb, summary),
    artifacts = coalesce($6::jsonb, artifacts),
    claimed_by = NULL,
    lease_expires_at = NULL,
    ended_at = CASE WHEN $3 = 'queued' THEN NULL ELSE now() END,
    updated_at = now()
WHERE run_id = $1 AND status = 'running' AND claimed_by = $2 AND lease_expires_at > now()
  AND ($7::int IS NULL OR attempt = $7)
RETURNING *

-- name: cancel_run
UPDATE runs SET status = 'cancelled', claimed_by = NULL, lease_expires_at = NULL,
                ended_at = now(), updated_at = now()
WHERE run_id = $1 AND status IN ('queued', 'running')
RETURNING *

-- name: held_runs
SELECT * FROM runs
WHERE claimed_by = $1 AND status = 'running' AND lease_expires_at > now()
ORDER BY created_at

-- name: list_runs
SELECT * FROM runs
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR phase = $2)
  AND ($3::text IS NULL OR claimed_by = $3)
  AND ($4::timestamptz IS NULL OR (created_at, run_id) < ($4, $5))
ORDER BY created_at DESC, run_id DESC
LIMIT $6
