-- summary: Per UTC day, latency percentiles (p50, p90, p99) of LLM calls and of tool calls, from duration_ms.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL
-- returns: day DATE, kind VARCHAR, events BIGINT, p50_ms DOUBLE, p90_ms DOUBLE, p99_ms DOUBLE
SELECT
    day,  -- the partition column: the UTC date of occurred_at
    CASE WHEN model IS NOT NULL THEN 'llm' ELSE 'tool' END AS kind,
    CAST(count(*) AS BIGINT) AS events,
    CAST(quantile_cont(duration_ms, 0.5) AS DOUBLE) AS p50_ms,
    CAST(quantile_cont(duration_ms, 0.9) AS DOUBLE) AS p90_ms,
    CAST(quantile_cont(duration_ms, 0.99) AS DOUBLE) AS p99_ms
FROM events
WHERE duration_ms IS NOT NULL
  AND (model IS NOT NULL OR tool_name IS NOT NULL)
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY ALL
ORDER BY day, kind
