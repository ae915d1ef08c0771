-- summary: Per UTC day: events, runs active, LLM and tool calls, errors and error rate, tokens and recorded cost.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL
-- returns: day DATE, events BIGINT, runs BIGINT, llm_calls BIGINT, tool_calls BIGINT, errors BIGINT, error_rate DOUBLE, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9)
SELECT
    day,  -- the partition column: the UTC date of occurred_at
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called') AS BIGINT) AS tool_calls,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(count(*) FILTER (WHERE is_error) / count(*) AS DOUBLE) AS error_rate,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd
FROM events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY ALL
ORDER BY day
