-- summary: Per model: LLM calls, runs using it, tokens (in, out, cache read, reasoning), recorded cost, latency percentiles and errors.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL
-- returns: model VARCHAR, llm_calls BIGINT, runs BIGINT, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(38,9), p50_ms DOUBLE, p95_ms DOUBLE, errors BIGINT
SELECT
    model,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(tokens_cache_read), 0) AS BIGINT) AS tokens_cache_read,
    CAST(coalesce(sum(tokens_reasoning), 0) AS BIGINT) AS tokens_reasoning,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd,
    CAST(quantile_cont(duration_ms, 0.5) AS DOUBLE) AS p50_ms,
    CAST(quantile_cont(duration_ms, 0.95) AS DOUBLE) AS p95_ms,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors
FROM events
WHERE model IS NOT NULL
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY ALL
ORDER BY cost_usd DESC, model
