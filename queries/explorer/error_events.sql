-- summary: The most recent failing events (errors, failed tool results) with their ids: starting points for a causation chain.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, event_type VARCHAR = NULL, limit BIGINT = 50
-- returns: event_id VARCHAR, stream_id VARCHAR, version BIGINT, event_type VARCHAR, tool_name VARCHAR, error VARCHAR, occurred_at TIMESTAMPTZ, trace_id VARCHAR
SELECT event_id, stream_id, version, event_type, tool_name, error, occurred_at, trace_id
FROM events
WHERE is_error
  AND ($event_type IS NULL OR event_type = $event_type)
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
ORDER BY occurred_at DESC, event_id
LIMIT $limit
