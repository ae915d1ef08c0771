-- summary: The costliest runs (streams) by recorded cost: agent, time span, events, errors, tokens.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL, limit BIGINT = 10
-- returns: stream_id VARCHAR, agent VARCHAR, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ, events BIGINT, errors BIGINT, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9)
SELECT
    stream_id,
    any_value(agent) AS agent,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd
FROM events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY stream_id
ORDER BY cost_usd DESC, stream_id
LIMIT $limit
