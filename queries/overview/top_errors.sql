-- summary: The most frequent error messages: events, runs affected, event types, last time seen.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL, limit BIGINT = 10
-- returns: error VARCHAR, events BIGINT, runs BIGINT, event_types VARCHAR, last_at TIMESTAMPTZ
SELECT
    coalesce(error, '(no message)') AS error,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    string_agg(DISTINCT event_type, ', ' ORDER BY event_type) AS event_types,
    max(occurred_at) AS last_at
FROM events
WHERE is_error
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY ALL
ORDER BY events DESC, error
LIMIT $limit
