-- summary: Error frequency per day and agent: errors, events, error rate, errors per run, the most frequent event type and message of the errors.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: day DATE, agent VARCHAR, events BIGINT, errors BIGINT, error_rate DOUBLE, runs BIGINT, runs_with_errors BIGINT, top_error_type VARCHAR, top_error VARCHAR
SELECT
    day,
    coalesce(agent, '(none)') AS agent,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(count(*) FILTER (WHERE is_error) / count(*) AS DOUBLE) AS error_rate,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(count(DISTINCT stream_id) FILTER (WHERE is_error) AS BIGINT) AS runs_with_errors,
    mode(event_type) FILTER (WHERE is_error) AS top_error_type,
    mode(left(error, 200)) FILTER (WHERE is_error) AS top_error
FROM events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY day, agent
