-- Checkpoints (CONTRACT v1.8): an agent's graph state per step, LangGraph's model.
-- A value is inline (`data`) or named by the SHA-256 of bytes in object storage (`digest`);
-- `checkpoint_objects` lists the digests each agent has stored, so an unchanged large
-- channel is one object however many steps and threads carry it.

CREATE TABLE checkpoints (
    agent_id        text        NOT NULL,
    thread_id       text        NOT NULL,
    checkpoint_ns   text        NOT NULL,
    checkpoint_id   text        NOT NULL,
    parent_id       text,
    run_id          text,
    type            text        NOT NULL,
    data            bytea,
    digest          text,
    size            bigint      NOT NULL,
    metadata_type   text        NOT NULL,
    metadata        bytea       NOT NULL,
    metadata_json   jsonb       NOT NULL,
    versions        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX checkpoints_newest ON checkpoints (agent_id, checkpoint_id DESC);
CREATE INDEX checkpoints_run ON checkpoints (agent_id, run_id) WHERE run_id IS NOT NULL;

CREATE TABLE checkpoint_blobs (
    agent_id        text        NOT NULL,
    thread_id       text        NOT NULL,
    checkpoint_ns   text        NOT NULL,
    channel         text        NOT NULL,
    version         text        NOT NULL,
    type            text        NOT NULL,
    data            bytea,
    digest          text,
    size            bigint      NOT NULL,
    PRIMARY KEY (agent_id, thread_id, checkpoint_ns, channel, version)
);
CREATE INDEX checkpoint_blobs_digest ON checkpoint_blobs (agent_id, digest) WHERE digest IS NOT NULL;

CREATE TABLE checkpoint_writes (
    agent_id        text        NOT NULL,
    thread_id       text        NOT NULL,
    checkpoint_ns   text        NOT NULL,
    checkpoint_id   text        NOT NULL,
    task_id         text        NOT NULL,
    idx             integer     NOT NULL,
    channel         text        NOT NULL,
    task_path       text        NOT NULL DEFAULT '',
    type            text        NOT NULL,
    data            bytea,
    digest          text,
    size            bigint      NOT NULL,
    PRIMARY KEY (agent_id, thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
CREATE INDEX checkpoint_writes_digest ON checkpoint_writes (agent_id, digest) WHERE digest IS NOT NULL;

CREATE TABLE checkpoint_objects (
    agent_id        text        NOT NULL,
    digest          text        NOT NULL,
    size            bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, digest)
);
