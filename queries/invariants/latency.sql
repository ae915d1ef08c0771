-- summary: Every tool result and LLM response took no longer than its bound.
-- params: max_tool_ms DOUBLE = 30000, max_llm_ms DOUBLE = 60000
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: warning
-- monotone: false
SELECT
    stream_id,
    version,
    duration_ms <= bound_ms AS holds,
    CASE WHEN duration_ms > bound_ms THEN
        event_type || coalesce(' ' || tool_name, '') || coalesce(' ' || model, '') || ' took '
        || CAST(duration_ms AS VARCHAR) || ' ms > ' || CAST(bound_ms AS VARCHAR) || ' ms'
    END AS message
FROM (
    SELECT
        stream_id, version, event_type, tool_name, model, duration_ms,
        CASE WHEN event_type = 'llm_response' THEN $max_llm_ms ELSE $max_tool_ms END AS bound_ms
    FROM events
    WHERE duration_ms IS NOT NULL AND event_type IN ('tool_result', 'llm_response')
)
