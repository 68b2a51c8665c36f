-- Traces (CONTRACT v1.12): spans as they arrive, and a summary row per (agent, trace) that the
-- traces list filters and orders by, so it never groups spans.
--
-- A span is stored once (ON CONFLICT DO NOTHING on its key): it arrives finished, so a
-- redelivery or a retried export changes nothing, and the summary only ever adds what the
-- statement really inserted (its transition table holds no skipped row).
CREATE TABLE spans (
    agent_id       text             NOT NULL,
    trace_id       text             NOT NULL,
    span_id        text             NOT NULL,
    parent_span_id text,
    name           text             NOT NULL,
    kind           text             NOT NULL,
    status         text             NOT NULL,
    status_message text,
    start_ts       timestamptz      NOT NULL,
    end_ts         timestamptz      NOT NULL,
    model          text,
    input_tokens   bigint,
    output_tokens  bigint,
    -- Priced at ingest from the operator's MODEL_PRICES (what the call cost when it was made).
    cost_usd       double precision,
    run_id         text,
    task_id        text,
    session_id     text,
    thread_id      text,
    checkpoint_id  text,
    attributes     jsonb,
    events         jsonb,
    PRIMARY KEY (agent_id, trace_id, span_id)
);
-- A trace's page in start order, across the agents it passed through.
CREATE INDEX spans_trace_start ON spans (trace_id, start_ts, agent_id, span_id);

CREATE TABLE traces (
    agent_id      text             NOT NULL,
    trace_id      text             NOT NULL,
    -- The root span's name and id; until the root arrives, the earliest span's name.
    name          text             NOT NULL,
    root_span_id  text,
    start_ts      timestamptz      NOT NULL,
    end_ts        timestamptz      NOT NULL,
    duration_ms   double precision GENERATED ALWAYS AS (extract(epoch FROM end_ts - start_ts) * 1000) STORED,
    spans         bigint           NOT NULL,
    errors        bigint           NOT NULL,
    models        text[]           NOT NULL,
    input_tokens  bigint           NOT NULL,
    output_tokens bigint           NOT NULL,
    cost_usd      double precision NOT NULL,
    session_id    text,
    run_id        text,
    thread_id     text,
    PRIMARY KEY (agent_id, trace_id)
);
CREATE INDEX traces_agent_recent ON traces (agent_id, start_ts DESC, trace_id DESC);
CREATE INDEX traces_recent ON traces (start_ts DESC, agent_id DESC, trace_id DESC);
CREATE INDEX traces_agent_slowest ON traces (agent_id, duration_ms DESC, trace_id DESC);
CREATE INDEX traces_trace ON traces (trace_id);

-- Rows are taken in key order so two concurrent statements never deadlock on summaries.
CREATE FUNCTION traces_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO traces AS t (agent_id, trace_id, name, root_span_id, start_ts, end_ts, spans, errors, models,
                             input_tokens, output_tokens, cost_usd, session_id, run_id, thread_id)
    SELECT agent_id, trace_id,
           coalesce((array_agg(name ORDER BY start_ts) FILTER (WHERE parent_span_id IS NULL))[1],
                    (array_agg(name ORDER BY start_ts))[1]),
           (array_agg(span_id ORDER BY start_ts) FILTER (WHERE parent_span_id IS NULL))[1],
           min(start_ts), max(end_ts), count(*), count(*) FILTER (WHERE status = 'error'),
           coalesce(array_agg(DISTINCT model) FILTER (WHERE model IS NOT NULL), '{}'),
           coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost_usd), 0),
           (array_agg(session_id) FILTER (WHERE session_id IS NOT NULL))[1],
           (array_agg(run_id) FILTER (WHERE run_id IS NOT NULL))[1],
           (array_agg(thread_id) FILTER (WHERE thread_id IS NOT NULL))[1]
    FROM added GROUP BY agent_id, trace_id
    ORDER BY agent_id, trace_id
    ON CONFLICT (agent_id, trace_id) DO UPDATE SET
        name = CASE
            WHEN t.root_span_id IS NOT NULL THEN t.name
            WHEN EXCLUDED.root_span_id IS NOT NULL OR EXCLUDED.start_ts < t.start_ts THEN EXCLUDED.name
            ELSE t.name END,
        root_span_id = coalesce(t.root_span_id, EXCLUDED.root_span_id),
        start_ts = least(t.start_ts, EXCLUDED.start_ts),
        end_ts = greatest(t.end_ts, EXCLUDED.end_ts),
        spans = t.spans + EXCLUDED.spans,
        errors = t.errors + EXCLUDED.errors,
        models = ARRAY(SELECT DISTINCT m FROM unnest(t.models || EXCLUDED.models) AS m ORDER BY m),
        input_tokens = t.input_tokens + EXCLUDED.input_tokens,
        output_tokens = t.output_tokens + EXCLUDED.output_tokens,
        cost_usd = t.cost_usd + EXCLUDED.cost_usd,
        session_id = coalesce(t.session_id, EXCLUDED.session_id),
        run_id = coalesce(t.run_id, EXCLUDED.run_id),
        thread_id = coalesce(t.thread_id, EXCLUDED.thread_id);
    RETURN NULL;
END $$;

CREATE TRIGGER traces_added AFTER INSERT ON spans
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION traces_added();
