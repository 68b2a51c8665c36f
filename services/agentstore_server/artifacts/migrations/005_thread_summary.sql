-- A summary row per (agent, thread, namespace) so that `query.threads` reads one row per
-- namespace instead of grouping every checkpoint of the agent: at 200,000 checkpoints in
-- 2,000 threads the grouping took 194 ms (p95), the summary about a millisecond.
--
-- Kept by statement-level triggers on `checkpoints`, so every path that writes or deletes
-- checkpoints (put, copy, prune, delete, the TTL sweeper) keeps it without knowing of it.
-- A put that overwrites a checkpoint (ON CONFLICT DO UPDATE) changes none of the summary's
-- columns: it fires no INSERT trigger, and `created_at` is not rewritten.
CREATE TABLE checkpoint_namespaces (
    agent_id             text        NOT NULL,
    thread_id            text        NOT NULL,
    checkpoint_ns        text        NOT NULL,
    checkpoints          bigint      NOT NULL,
    newest_checkpoint_id text        NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (agent_id, thread_id, checkpoint_ns)
);

-- Inserts add to the count; concurrent puts to one namespace queue on its row, as their
-- checkpoints already do. Rows are taken in key order so two statements never deadlock.
CREATE FUNCTION checkpoint_namespaces_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO checkpoint_namespaces AS s
        (agent_id, thread_id, checkpoint_ns, checkpoints, newest_checkpoint_id, updated_at)
    SELECT agent_id, thread_id, checkpoint_ns, count(*), max(checkpoint_id), max(created_at)
    FROM added GROUP BY agent_id, thread_id, checkpoint_ns
    ORDER BY agent_id, thread_id, checkpoint_ns
    ON CONFLICT (agent_id, thread_id, checkpoint_ns) DO UPDATE SET
        checkpoints = s.checkpoints + EXCLUDED.checkpoints,
        newest_checkpoint_id = greatest(s.newest_checkpoint_id, EXCLUDED.newest_checkpoint_id),
        updated_at = greatest(s.updated_at, EXCLUDED.updated_at);
    RETURN NULL;
END $$;

-- Deletes recount what is left. The summary rows are locked first: under READ COMMITTED the
-- recount that follows is a new statement, so it sees every put that held the lock before
-- (a put after it waits, then adds to the recounted row).
CREATE FUNCTION checkpoint_namespaces_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM checkpoint_namespaces s
    WHERE (s.agent_id, s.thread_id, s.checkpoint_ns) IN (SELECT agent_id, thread_id, checkpoint_ns FROM removed)
    ORDER BY s.agent_id, s.thread_id, s.checkpoint_ns
    FOR UPDATE;
    DELETE FROM checkpoint_namespaces s
    WHERE (s.agent_id, s.thread_id, s.checkpoint_ns) IN (SELECT agent_id, thread_id, checkpoint_ns FROM removed)
      AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.agent_id = s.agent_id AND c.thread_id = s.thread_id
                                                    AND c.checkpoint_ns = s.checkpoint_ns);
    UPDATE checkpoint_namespaces s
    SET checkpoints = left_over.checkpoints, newest_checkpoint_id = left_over.newest,
        updated_at = left_over.updated_at
    FROM (SELECT c.agent_id, c.thread_id, c.checkpoint_ns, count(*) AS checkpoints,
                 max(c.checkpoint_id) AS newest, max(c.created_at) AS updated_at
          FROM checkpoints c
          JOIN (SELECT DISTINCT agent_id, thread_id, checkpoint_ns FROM removed) r
            ON c.agent_id = r.agent_id AND c.thread_id = r.thread_id AND c.checkpoint_ns = r.checkpoint_ns
          GROUP BY c.agent_id, c.thread_id, c.checkpoint_ns) left_over
    WHERE s.agent_id = left_over.agent_id AND s.thread_id = left_over.thread_id
      AND s.checkpoint_ns = left_over.checkpoint_ns;
    RETURN NULL;
END $$;

-- The triggers first: creating them locks `checkpoints` against writes until this
-- migration commits, so the fill below misses no concurrent put.
CREATE TRIGGER checkpoint_namespaces_added AFTER INSERT ON checkpoints
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION checkpoint_namespaces_added();
CREATE TRIGGER checkpoint_namespaces_removed AFTER DELETE ON checkpoints
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION checkpoint_namespaces_removed();

INSERT INTO checkpoint_namespaces (agent_id, thread_id, checkpoint_ns, checkpoints, newest_checkpoint_id, updated_at)
SELECT agent_id, thread_id, checkpoint_ns, count(*), max(checkpoint_id), max(created_at)
FROM checkpoints GROUP BY agent_id, thread_id, checkpoint_ns;
