-- Checkpoint TTL (CONTRACT v1.x, `ttl_minutes` on checkpoints.put): a thread whose saver set a
-- TTL expires that long after its last put (or its last read, with `refresh_ttl`); the
-- artifacts service's sweeper deletes expired threads, their writes and the values no other
-- thread names. A thread without a row here never expires.
CREATE TABLE checkpoint_thread_ttl (
    agent_id    text             NOT NULL,
    thread_id   text             NOT NULL,
    ttl_minutes double precision NOT NULL,
    expires_at  timestamptz      NOT NULL,
    PRIMARY KEY (agent_id, thread_id)
);
CREATE INDEX checkpoint_thread_ttl_expires ON checkpoint_thread_ttl (expires_at);
