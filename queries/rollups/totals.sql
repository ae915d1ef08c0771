-- summary: Events, LLM and tool calls, errors, tokens (in/out/cache/reasoning) and cost grouped by any of model, tool, stream, stream_type, day, week, correlation, agent — one pass, no per-run figures (see rollups/usage for runs, cost-per-run percentiles and cost per successful run).
-- params: by VARCHAR[] IN (model, tool, stream, stream_type, day, week, correlation, agent) = model, since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: model VARCHAR, tool VARCHAR, stream_id VARCHAR, stream_type VARCHAR, day DATE, week DATE, correlation_id VARCHAR, agent VARCHAR, events BIGINT, llm_calls BIGINT, tool_calls BIGINT, errors BIGINT, error_rate DOUBLE, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_cache_write BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(38,9), unpriced_events BIGINT
-- A dimension not in $by is NULL (the caller drops it). cost_usd is on the session's basis (view cost_events).
SELECT
    CASE WHEN list_contains($by, 'model') THEN coalesce(model, '(none)') END AS model,
    CASE WHEN list_contains($by, 'tool') THEN coalesce(tool_name, '(none)') END AS tool,
    CASE WHEN list_contains($by, 'stream') THEN stream_id END AS stream_id,
    CASE WHEN list_contains($by, 'stream_type') THEN stream_type END AS stream_type,
    CASE WHEN list_contains($by, 'day') THEN day END AS day,
    CASE WHEN list_contains($by, 'week') THEN CAST(date_trunc('week', day) AS DATE) END AS week,
    CASE WHEN list_contains($by, 'correlation') THEN coalesce(correlation_id, '(none)') END AS correlation_id,
    CASE WHEN list_contains($by, 'agent') THEN coalesce(agent, '(none)') END AS agent,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called') AS BIGINT) AS tool_calls,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(count(*) FILTER (WHERE is_error) / count(*) AS DOUBLE) AS error_rate,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(tokens_cache_read), 0) AS BIGINT) AS tokens_cache_read,
    CAST(coalesce(sum(tokens_cache_write), 0) AS BIGINT) AS tokens_cache_write,
    CAST(coalesce(sum(tokens_reasoning), 0) AS BIGINT) AS tokens_reasoning,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd,
    CAST(count(*) FILTER (WHERE unpriced) AS BIGINT) AS unpriced_events
FROM cost_events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY ALL
