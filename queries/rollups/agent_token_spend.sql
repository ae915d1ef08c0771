-- summary: Per-agent token spend: runs, LLM calls, tokens (in/out/cache read/cache write/reasoning), cost on the session's basis, tokens and cost per run.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: agent VARCHAR, runs BIGINT, llm_calls BIGINT, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_cache_write BIGINT, tokens_reasoning BIGINT, cache_read_share DOUBLE, cost_usd DECIMAL(38,9), unpriced_events BIGINT, tokens_per_run DOUBLE, cost_per_run DECIMAL(38,9)
SELECT
    coalesce(agent, '(none)') AS agent,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(tokens_cache_read), 0) AS BIGINT) AS tokens_cache_read,
    CAST(coalesce(sum(tokens_cache_write), 0) AS BIGINT) AS tokens_cache_write,
    CAST(coalesce(sum(tokens_reasoning), 0) AS BIGINT) AS tokens_reasoning,
    CAST(coalesce(sum(tokens_cache_read), 0) / nullif(sum(tokens_in), 0) AS DOUBLE) AS cache_read_share,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd,
    CAST(count(*) FILTER (WHERE unpriced) AS BIGINT) AS unpriced_events,
    CAST((coalesce(sum(tokens_in), 0) + coalesce(sum(tokens_out), 0)) / count(DISTINCT stream_id) AS DOUBLE) AS tokens_per_run,
    -- the cost per run, exact: nano-dollars divided as integers and rounded half away from zero
    -- (DuckDB divides a DECIMAL as a DOUBLE, which keeps only 15-16 significant digits)
    CAST(sign(coalesce(sum(cost_usd), 0))
        * ((abs(CAST(coalesce(sum(cost_usd), 0) * 1000000000 AS HUGEINT)) * 2 + count(DISTINCT stream_id))
            // (2 * count(DISTINCT stream_id)))
        AS DECIMAL(38, 0)) * CAST(0.000000001 AS DECIMAL(10, 9)) AS cost_per_run
FROM cost_events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY cost_usd DESC, agent
