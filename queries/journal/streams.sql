-- summary: Every stream with its event count, first and last time, tokens and recorded cost.
-- params: stream_type VARCHAR = NULL, limit BIGINT = 1000000
-- returns: stream_id VARCHAR, stream_type VARCHAR, agent VARCHAR, events BIGINT, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9), errors BIGINT
SELECT
    stream_id,
    any_value(stream_type) AS stream_type,
    any_value(agent) AS agent,
    CAST(count(*) AS BIGINT) AS events,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors
FROM events
WHERE $stream_type IS NULL OR stream_type = $stream_type
GROUP BY stream_id
ORDER BY first_at, stream_id
LIMIT $limit
