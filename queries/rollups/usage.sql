-- summary: Runs, events, LLM and tool calls, errors, tokens (in/out/cache/reasoning), cost, cost-per-run percentiles and cost per successful run, grouped by any of model, tool, stream, stream_type, day, week, correlation, agent.
-- params: by VARCHAR[] IN (model, tool, stream, stream_type, day, week, correlation, agent) = model, since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: model VARCHAR, tool VARCHAR, stream_id VARCHAR, stream_type VARCHAR, day DATE, week DATE, correlation_id VARCHAR, agent VARCHAR, runs BIGINT, events BIGINT, llm_calls BIGINT, tool_calls BIGINT, errors BIGINT, error_rate DOUBLE, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_cache_write BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(38,9), unpriced_events BIGINT, cost_per_run_p50 DECIMAL(38,9), cost_per_run_p90 DECIMAL(38,9), cost_per_run_p99 DECIMAL(38,9), runs_with_outcome BIGINT, successful_runs BIGINT, cost_per_successful_run DECIMAL(38,9)
-- A dimension not in $by is NULL (the caller drops it). A run is a stream; "cost per run" is
-- the cost a run spent inside the group. cost_usd is on the session's basis (view cost_events).
-- A run's outcome is what its first event's metadata states (outcome, or reward > 0; also under .run).
WITH per_run AS (
    SELECT
        CASE WHEN list_contains($by, 'model') THEN coalesce(model, '(none)') END AS model,
        CASE WHEN list_contains($by, 'tool') THEN coalesce(tool_name, '(none)') END AS tool,
        CASE WHEN list_contains($by, 'stream_type') THEN stream_type END AS stream_type,
        CASE WHEN list_contains($by, 'day') THEN day END AS day,
        CASE WHEN list_contains($by, 'week') THEN CAST(date_trunc('week', day) AS DATE) END AS week,
        CASE WHEN list_contains($by, 'correlation') THEN coalesce(correlation_id, '(none)') END AS correlation_id,
        CASE WHEN list_contains($by, 'agent') THEN coalesce(agent, '(none)') END AS agent,
        stream_id AS run_id,
        count(*) AS events,
        count(*) FILTER (WHERE event_type = 'llm_response') AS llm_calls,
        count(*) FILTER (WHERE event_type = 'tool_called') AS tool_calls,
        count(*) FILTER (WHERE is_error) AS errors,
        sum(tokens_in) AS tokens_in,
        sum(tokens_out) AS tokens_out,
        sum(tokens_cache_read) AS tokens_cache_read,
        sum(tokens_cache_write) AS tokens_cache_write,
        sum(tokens_reasoning) AS tokens_reasoning,
        coalesce(sum(cost_usd), 0) AS cost_usd,
        count(*) FILTER (WHERE unpriced) AS unpriced_events
    FROM cost_events
    WHERE ($since IS NULL OR occurred_at >= $since)
      AND ($until IS NULL OR occurred_at < $until)
    GROUP BY ALL
),
outcomes AS (
    SELECT
        stream_id AS run_id,
        coalesce(
            lower(coalesce(json_extract_string(metadata, '$.outcome'), json_extract_string(metadata, '$.run.outcome')))
                IN ('success', 'succeeded', 'successful', 'completed', 'complete', 'resolved', 'pass', 'passed', 'ok', 'done'),
            TRY_CAST(coalesce(json_extract_string(metadata, '$.reward'), json_extract_string(metadata, '$.run.reward')) AS DOUBLE) > 0
        ) AS succeeded
    FROM cost_events
    WHERE version = 1 AND (metadata LIKE '%"outcome"%' OR metadata LIKE '%"reward"%')
)
SELECT
    p.model,
    p.tool,
    CASE WHEN list_contains($by, 'stream') THEN p.run_id END AS stream_id,
    p.stream_type,
    p.day,
    p.week,
    p.correlation_id,
    p.agent,
    CAST(count(*) AS BIGINT) AS runs,
    CAST(sum(p.events) AS BIGINT) AS events,
    CAST(sum(p.llm_calls) AS BIGINT) AS llm_calls,
    CAST(sum(p.tool_calls) AS BIGINT) AS tool_calls,
    CAST(sum(p.errors) AS BIGINT) AS errors,
    CAST(sum(p.errors) / sum(p.events) AS DOUBLE) AS error_rate,
    CAST(coalesce(sum(p.tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(p.tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(p.tokens_cache_read), 0) AS BIGINT) AS tokens_cache_read,
    CAST(coalesce(sum(p.tokens_cache_write), 0) AS BIGINT) AS tokens_cache_write,
    CAST(coalesce(sum(p.tokens_reasoning), 0) AS BIGINT) AS tokens_reasoning,
    CAST(sum(p.cost_usd) AS DECIMAL(38, 9)) AS cost_usd,
    CAST(sum(p.unpriced_events) AS BIGINT) AS unpriced_events,
    -- percentiles interpolate between two runs' costs through a DOUBLE weight (DuckDB): exact where they
    -- fall on a run, otherwise within the 16th significant digit, which is an estimate, never a sum
    CAST(quantile_cont(p.cost_usd, 0.5) AS DECIMAL(38, 9)) AS cost_per_run_p50,
    CAST(quantile_cont(p.cost_usd, 0.9) AS DECIMAL(38, 9)) AS cost_per_run_p90,
    CAST(quantile_cont(p.cost_usd, 0.99) AS DECIMAL(38, 9)) AS cost_per_run_p99,
    CAST(count(o.succeeded) AS BIGINT) AS runs_with_outcome,
    CAST(count(*) FILTER (WHERE o.succeeded) AS BIGINT) AS successful_runs,
    -- the mean of the successful runs' costs, exact: nano-dollars divided as integers and rounded half
    -- away from zero (DuckDB divides a DECIMAL as a DOUBLE, which keeps only 15-16 significant digits)
    CAST(sign(sum(p.cost_usd) FILTER (WHERE o.succeeded))
        * ((abs(CAST(sum(p.cost_usd) FILTER (WHERE o.succeeded) * 1000000000 AS HUGEINT)) * 2 + count(*) FILTER (WHERE o.succeeded))
            // nullif(2 * count(*) FILTER (WHERE o.succeeded), 0))
        AS DECIMAL(38, 0)) * CAST(0.000000001 AS DECIMAL(10, 9)) AS cost_per_successful_run
FROM per_run AS p
LEFT JOIN outcomes AS o USING (run_id)
GROUP BY ALL
ORDER BY ALL
