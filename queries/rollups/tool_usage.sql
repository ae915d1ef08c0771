-- summary: Tool usage patterns: calls, results, failures, failure rate, runs using the tool, calls per run, repeated identical calls, latency and first/last use, per tool.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: tool VARCHAR, calls BIGINT, results BIGINT, failures BIGINT, failure_rate DOUBLE, runs BIGINT, calls_per_run DOUBLE, repeated_calls BIGINT, avg_duration_ms DOUBLE, p95_duration_ms DOUBLE, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ
-- A call is a tool_called event; a result is a tool_result (sources such as eventsourcing record
-- only results). A repeated call has the same tool and arguments as the run's previous call.
WITH tool_events AS (
    SELECT
        stream_id,
        version,
        event_type,
        tool_name,
        is_error,
        duration_ms,
        occurred_at,
        data,
        lag(data) OVER (PARTITION BY stream_id, tool_name, event_type ORDER BY version) AS previous_data
    FROM events
    WHERE tool_name IS NOT NULL
      AND event_type IN ('tool_called', 'tool_result')
      AND ($since IS NULL OR occurred_at >= $since)
      AND ($until IS NULL OR occurred_at < $until)
)
SELECT
    tool_name AS tool,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called') AS BIGINT) AS calls,
    CAST(count(*) FILTER (WHERE event_type = 'tool_result') AS BIGINT) AS results,
    CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS failures,
    CAST(
        count(*) FILTER (WHERE is_error) / greatest(count(*) FILTER (WHERE event_type = 'tool_result'), count(*) FILTER (WHERE event_type = 'tool_called'), 1)
        AS DOUBLE
    ) AS failure_rate,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS runs,
    CAST(
        greatest(count(*) FILTER (WHERE event_type = 'tool_called'), count(*) FILTER (WHERE event_type = 'tool_result'))
        / count(DISTINCT stream_id) AS DOUBLE
    ) AS calls_per_run,
    CAST(count(*) FILTER (WHERE event_type = 'tool_called' AND data = previous_data) AS BIGINT) AS repeated_calls,
    CAST(avg(duration_ms) AS DOUBLE) AS avg_duration_ms,
    CAST(quantile_cont(duration_ms, 0.95) AS DOUBLE) AS p95_duration_ms,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at
FROM tool_events
GROUP BY tool_name
ORDER BY calls + results DESC, tool
