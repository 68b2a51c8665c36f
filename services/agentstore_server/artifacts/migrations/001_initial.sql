-- Artifact metadata (seed 003): answered from here, never by listing MinIO.

CREATE TABLE binary_file_metadata (
    file_id       text        PRIMARY KEY,       -- '{agent}:{id}'
    bucket        text        NOT NULL,
    object_key    text        NOT NULL,
    agent_id      text        NOT NULL,
    task_id       text,
    name          text        NOT NULL,
    content_type  text        NOT NULL,
    size          bigint      NOT NULL,
    sha256        text,
    etag          text,
    source        text        NOT NULL,           -- inline | presigned | reconciled
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket, object_key)
);
CREATE INDEX files_agent_task ON binary_file_metadata (agent_id, task_id);
CREATE INDEX files_bucket ON binary_file_metadata (bucket);
CREATE INDEX files_content_type ON binary_file_metadata (content_type);
CREATE INDEX files_order ON binary_file_metadata (created_at DESC, file_id DESC);

-- Presigned PUTs handed out and not yet confirmed by `agents.{agent}.uploads`.
CREATE TABLE pending_uploads (
    bucket        text        NOT NULL,
    object_key    text        NOT NULL,
    agent_id      text        NOT NULL,
    task_id       text,
    name          text        NOT NULL,
    content_type  text        NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, object_key)
);
CREATE INDEX pending_expiry ON pending_uploads (expires_at);
