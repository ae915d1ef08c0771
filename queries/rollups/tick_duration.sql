-- summary: Agent ticks (TickCompleted-style events of game/simulation agents) per agent: count, average/p50/p95 duration, tokens per tick.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: agent VARCHAR, ticks BIGINT, timed_ticks BIGINT, avg_duration_ms DOUBLE, p50_duration_ms DOUBLE, p95_duration_ms DOUBLE, max_duration_ms DOUBLE, tokens_in_per_tick DOUBLE, tokens_out_per_tick DOUBLE
SELECT
    coalesce(agent, '(none)') AS agent,
    CAST(count(*) AS BIGINT) AS ticks,
    CAST(count(duration_ms) AS BIGINT) AS timed_ticks,
    CAST(avg(duration_ms) AS DOUBLE) AS avg_duration_ms,
    CAST(quantile_cont(duration_ms, 0.5) AS DOUBLE) AS p50_duration_ms,
    CAST(quantile_cont(duration_ms, 0.95) AS DOUBLE) AS p95_duration_ms,
    CAST(max(duration_ms) AS DOUBLE) AS max_duration_ms,
    CAST(avg(coalesce(tokens_in, 0)) AS DOUBLE) AS tokens_in_per_tick,
    CAST(avg(coalesce(tokens_out, 0)) AS DOUBLE) AS tokens_out_per_tick
FROM events
WHERE (event_type ILIKE '%tick%' OR source_type ILIKE '%tick%')
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY agent
