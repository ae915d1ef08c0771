-- summary: Per agent: runs, events, LLM and tool calls, errors, tokens, recorded cost and cost per run.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: agent VARCHAR, runs BIGINT, events BIGINT, llm_calls BIGINT, tool_calls BIGINT, errors BIGINT, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9), cost_per_run_usd DECIMAL(38,9)
SELECT
    coalesce(agent, '(none)') AS agent,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called') AS BIGINT) AS tool_calls,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd,
    -- the cost per run, exact: nano-dollars divided as integers and rounded half away from zero
    -- (DuckDB divides a DECIMAL as a DOUBLE, which keeps only 15-16 significant digits)
    CAST(sign(coalesce(sum(cost_usd), 0))
        * ((abs(CAST(coalesce(sum(cost_usd), 0) * 1000000000 AS HUGEINT)) * 2 + count(DISTINCT stream_id))
            // (2 * count(DISTINCT stream_id)))
        AS DECIMAL(38, 0)) * CAST(0.000000001 AS DECIMAL(10, 9)) AS cost_per_run_usd
FROM events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY cost_usd DESC, agent
