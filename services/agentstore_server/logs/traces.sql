-- name: insert_spans
-- A batch of span rows (JSON objects keyed by column) in one statement; a span already
-- stored is skipped, so its trigger adds only what is new to the trace summaries.
INSERT INTO spans
SELECT * FROM jsonb_populate_recordset(NULL::spans, :rows::jsonb)
ORDER BY agent_id, trace_id, span_id
ON CONFLICT DO NOTHING;

-- name: trace_summaries
SELECT * FROM traces
WHERE trace_id = :trace_id AND (:agents::text[] IS NULL OR agent_id = ANY(:agents));

-- name: trace_spans
SELECT * FROM spans
WHERE trace_id = :trace_id AND (:agents::text[] IS NULL OR agent_id = ANY(:agents))
  AND (start_ts, agent_id, span_id) > (:c_start::timestamptz, :c_agent, :c_span)
ORDER BY start_ts, agent_id, span_id
LIMIT :limit;

-- name: expired_traces
-- A bounded batch per sweep round; the sweeper calls again while it removes a full one.
SELECT agent_id, trace_id FROM traces WHERE end_ts < :before ORDER BY agent_id, trace_id LIMIT 1000 FOR UPDATE SKIP LOCKED;

-- name: delete_spans
WITH gone AS (SELECT * FROM unnest(:agents::text[], :traces::text[]) AS g(agent_id, trace_id)),
     spans_gone AS (DELETE FROM spans s USING gone WHERE s.agent_id = gone.agent_id AND s.trace_id = gone.trace_id)
DELETE FROM traces t USING gone WHERE t.agent_id = gone.agent_id AND t.trace_id = gone.trace_id;
