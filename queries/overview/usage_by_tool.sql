-- summary: Per tool: calls, results, failures and failure rate, runs using it, latency percentiles.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL
-- returns: tool_name VARCHAR, calls BIGINT, results BIGINT, failures BIGINT, failure_rate DOUBLE, runs BIGINT, p50_ms DOUBLE, p95_ms DOUBLE, p99_ms DOUBLE
SELECT
    tool_name,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called') AS BIGINT) AS calls,
    CAST(count(*) FILTER (WHERE event_type = 'tool_result') AS BIGINT) AS results,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS failures,
    CAST(coalesce(count(*) FILTER (WHERE is_error)
        / nullif(greatest(count(*) FILTER (WHERE event_type = 'tool_result'), count(*) FILTER (WHERE event_type = 'tool_called')), 0), 0) AS DOUBLE) AS failure_rate,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(quantile_cont(duration_ms, 0.5) AS DOUBLE) AS p50_ms,
    CAST(quantile_cont(duration_ms, 0.95) AS DOUBLE) AS p95_ms,
    CAST(quantile_cont(duration_ms, 0.99) AS DOUBLE) AS p99_ms
FROM events
WHERE tool_name IS NOT NULL
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
  AND ($agent IS NULL OR agent = $agent)
GROUP BY ALL
ORDER BY calls DESC, tool_name
