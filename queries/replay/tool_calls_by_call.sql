-- summary: Every tool call paired with the event that ended it: the k-th call with a tool_call_id with the k-th tool_result or error event naming that id (an error event, e.g. a timeout, ends its call as an error); without ids, the k-th call of a tool with its k-th result. Latency and outcome (ok, error, pending); a result or error without a call is a row without called_version.
-- params: stream_ids VARCHAR[] = NULL
-- returns: stream_id VARCHAR, call_key VARCHAR, tool_name VARCHAR, tool_call_id VARCHAR, called_version BIGINT, result_version BIGINT, called_at TIMESTAMPTZ, result_at TIMESTAMPTZ, latency_ms DOUBLE, outcome VARCHAR, error VARCHAR
WITH named AS NOT MATERIALIZED (
    SELECT
        stream_id, version, occurred_at, tool_call_id, error, duration_ms,
        event_type = 'tool_called' AS is_call,
        is_error OR event_type = 'error' AS is_error,
        coalesce(nullif(tool_name, ''), 'unknown') AS tool
    FROM events
    -- an error event naming a call id ends that call like a failed result (a timeout, say)
    WHERE (event_type IN ('tool_called', 'tool_result') OR (event_type = 'error' AND tool_call_id IS NOT NULL))
      AND ($stream_ids IS NULL OR stream_id IN (SELECT unnest($stream_ids)))
),
t AS NOT MATERIALIZED (
    -- pairing key: (has no id, the id or else the tool name) and k, the rank among calls or
    -- among the events ending one (results and error events, in version order)
    SELECT
        *,
        tool_call_id IS NULL AS no_id,
        coalesce(tool_call_id, tool) AS pkey,
        row_number() OVER (
            PARTITION BY stream_id, tool_call_id IS NULL, coalesce(tool_call_id, tool), is_call ORDER BY version
        ) AS k
    FROM named
),
calls AS (SELECT * FROM t WHERE is_call),
results AS (SELECT * FROM t WHERE NOT is_call)
SELECT
    coalesce(c.stream_id, r.stream_id) AS stream_id,
    coalesce(
        coalesce(c.tool_call_id, r.tool_call_id),
        coalesce(c.tool, r.tool) || '#' || CAST(coalesce(c.k, r.k) AS VARCHAR)
    ) AS call_key,
    coalesce(c.tool, r.tool) AS tool_name,
    coalesce(c.tool_call_id, r.tool_call_id) AS tool_call_id,
    CAST(c.version AS BIGINT) AS called_version,
    CAST(r.version AS BIGINT) AS result_version,
    c.occurred_at AS called_at,
    r.occurred_at AS result_at,
    CAST(coalesce(
        r.duration_ms,
        CAST(epoch_us(r.occurred_at) - epoch_us(c.occurred_at) AS DOUBLE) / 1000.0
    ) AS DOUBLE) AS latency_ms,
    CASE WHEN r.version IS NULL THEN 'pending' WHEN r.is_error THEN 'error' ELSE 'ok' END AS outcome,
    r.error
FROM calls AS c
FULL OUTER JOIN results AS r
    ON c.stream_id = r.stream_id AND c.no_id = r.no_id AND c.pkey = r.pkey AND c.k = r.k
ORDER BY stream_id, coalesce(c.version, r.version)
