-- summary: Every tool call gets exactly one result, and every result answers an earlier call.
-- params: none
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: error
-- monotone: false
-- Calls and results are paired by tool_call_id within the stream. A call without an id, a call
-- that never gets a result, a second result for one call and a result with no earlier call fail.
SELECT
    stream_id,
    version,
    CASE
        WHEN tool_call_id IS NULL THEN false
        WHEN event_type = 'tool_called' THEN calls_before = 0 AND results_after = 1
        ELSE calls_before = 1 AND results_before = 0
    END AS holds,
    CASE
        WHEN tool_call_id IS NULL THEN event_type || ' without a tool_call_id'
        WHEN event_type = 'tool_called' AND calls_before > 0 THEN 'call ' || tool_call_id || ' made twice'
        WHEN event_type = 'tool_called' AND results_after = 0 THEN 'call ' || tool_call_id || coalesce(' (' || tool_name || ')', '') || ' never got a result'
        WHEN event_type = 'tool_called' AND results_after > 1 THEN 'call ' || tool_call_id || ' got ' || CAST(results_after AS VARCHAR) || ' results'
        WHEN event_type = 'tool_result' AND calls_before = 0 THEN 'orphan result: no earlier call ' || tool_call_id
        WHEN event_type = 'tool_result' AND results_before > 0 THEN 'second result for call ' || tool_call_id
    END AS message
FROM (
    SELECT
        stream_id, version, event_type, tool_name, tool_call_id,
        count(*) FILTER (WHERE event_type = 'tool_called') OVER before AS calls_before,
        count(*) FILTER (WHERE event_type = 'tool_result') OVER before AS results_before,
        count(*) FILTER (WHERE event_type = 'tool_result') OVER after AS results_after
    FROM events
    WHERE event_type IN ('tool_called', 'tool_result')
    WINDOW
        before AS (PARTITION BY stream_id, tool_call_id ORDER BY version ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
        after AS (PARTITION BY stream_id, tool_call_id ORDER BY version ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
)
