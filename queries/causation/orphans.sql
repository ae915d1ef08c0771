-- summary: Events whose causation_id names no event of the journal (orphans), oldest first.
-- params: since TIMESTAMPTZ = 1970-01-01T00:00:00Z, until TIMESTAMPTZ = 9999-12-31T00:00:00Z
-- returns: stream_id VARCHAR, version BIGINT, event_id VARCHAR, event_type VARCHAR, occurred_at TIMESTAMPTZ, missing_cause VARCHAR
SELECT
    e.stream_id,
    e.version,
    e.event_id,
    e.event_type,
    e.occurred_at,
    e.causation_id AS missing_cause
FROM events AS e
ANTI JOIN events AS p ON e.causation_id = p.event_id
WHERE e.causation_id IS NOT NULL
  AND e.occurred_at >= $since AND e.occurred_at < $until
ORDER BY e.occurred_at, e.stream_id, e.version
