-- Chunked values (CONTRACT v1.10): a value of 64 KiB or more is cut by content into chunks,
-- so one that grows or is edited stores only its changed chunks again. A row's `chunks` is its
-- chunks' SHA-256 digests end to end (32 bytes each, in order; `digest` is the whole value's);
-- `checkpoint_chunks` says where each chunk lies: an offset in a pack, an object registered
-- in `checkpoint_objects` like any other.

ALTER TABLE checkpoints ADD COLUMN chunks bytea;
ALTER TABLE checkpoint_blobs ADD COLUMN chunks bytea;
ALTER TABLE checkpoint_writes ADD COLUMN chunks bytea;

CREATE TABLE checkpoint_chunks (
    agent_id        text        NOT NULL,
    digest          bytea       NOT NULL,
    pack            text        NOT NULL,
    pack_offset     bigint      NOT NULL,
    size            integer     NOT NULL,
    PRIMARY KEY (agent_id, digest)
);
CREATE INDEX checkpoint_chunks_pack ON checkpoint_chunks (agent_id, pack);
