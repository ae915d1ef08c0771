-- summary: Failed tool results of runs that started from a user message, oldest first (what journal chain --up explains).
-- params: limit BIGINT = 20
-- returns: event_id VARCHAR, correlation_id VARCHAR, stream_id VARCHAR, version BIGINT, tool_name VARCHAR, error VARCHAR, occurred_at TIMESTAMPTZ
SELECT
    f.event_id,
    f.correlation_id,
    f.stream_id,
    f.version,
    f.tool_name,
    f.error,
    f.occurred_at
FROM events AS f
WHERE f.event_type = 'tool_result'
  AND f.is_error
  AND EXISTS (SELECT 1 FROM events AS u WHERE u.stream_id = f.stream_id AND u.event_type = 'user_message')
ORDER BY f.occurred_at, f.position
LIMIT $limit
