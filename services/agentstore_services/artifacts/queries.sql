-- Named queries of the artifacts service.

-- name: register_files
INSERT INTO binary_file_metadata
    (file_id, bucket, object_key, agent_id, task_id, name, content_type, size, sha256, etag, source)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[])
ON CONFLICT DO NOTHING

-- name: confirm_pending
DELETE FROM pending_uploads WHERE (bucket, object_key) IN (
    SELECT * FROM unnest($1::text[], $2::text[]))

-- name: add_pending
INSERT INTO pending_uploads (bucket, object_key, agent_id, task_id, name, content_type, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: get_pending
SELECT * FROM pending_uploads WHERE bucket = $1 AND object_key = $2

-- name: expired_pending
SELECT * FROM pending_uploads WHERE expires_at < now() ORDER BY expires_at

-- name: all_pending
SELECT bucket, object_key FROM pending_uploads

-- name: drop_pending
DELETE FROM pending_uploads WHERE bucket = $1 AND object_key = $2

-- name: get_file
SELECT * FROM binary_file_metadata WHERE file_id = $1

-- name: list_files
SELECT * FROM binary_file_metadata
WHERE ($1::text[] IS NULL OR agent_id = ANY($1::text[]))
  AND ($2::text IS NULL OR task_id = $2)
  AND ($3::text IS NULL OR bucket = $3)
  AND ($4::text IS NULL OR content_type = $4)
  AND ($5::timestamptz IS NULL OR (created_at, file_id) < ($5, $6))
ORDER BY created_at DESC, file_id DESC
LIMIT $7

-- name: bucket_keys
SELECT file_id, object_key FROM binary_file_metadata WHERE bucket = $1

-- name: delete_file
DELETE FROM binary_file_metadata WHERE file_id = $1
