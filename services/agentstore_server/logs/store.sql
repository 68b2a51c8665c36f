-- Named queries of the memory store (logs service, PostgreSQL). Every statement is
-- parameterised; the searches, whose shape depends on the request (filters, a vector's
-- dimension), are composed from fixed fragments in store_items.py.

-- name: get_items
SELECT i.path, i.key, i.value, i.created_at, i.updated_at, i.ttl_minutes
FROM unnest(:paths::text[], :keys::text[]) AS u(path, key)
JOIN store_items i ON i.agent_id = :agent_id::text AND i.path = u.path AND i.key = u.key
WHERE i.expires_at IS NULL OR i.expires_at > :now::timestamptz

-- name: refresh_ttl
UPDATE store_items i SET expires_at = :now::timestamptz + make_interval(secs => i.ttl_minutes * 60)
FROM unnest(:paths::text[], :keys::text[]) AS u(path, key)
WHERE i.agent_id = :agent_id::text AND i.path = u.path AND i.key = u.key AND i.ttl_minutes IS NOT NULL

-- name: add_namespaces
-- A namespace's order is that of its first write (a put or a delete), recorded once.
INSERT INTO store_namespaces (agent_id, path, seq)
SELECT :agent_id::text, p, :stamp::bigint + n FROM unnest(:paths::text[]) WITH ORDINALITY AS u(p, n)
ON CONFLICT DO NOTHING

-- name: namespace_seqs
SELECT path, seq FROM store_namespaces WHERE agent_id = :agent_id::text AND path = ANY(:paths::text[])

-- name: delete_items
DELETE FROM store_items i USING unnest(:paths::text[], :keys::text[]) AS u(path, key)
WHERE i.agent_id = :agent_id::text AND i.path = u.path AND i.key = u.key

-- name: upsert_items
-- The first put fixes created_at and the item's order; later puts change the rest.
INSERT INTO store_items AS i (agent_id, path, key, value, created_at, updated_at, expires_at, ttl_minutes,
                              ns_seq, seq, search)
SELECT :agent_id::text, p, k, v, :now::timestamptz, :now::timestamptz, :now::timestamptz + make_interval(secs => t * 60), t, ns, :stamp::bigint + n,
       jsonb_to_tsvector('english'::regconfig, v, '["string"]')
FROM unnest(:paths::text[], :keys::text[], :vals::jsonb[], :ttls::float8[], :ns_seqs::bigint[])
     WITH ORDINALITY AS u(p, k, v, t, ns, n)
ON CONFLICT (agent_id, path, key) DO UPDATE SET
    value = EXCLUDED.value, updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at,
    ttl_minutes = EXCLUDED.ttl_minutes, search = EXCLUDED.search

-- name: delete_vectors
DELETE FROM store_vectors v USING unnest(:paths::text[], :keys::text[]) AS u(path, key)
WHERE v.agent_id = :agent_id::text AND v.path = u.path AND v.key = u.key

-- name: insert_vectors
INSERT INTO store_vectors (agent_id, path, key, vector_path, dims, embedding)
SELECT :agent_id::text, p, k, vp, d, e::vector
FROM unnest(:paths::text[], :keys::text[], :vector_paths::text[], :dims::int[], :embeddings::text[])
     AS u(p, k, vp, d, e)
ON CONFLICT DO NOTHING

-- name: set_vectors_if_unchanged
-- A re-index writes new vectors only where the item is still the one it embedded.
SELECT path, key FROM store_items i
JOIN unnest(:paths::text[], :keys::text[], :updated::timestamptz[]) AS u(p, k, t)
  ON i.agent_id = :agent_id::text AND i.path = u.p AND i.key = u.k AND i.updated_at = u.t
FOR UPDATE OF i

-- name: live_paths
SELECT DISTINCT path FROM store_items WHERE agent_id = :agent_id::text AND (expires_at IS NULL OR expires_at > :now::timestamptz)

-- name: sweep_expired
WITH gone AS (
    DELETE FROM store_items WHERE ctid IN (
        SELECT ctid FROM store_items WHERE expires_at < :now::timestamptz LIMIT 10000)
    RETURNING 1)
SELECT count(*) AS n FROM gone

-- name: known_dims
SELECT dims FROM store_dims ORDER BY dims

-- name: record_dims
INSERT INTO store_dims (dims) VALUES (:dims) ON CONFLICT DO NOTHING

-- name: index_valid
-- An index left invalid by an interrupted concurrent build (none while a build runs: an index
-- being built is invalid too, until its build ends).
SELECT i.indisvalid AS valid,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) AS building
FROM pg_index i WHERE i.indexrelid = to_regclass(:name)

-- name: count_items
SELECT count(*) AS n FROM store_items WHERE agent_id = :agent_id::text AND path >= :low AND path < :high

-- name: move_item
-- An item of an older release's MongoDB store; one already here is newer and kept.
INSERT INTO store_items (agent_id, path, key, value, created_at, updated_at, expires_at, ttl_minutes, ns_seq, seq,
                         search)
VALUES (:agent_id::text, :path, :key, :val::jsonb, :created_at, :updated_at, :expires_at, :ttl, :ns_seq, :seq,
        jsonb_to_tsvector('english'::regconfig, :val::jsonb, '["string"]'))
ON CONFLICT DO NOTHING
