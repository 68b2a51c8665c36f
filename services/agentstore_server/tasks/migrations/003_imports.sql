-- Imported audit events (seed 004's `events` collection) keep their source id, so importing
-- the same file again adds nothing; the trail's own events have none.
ALTER TABLE run_events ADD COLUMN source_id text;
CREATE UNIQUE INDEX run_events_source ON run_events (source_id) WHERE source_id IS NOT NULL;
