-- Named queries of checkpoints (CONTRACT v1.8), every one scoped to one agent.

-- name: lock_shared
-- Puts hold the agent's lock shared, the sweep of unreferenced objects exclusive: a digest
-- a put has just found registered is never swept before that put commits.
SELECT pg_advisory_xact_lock_shared(7351, hashtext(:agent_id))

-- name: lock_exclusive
SELECT pg_advisory_xact_lock(7351, hashtext(:agent_id))

-- name: known_objects
SELECT digest FROM checkpoint_objects WHERE agent_id = :agent_id AND digest = ANY(:digests::text[])

-- name: add_objects
INSERT INTO checkpoint_objects (agent_id, digest, size)
SELECT :agent_id, * FROM unnest(:digests::text[], :sizes::bigint[])
ON CONFLICT DO NOTHING

-- name: known_chunks
SELECT digest, pack FROM checkpoint_chunks WHERE agent_id = :agent_id AND digest = ANY(:digests::bytea[])

-- name: chunk_locations
SELECT k.digest, k.pack, k.pack_offset, k.size, o.size AS pack_size
FROM checkpoint_chunks k
JOIN checkpoint_objects o ON o.agent_id = k.agent_id AND o.digest = k.pack
WHERE k.agent_id = :agent_id AND k.digest = ANY(:digests::bytea[])

-- name: put_checkpoint
WITH placed AS (  -- where the put's new chunks lie, in the same round trip
    INSERT INTO checkpoint_chunks (agent_id, digest, pack, pack_offset, size)
    SELECT :agent_id, * FROM unnest(:chunk_digests::bytea[], :chunk_packs::text[], :chunk_offsets::bigint[],
                                    :chunk_sizes::int[])
    ON CONFLICT (agent_id, digest) DO UPDATE SET pack = EXCLUDED.pack, pack_offset = EXCLUDED.pack_offset)
INSERT INTO checkpoints (agent_id, thread_id, checkpoint_ns, checkpoint_id, parent_id, run_id, type, data,
                         digest, size, chunks, metadata_type, metadata, metadata_json, versions)
VALUES (:agent_id, :thread_id, :checkpoint_ns, :checkpoint_id, :parent_id, :run_id, :type, :data,
        :digest, :size, :chunks, :metadata_type, :metadata, :metadata_json::jsonb, :versions::jsonb)
