-- summary: Events, LLM calls, tokens (in/out/cache read/reasoning) and recorded cost per model.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: model VARCHAR, events BIGINT, llm_calls BIGINT, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(38,9)
SELECT
    coalesce(model, '(none)') AS model,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(*) FILTER (WHERE event_type = 'llm_response') AS BIGINT) AS llm_calls,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(tokens_cache_read), 0) AS BIGINT) AS tokens_cache_read,
    CAST(coalesce(sum(tokens_reasoning), 0) AS BIGINT) AS tokens_reasoning,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd
FROM events
WHERE ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY cost_usd DESC, model
