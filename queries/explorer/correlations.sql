-- summary: Correlation ids (logical requests or user sessions) with their runs, events and time span; the ones spanning most runs first.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, limit BIGINT = 200
-- returns: correlation_id VARCHAR, runs BIGINT, events BIGINT, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ
SELECT
    correlation_id,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(count(*) AS BIGINT) AS events,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at
FROM events
WHERE correlation_id IS NOT NULL
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY correlation_id
ORDER BY runs DESC, events DESC, correlation_id
LIMIT $limit
