-- Tasks, their progress and evaluations (seed 003); studies and lease-based runs (seed 004).

CREATE TABLE tasks (
    agent_id    text        NOT NULL,
    task_id     text        NOT NULL,
    status      text        NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    -- NULL means "never given" (read as 'task'), so an update that omits
    -- kind, title or meta keeps the stored value.
    kind        text,
    title       text,
    meta        jsonb,
    -- The newest update applied: (ts, seq) orders updates, so a late, older
    -- status never overwrites a newer one; seq (the JetStream stream sequence)
    -- breaks ties on ts by publish order and is stable across redelivery.
    ts          timestamptz NOT NULL,
    seq         bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, task_id)
);
CREATE INDEX tasks_agent_status ON tasks (agent_id, status);
CREATE INDEX tasks_order ON tasks (updated_at DESC, agent_id DESC, task_id DESC);
CREATE INDEX tasks_status_order ON tasks (status, updated_at DESC);
CREATE INDEX tasks_kind_order ON tasks ((coalesce(kind, 'task')), updated_at DESC);

CREATE TABLE task_progress (
    agent_id    text        NOT NULL,
    id          text        NOT NULL,
    task_id     text        NOT NULL,
    ts          timestamptz NOT NULL,
    step        integer     NOT NULL,
    status      text        NOT NULL,
    percent     real,
    detail      jsonb,
    PRIMARY KEY (agent_id, id)
);
CREATE INDEX task_progress_task ON task_progress (agent_id, task_id, step, ts);

CREATE TABLE evaluations (
    id          text        PRIMARY KEY,
    agent_id    text        NOT NULL,
    task_id     text        NOT NULL,
    evaluator   text        NOT NULL,
    score       double precision NOT NULL,
    passed      boolean     NOT NULL,
    notes       text,
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evaluations_task ON evaluations (agent_id, task_id, created_at);

CREATE TABLE studies (
    spec_hash   text        PRIMARY KEY,
    spec        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    run_id            text        PRIMARY KEY,
    spec_hash         text        NOT NULL REFERENCES studies (spec_hash),
    kind              text        NOT NULL DEFAULT 'run',
    priority          integer     NOT NULL DEFAULT 0,
    status            text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    phase             text        NOT NULL DEFAULT 'bundle'
        CHECK (phase IN ('bundle', 'execute', 'extract', 'done')),
    claimed_by        text,
    lease_expires_at  timestamptz,
    attempt           integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL DEFAULT 3,
    error             jsonb,
    summary           jsonb,
    artifacts         jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    ended_at          timestamptz
);
CREATE INDEX runs_queue ON runs (priority DESC, created_at, run_id) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_holder ON runs (claimed_by) WHERE status = 'running';
CREATE INDEX runs_order ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_spec ON runs (spec_hash);

CREATE TABLE run_events (
    id          bigserial   PRIMARY KEY,
    run_id      text        NOT NULL REFERENCES runs (run_id),
    ts          timestamptz NOT NULL DEFAULT clock_timestamp(),
    type        text        NOT NULL,
    agent_id    text,
    attempt     integer     NOT NULL,
    payload     jsonb
);
CREATE INDEX run_events_run ON run_events (run_id, id);