ON CONFLICT (agent_id, thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
    parent_id = EXCLUDED.parent_id, run_id = EXCLUDED.run_id, type = EXCLUDED.type, data = EXCLUDED.data,
    digest = EXCLUDED.digest, size = EXCLUDED.size, chunks = EXCLUDED.chunks, metadata_type = EXCLUDED.metadata_type,
    metadata = EXCLUDED.metadata, metadata_json = EXCLUDED.metadata_json, versions = EXCLUDED.versions

-- name: put_blobs
INSERT INTO checkpoint_blobs (agent_id, thread_id, checkpoint_ns, channel, version, type, data, digest, size,
                              chunks)
SELECT :agent_id, :thread_id, :checkpoint_ns, *
FROM unnest(:channels::text[], :versions::text[], :types::text[], :datas::bytea[], :digests::text[], :sizes::bigint[],
            :chunks::bytea[])
ON CONFLICT DO NOTHING

-- name: put_writes
-- A write at a position is kept (a retried put_writes changes nothing); a special channel's
-- (negative idx: an error, an interrupt) is replaced, as LangGraph's own savers do.
WITH placed AS (  -- where the put's new chunks lie, in the same round trip
    INSERT INTO checkpoint_chunks (agent_id, digest, pack, pack_offset, size)
    SELECT :agent_id, * FROM unnest(:chunk_digests::bytea[], :chunk_packs::text[], :chunk_offsets::bigint[],
                                    :chunk_sizes::int[])
    ON CONFLICT (agent_id, digest) DO UPDATE SET pack = EXCLUDED.pack, pack_offset = EXCLUDED.pack_offset)
INSERT INTO checkpoint_writes (agent_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,
                               task_path, type, data, digest, size, chunks)
SELECT :agent_id, :thread_id, :checkpoint_ns, :checkpoint_id, *
FROM unnest(:task_ids::text[], :idxs::int[], :channels::text[], :task_paths::text[], :types::text[],
            :datas::bytea[], :digests::text[], :sizes::bigint[], :chunks::bytea[])
ON CONFLICT (agent_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel, task_path = EXCLUDED.task_path, type = EXCLUDED.type,
    data = EXCLUDED.data, digest = EXCLUDED.digest, size = EXCLUDED.size, chunks = EXCLUDED.chunks
WHERE EXCLUDED.idx < 0

-- name: list_checkpoints
-- Newest first; `filter` is a JSON object each of whose keys must equal the metadata's
-- (a null matches an absent key, as LangGraph's in-memory saver has it).
SELECT * FROM checkpoints c
WHERE agent_id = :agent_id
  AND (:thread_id::text IS NULL OR thread_id = :thread_id)
  AND (:checkpoint_ns::text IS NULL OR checkpoint_ns = :checkpoint_ns)
  AND (:checkpoint_id::text IS NULL OR checkpoint_id = :checkpoint_id)
  AND (:before::text IS NULL OR checkpoint_id < :before)
  AND (:filter::jsonb IS NULL OR NOT EXISTS (
        SELECT 1 FROM jsonb_each(:filter::jsonb) f
        WHERE (c.metadata_json -> f.key) IS DISTINCT FROM f.value
          AND NOT (f.value = 'null'::jsonb AND NOT c.metadata_json ? f.key)))
  AND (:after_id::text IS NULL
       OR (checkpoint_id, thread_id, checkpoint_ns) < (:after_id::text, :after_thread::text, :after_ns::text))
ORDER BY checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC
LIMIT :limit

-- name: checkpoint_blobs
-- The channel values of the given checkpoints (the versions each one names).
SELECT k.ord, b.channel, b.version, b.type, b.data, b.digest, b.size, b.chunks
FROM unnest(:thread_ids::text[], :checkpoint_nss::text[], :versions::jsonb[]) WITH ORDINALITY AS k(thread_id, checkpoint_ns, versions, ord)
CROSS JOIN LATERAL jsonb_each_text(k.versions) AS v
JOIN checkpoint_blobs b ON b.agent_id = :agent_id AND b.thread_id = k.thread_id
    AND b.checkpoint_ns = k.checkpoint_ns AND b.channel = v.key AND b.version = v.value
ORDER BY k.ord, b.channel

-- name: checkpoint_writes
SELECT k.ord, w.task_id, w.idx, w.channel, w.task_path, w.type, w.data, w.digest, w.size, w.chunks
FROM unnest(:thread_ids::text[], :checkpoint_nss::text[], :checkpoint_ids::text[]) WITH ORDINALITY AS k(thread_id, checkpoint_ns, checkpoint_id, ord)
JOIN checkpoint_writes w ON w.agent_id = :agent_id AND w.thread_id = k.thread_id
    AND w.checkpoint_ns = k.checkpoint_ns AND w.checkpoint_id = k.checkpoint_id
ORDER BY k.ord, w.task_path, w.task_id, w.idx

-- name: one_blob
SELECT type, data, digest, size, chunks FROM checkpoint_blobs
WHERE agent_id = :agent_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns
  AND channel = :channel AND version = :version

-- name: one_write
SELECT type, data, digest, size, chunks FROM checkpoint_writes
WHERE agent_id = :agent_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns
  AND checkpoint_id = :checkpoint_id AND task_id = :task_id AND idx = :idx

-- name: delete_threads
WITH t AS (DELETE FROM checkpoint_thread_ttl WHERE agent_id = :agent_id AND thread_id = ANY(:thread_ids::text[]) RETURNING 1),
     c AS (DELETE FROM checkpoints WHERE agent_id = :agent_id AND thread_id = ANY(:thread_ids::text[]) RETURNING 1),
     b AS (DELETE FROM checkpoint_blobs WHERE agent_id = :agent_id AND thread_id = ANY(:thread_ids::text[]) RETURNING 1),
     w AS (DELETE FROM checkpoint_writes WHERE agent_id = :agent_id AND thread_id = ANY(:thread_ids::text[]) RETURNING 1)
SELECT (SELECT count(*) FROM c) AS checkpoints

-- name: delete_runs
DELETE FROM checkpoints WHERE agent_id = :agent_id AND run_id = ANY(:run_ids::text[])
RETURNING thread_id, checkpoint_ns, checkpoint_id

-- name: delete_writes_of
-- A run saves a step's writes in the background, so they can land before their checkpoint:
-- they go with the checkpoints deleted, not by a join.
DELETE FROM checkpoint_writes w
USING unnest(:thread_ids::text[], :checkpoint_nss::text[], :checkpoint_ids::text[]) AS k(thread_id, checkpoint_ns, checkpoint_id)
WHERE w.agent_id = :agent_id AND w.thread_id = k.thread_id AND w.checkpoint_ns = k.checkpoint_ns
  AND w.checkpoint_id = k.checkpoint_id

-- name: drop_unreferenced_blobs
-- Channel values no remaining checkpoint of the threads names.
DELETE FROM checkpoint_blobs b
WHERE b.agent_id = :agent_id AND b.thread_id = ANY(:thread_ids::text[]) AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.agent_id = b.agent_id AND c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND c.versions ->> b.channel = b.version)

-- name: sweep_chunks
-- Chunks no row of the agent names any more (a row's `chunks` split into its 32-byte digests).
WITH named AS (
    SELECT chunks FROM checkpoint_blobs WHERE agent_id = :agent_id AND chunks IS NOT NULL
    UNION ALL SELECT chunks FROM checkpoint_writes WHERE agent_id = :agent_id AND chunks IS NOT NULL
    UNION ALL SELECT chunks FROM checkpoints WHERE agent_id = :agent_id AND chunks IS NOT NULL),
live AS (
    SELECT DISTINCT substring(n.chunks FROM i * 32 + 1 FOR 32) AS digest
    FROM named n, generate_series(0, length(n.chunks) / 32 - 1) AS i)
DELETE FROM checkpoint_chunks k
WHERE k.agent_id = :agent_id AND NOT EXISTS (SELECT 1 FROM live WHERE live.digest = k.digest)

-- name: sweep_objects
-- Digests nothing of the agent refers to any more (a row, or a chunk lying in it): their
-- objects can go.
DELETE FROM checkpoint_objects o
WHERE o.agent_id = :agent_id
  AND NOT EXISTS (SELECT 1 FROM checkpoint_chunks k WHERE k.agent_id = o.agent_id AND k.pack = o.digest)
  AND NOT EXISTS (SELECT 1 FROM checkpoint_blobs b WHERE b.agent_id = o.agent_id AND b.digest = o.digest)
  AND NOT EXISTS (SELECT 1 FROM checkpoint_writes w WHERE w.agent_id = o.agent_id AND w.digest = o.digest)
  AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.agent_id = o.agent_id AND c.digest = o.digest)
RETURNING digest

-- name: thread_chain
SELECT checkpoint_ns, checkpoint_id, parent_id, metadata_json FROM checkpoints
WHERE agent_id = :agent_id AND thread_id = :thread_id

-- name: delete_unkept
DELETE FROM checkpoints c
WHERE c.agent_id = :agent_id AND c.thread_id = :thread_id AND NOT EXISTS (
    SELECT 1 FROM unnest(:checkpoint_nss::text[], :checkpoint_ids::text[]) AS k(checkpoint_ns, checkpoint_id)
    WHERE k.checkpoint_ns = c.checkpoint_ns AND k.checkpoint_id = c.checkpoint_id)
RETURNING thread_id, checkpoint_ns, checkpoint_id

-- name: copy_checkpoints
WITH c AS (
    INSERT INTO checkpoints (agent_id, thread_id, checkpoint_ns, checkpoint_id, parent_id, run_id, type, data,
                             digest, size, chunks, metadata_type, metadata, metadata_json, versions)
    SELECT agent_id, :target, checkpoint_ns, checkpoint_id, parent_id, run_id, type, data,
           digest, size, chunks, metadata_type, metadata, metadata_json, versions
    FROM checkpoints WHERE agent_id = :agent_id AND thread_id = :source
    ON CONFLICT DO NOTHING RETURNING 1),
b AS (
    INSERT INTO checkpoint_blobs (agent_id, thread_id, checkpoint_ns, channel, version, type, data, digest, size,
                                  chunks)
    SELECT agent_id, :target, checkpoint_ns, channel, version, type, data, digest, size, chunks
    FROM checkpoint_blobs WHERE agent_id = :agent_id AND thread_id = :source
    ON CONFLICT DO NOTHING RETURNING 1),
w AS (
    INSERT INTO checkpoint_writes (agent_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel,
                                   task_path, type, data, digest, size, chunks)
    SELECT agent_id, :target, checkpoint_ns, checkpoint_id, task_id, idx, channel, task_path, type, data, digest,
           size, chunks
    FROM checkpoint_writes WHERE agent_id = :agent_id AND thread_id = :source
    ON CONFLICT DO NOTHING RETURNING 1),
t AS (  -- the copy is written now: the source's TTL, from now (as a put's would be)
    INSERT INTO checkpoint_thread_ttl (agent_id, thread_id, ttl_minutes, expires_at)
    SELECT agent_id, :target, ttl_minutes, now() + make_interval(secs => ttl_minutes * 60)
    FROM checkpoint_thread_ttl WHERE agent_id = :agent_id AND thread_id = :source
    ON CONFLICT (agent_id, thread_id) DO UPDATE
    SET ttl_minutes = EXCLUDED.ttl_minutes, expires_at = EXCLUDED.expires_at
    RETURNING 1)
SELECT (SELECT count(*) FROM c) AS checkpoints, (SELECT count(*) FROM b) AS blobs, (SELECT count(*) FROM w) AS writes

-- name: list_threads
-- From the per-namespace summary (migration 005), not by grouping every checkpoint.
SELECT thread_id, sum(checkpoints)::bigint AS checkpoints, count(*) AS namespaces,
       max(newest_checkpoint_id) AS newest_checkpoint_id, max(updated_at) AS updated_at
FROM checkpoint_namespaces WHERE agent_id = :agent_id
GROUP BY thread_id
HAVING :after_ts::timestamptz IS NULL OR (max(updated_at), thread_id) < (:after_ts::timestamptz, :after_thread::text)
ORDER BY max(updated_at) DESC, thread_id DESC
LIMIT :limit

-- name: thread_namespaces
-- The namespaces a thread has checkpoints in ("" the root's), from the summary; a subgraph
-- per namespace, so a bounded list.
SELECT checkpoint_ns FROM checkpoint_namespaces WHERE agent_id = :agent_id AND thread_id = :thread_id
ORDER BY checkpoint_ns LIMIT 1000;

-- name: list_threads_by_size
WITH c AS (
    SELECT thread_id, count(*) AS checkpoints, count(DISTINCT checkpoint_ns) AS namespaces,
           max(checkpoint_id) AS newest_checkpoint_id, max(created_at) AS updated_at, sum(size) AS bytes
    FROM checkpoints WHERE agent_id = :agent_id GROUP BY thread_id
), b AS (
    SELECT thread_id, sum(size) AS bytes FROM checkpoint_blobs WHERE agent_id = :agent_id GROUP BY thread_id
), w AS (
    SELECT thread_id, sum(size) AS bytes FROM checkpoint_writes WHERE agent_id = :agent_id GROUP BY thread_id
), t AS (
    SELECT c.thread_id, c.checkpoints, c.namespaces, c.newest_checkpoint_id, c.updated_at,
           (c.bytes + coalesce(b.bytes, 0) + coalesce(w.bytes, 0))::bigint AS bytes
    FROM c LEFT JOIN b USING (thread_id) LEFT JOIN w USING (thread_id)
)
SELECT * FROM t
WHERE :after_bytes::bigint IS NULL OR (bytes, thread_id) < (:after_bytes::bigint, :after_thread::text)
ORDER BY bytes DESC, thread_id DESC
LIMIT :limit

-- name: thread_steps
SELECT checkpoint_id, parent_id, metadata_json, versions, created_at, size FROM checkpoints
WHERE agent_id = :agent_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns
  AND (:after::text IS NULL OR checkpoint_id > :after)
ORDER BY checkpoint_id
LIMIT :limit

-- name: versions_of
SELECT checkpoint_id, versions FROM checkpoints
WHERE agent_id = :agent_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns
  AND checkpoint_id = ANY(:checkpoint_ids::text[])

-- name: agent_objects
SELECT digest FROM checkpoint_objects WHERE agent_id = :agent_id

-- name: parent_chain
-- A checkpoint's ancestors, nearest first (ids are per thread and namespace).
WITH RECURSIVE chain AS (
    SELECT checkpoint_id, parent_id, versions, 0 AS depth FROM checkpoints
    WHERE agent_id = :agent_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns
      AND checkpoint_id = :start
    UNION ALL
    SELECT c.checkpoint_id, c.parent_id, c.versions, chain.depth + 1 FROM checkpoints c
    JOIN chain ON c.checkpoint_id = chain.parent_id
    WHERE c.agent_id = :agent_id AND c.thread_id = :thread_id AND c.checkpoint_ns = :checkpoint_ns
)
SELECT checkpoint_id, versions FROM chain ORDER BY depth

-- name: writes_of_channels
SELECT checkpoint_id, task_id, idx, channel, task_path, type, data, digest, size, chunks FROM checkpoint_writes
WHERE agent_id = :agent_id AND thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns
  AND checkpoint_id = ANY(:checkpoint_ids::text[]) AND channel = ANY(:channels::text[])
ORDER BY checkpoint_id, task_path, task_id, idx

-- name: blobs_at
SELECT b.channel, b.version, b.type, b.data, b.digest, b.size, b.chunks
FROM unnest(:channels::text[], :versions::text[]) AS k(channel, version)
JOIN checkpoint_blobs b ON b.agent_id = :agent_id AND b.thread_id = :thread_id
    AND b.checkpoint_ns = :checkpoint_ns AND b.channel = k.channel AND b.version = k.version

-- name: set_thread_ttl
INSERT INTO checkpoint_thread_ttl (agent_id, thread_id, ttl_minutes, expires_at)
VALUES (:agent_id, :thread_id, :ttl_minutes::float8, now() + make_interval(secs => :ttl_minutes::float8 * 60))
ON CONFLICT (agent_id, thread_id) DO UPDATE
SET ttl_minutes = EXCLUDED.ttl_minutes, expires_at = EXCLUDED.expires_at

-- name: refresh_thread_ttl
UPDATE checkpoint_thread_ttl SET expires_at = now() + make_interval(secs => ttl_minutes * 60)
WHERE agent_id = :agent_id AND thread_id = :thread_id AND expires_at > now()

-- name: expired_threads
SELECT agent_id, thread_id FROM checkpoint_thread_ttl WHERE expires_at <= now()
ORDER BY expires_at LIMIT :limit

-- name: drop_expired_threads
-- Only those still expired: a put or a refreshing read since the sweep listed them keeps them.
DELETE FROM checkpoint_thread_ttl WHERE agent_id = :agent_id AND thread_id = ANY(:thread_ids::text[])
  AND expires_at <= now()
RETURNING thread_id
