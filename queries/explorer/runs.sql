-- summary: Runs (streams) matching the explorer's filters: active in a time range, agent, minimum cost, status, id substring or exact id; most recent first.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, agent VARCHAR = NULL, min_cost_usd DECIMAL(38,9) = NULL, status VARCHAR = NULL, search VARCHAR = NULL, run_id VARCHAR = NULL, limit BIGINT = 200
-- returns: stream_id VARCHAR, agent VARCHAR, status VARCHAR, first_at TIMESTAMPTZ, last_at TIMESTAMPTZ, events BIGINT, errors BIGINT, cost_usd DECIMAL(38,9)
-- Status follows the agent-run aggregate: the last decisive event (llm_response: answered, unless
-- it asks for tool calls; error: aborted; any other step: running); an AssistantArchived event makes
-- the run archived.
WITH streams AS (
    SELECT
        stream_id,
        any_value(agent) FILTER (WHERE agent IS NOT NULL) AS agent,
        bool_or(event_type = 'AssistantArchived') AS archived,
        arg_max(event_type, version) FILTER (WHERE event_type IN (
            'user_message', 'plan_created', 'llm_request', 'tool_called', 'tool_result', 'TickCompleted',
            'EmergencyStopCleared', 'AssistantCreated', 'llm_response', 'error')) AS decisive,
        -- the payload of that event when it is an llm_response that may ask for tools (judged once per
        -- stream below; one that can, names tool_calls or tool_use, or escapes a character)
        arg_max(
            CASE WHEN event_type = 'llm_response' AND (contains(data, 'tool_') OR contains(data, '\')) THEN data ELSE '' END,
            version
        ) FILTER (
            WHERE event_type IN ('user_message', 'plan_created', 'llm_request', 'tool_called', 'tool_result',
                'TickCompleted', 'EmergencyStopCleared', 'AssistantCreated', 'llm_response', 'error')) AS data,
        min(occurred_at) AS first_at,
        max(occurred_at) AS last_at,
        CAST(count(*) AS BIGINT) AS events,
        CAST(count(*) FILTER (WHERE is_error) AS BIGINT) AS errors,
        CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd
    FROM events
    WHERE ($search IS NULL OR contains(stream_id, $search))
      AND ($run_id IS NULL OR stream_id = $run_id)
    GROUP BY stream_id
),
runs AS (
    SELECT
        stream_id,
        agent,
        CASE
            WHEN archived THEN 'archived'
            ELSE CASE decisive
                -- an llm_response asking for tool calls is no answer: the run waits for its tools
                -- (agent_run.requests_tools; the requests_tools macro of every session: duckdb_engine.MACROS)
                WHEN 'llm_response' THEN CASE WHEN requests_tools(data) THEN 'running' ELSE 'answered' END
                WHEN 'error' THEN 'aborted'
                ELSE 'running'
            END
        END AS status,
        first_at,
        last_at,
        events,
        errors,
        cost_usd
    FROM streams
)
SELECT stream_id, agent, status, first_at, last_at, events, errors, cost_usd
FROM runs AS r
WHERE ($since IS NULL OR r.last_at >= $since)
  AND ($until IS NULL OR r.first_at < $until)
  AND ($agent IS NULL OR r.agent = $agent)
  AND ($min_cost_usd IS NULL OR r.cost_usd >= $min_cost_usd)
  AND ($status IS NULL OR r.status = $status)
ORDER BY r.last_at DESC, r.stream_id
LIMIT $limit
