-- Named queries of the artifacts service.

-- name: register_files
INSERT INTO binary_file_metadata
    (file_id, bucket, object_key, agent_id, task_id, name, content_type, size, sha256, etag, source)
SELECT * FROM unnest(:file_ids::text[], :buckets::text[], :object_keys::text[], :agent_ids::text[], :task_ids::text[], :names::text[],
                     :content_types::text[], :sizes::bigint[], :sha256s::text[], :etags::text[], :sources::text[])
ON CONFLICT DO NOTHING

-- name: confirm_pending
DELETE FROM pending_uploads WHERE (bucket, object_key) IN (
    SELECT * FROM unnest(:buckets::text[], :object_keys::text[]))

-- name: add_pending
INSERT INTO pending_uploads (bucket, object_key, agent_id, task_id, name, content_type, expires_at)
VALUES (:bucket, :object_key, :agent_id, :task_id, :name, :content_type, :expires_at)

-- name: get_pending
SELECT * FROM pending_uploads WHERE bucket = :bucket AND object_key = :object_key

-- name: expired_pending
SELECT * FROM pending_uploads WHERE expires_at < now() ORDER BY expires_at

-- name: all_pending
SELECT bucket, object_key FROM pending_uploads

-- name: drop_pending
DELETE FROM pending_uploads WHERE bucket = :bucket AND object_key = :object_key

-- name: get_file
SELECT * FROM binary_file_metadata WHERE file_id = :file_id

-- name: list_files
SELECT * FROM binary_file_metadata
WHERE (:agent_ids::text[] IS NULL OR agent_id = ANY(:agent_ids::text[]))
  AND (:task_id::text IS NULL OR task_id = :task_id)
  AND (:bucket::text IS NULL OR bucket = :bucket)
  AND (:content_type::text IS NULL OR content_type = :content_type)
  AND (:after_ts::timestamptz IS NULL OR (created_at, file_id) < (:after_ts, :after_file))
ORDER BY created_at DESC, file_id DESC
LIMIT :limit

-- name: bucket_keys
SELECT file_id, object_key FROM binary_file_metadata WHERE bucket = :bucket

-- name: delete_file
DELETE FROM binary_file_metadata WHERE file_id = :file_id

-- name: delete_prefix
-- Every metadata row of the agent whose key starts with the prefix (a literal, not a
-- LIKE pattern: starts_with).
DELETE FROM binary_file_metadata
WHERE agent_id = :agent_id AND starts_with(object_key, :key_prefix)
RETURNING bucket, object_key
