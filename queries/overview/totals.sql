-- summary: Headline figures of the journal in a time range (optionally one agent): events, runs, agents, models, LLM and tool calls, errors, tokens, recorded cost.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL
-- returns: events BIGINT, runs BIGINT, agents BIGINT, models BIGINT, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ, llm_calls BIGINT, tool_calls BIGINT, errors BIGINT, error_rate DOUBLE, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9)
SELECT
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(count(DISTINCT agent) AS BIGINT) AS agents,
    CAST(count(DISTINCT model) AS BIGINT) AS models,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called') AS BIGINT) AS tool_calls,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(coalesce(count(*) FILTER (WHERE is_error) / nullif(count(*), 0), 0) AS DOUBLE) AS error_rate,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd
FROM events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
