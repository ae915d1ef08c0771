-- summary: The built-in agent-run state at the head of every stream (or of $stream_ids), folded column-wise, without its per-tool and per-model counts (replay/agent_run_names_by_stream.sql; agent_run.agent_run_states joins both). special = the stream has assistant topics the Python fold must handle. With $after, the part of the state made by the events at positions after it (merged into an earlier state by agent_run.merge_states, which reads last_ok and status_set).
-- params: stream_ids VARCHAR[] = NULL, after BIGINT = NULL
-- returns: stream_id VARCHAR, version BIGINT, events BIGINT, status VARCHAR, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_cache_write BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(38,9), llm_calls BIGINT, last_tool VARCHAR, model VARCHAR, plans BIGINT, errors BIGINT, consecutive_errors BIGINT, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ, special BOOLEAN, last_ok BIGINT, status_set BOOLEAN
WITH ev AS NOT MATERIALIZED (
    SELECT stream_id, version, occurred_at, model, tool_name, tokens_in, tokens_out,
           tokens_cache_read, tokens_cache_write, tokens_reasoning, cost_usd, is_error, data,
           -- the canonical types as small codes (0: any other type), compared once per event
           CAST(CASE event_type
               WHEN 'user_message' THEN 1 WHEN 'plan_created' THEN 2 WHEN 'llm_request' THEN 3
               WHEN 'tool_called' THEN 4 WHEN 'tool_result' THEN 5 WHEN 'llm_response' THEN 6
               WHEN 'error' THEN 7 WHEN 'state_updated' THEN 8 WHEN 'custom' THEN 9 ELSE 0
           END AS UTINYINT) AS k
    FROM events
    WHERE ($stream_ids IS NULL OR stream_id IN (SELECT unnest($stream_ids)))
      AND ($after IS NULL OR position > $after)
),
base AS (
    SELECT
        stream_id,
        max(version) AS version,
        count(*) AS events,
        coalesce(sum(tokens_in), 0) AS tokens_in,
        coalesce(sum(tokens_out), 0) AS tokens_out,
        coalesce(sum(tokens_cache_read), 0) AS tokens_cache_read,
        coalesce(sum(tokens_cache_write), 0) AS tokens_cache_write,
        coalesce(sum(tokens_reasoning), 0) AS tokens_reasoning,
        coalesce(sum(cost_usd), 0) AS cost_usd,
        count(*) FILTER (WHERE k = 6) AS llm_calls,
        count(*) FILTER (WHERE k = 2) AS plans,
        count(*) FILTER (WHERE is_error) AS errors,
        coalesce(max(version) FILTER (WHERE NOT is_error), 0) AS last_ok,
        arg_max(tool_name, version) FILTER (WHERE k IN (4, 5) AND tool_name <> '') AS last_tool,
        arg_max(model, version) FILTER (WHERE model <> '') AS model,
        arg_max(k, version) FILTER (WHERE k BETWEEN 1 AND 7) AS decisive,  -- the last event that sets the status
        -- the payload of that event when it is an llm_response that may ask for tools (judged once per
        -- stream below; one that can, names tool_calls or tool_use, or escapes a character)
        arg_max(CASE WHEN k = 6 AND (contains(data, 'tool_') OR contains(data, '\')) THEN data ELSE '' END, version)
            FILTER (WHERE k BETWEEN 1 AND 7) AS data,
        min(occurred_at) AS first_at,
        max(occurred_at) AS last_at,
        bool_or(k = 0) AS special
    FROM ev
    GROUP BY stream_id
)
SELECT
    b.stream_id,
    CAST(b.version AS BIGINT) AS version,
    CAST(b.events AS BIGINT) AS events,
    CASE b.decisive
        -- an llm_response asking for tool calls is no answer: the run waits for its tools
        -- (agent_run.requests_tools; the requests_tools macro of every session: duckdb_engine.MACROS)
        WHEN 6 THEN CASE WHEN requests_tools(data) THEN 'running' ELSE 'answered' END
        WHEN 7 THEN 'aborted'
        ELSE 'running'
    END AS status,
    CAST(b.tokens_in AS BIGINT) AS tokens_in,
    CAST(b.tokens_out AS BIGINT) AS tokens_out,
    CAST(b.tokens_cache_read AS BIGINT) AS tokens_cache_read,
    CAST(b.tokens_cache_write AS BIGINT) AS tokens_cache_write,
    CAST(b.tokens_reasoning AS BIGINT) AS tokens_reasoning,
    CAST(b.cost_usd AS DECIMAL(38, 9)) AS cost_usd,  -- a run's sum: past an event's DECIMAL(18, 9) (1e9 USD)
    CAST(b.llm_calls AS BIGINT) AS llm_calls,
    b.last_tool,
    b.model,
    CAST(b.plans AS BIGINT) AS plans,
    CAST(b.errors AS BIGINT) AS errors,
    CAST(b.version - b.last_ok AS BIGINT) AS consecutive_errors,
    b.first_at,
    b.last_at,
    b.special,
    CAST(b.last_ok AS BIGINT) AS last_ok,
    b.decisive IS NOT NULL AS status_set
FROM base AS b
ORDER BY b.stream_id
