-- summary: One stream's events by type: count, errors, tokens, recorded cost, duration and time span.
-- params: stream_id VARCHAR
-- returns: event_type VARCHAR, events BIGINT, errors BIGINT, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9), duration_ms DOUBLE, first_version BIGINT, last_version BIGINT
SELECT
    event_type,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd,
    CAST(coalesce(sum(duration_ms), 0) AS DOUBLE) AS duration_ms,
    CAST(min(version) AS BIGINT) AS first_version,
    CAST(max(version) AS BIGINT) AS last_version
FROM events
WHERE stream_id = $stream_id
GROUP BY event_type
ORDER BY first_version
