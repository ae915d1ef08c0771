-- summary: Per UTC day and model: LLM calls, tokens (in, out, cache read) and recorded cost.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL
-- returns: day DATE, model VARCHAR, llm_calls BIGINT, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, cost_usd DECIMAL(38,9)
SELECT
    day,  -- the partition column: the UTC date of occurred_at
    model,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(tokens_cache_read), 0) AS BIGINT) AS tokens_cache_read,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd
FROM events
WHERE model IS NOT NULL
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY ALL
ORDER BY day, model
