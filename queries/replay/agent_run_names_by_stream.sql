-- summary: Per stream (or of $stream_ids; with $after, of the events at positions after it), the agent-run counts per tool and per model: calls (tool_called, or llm_response for a model), results and failures (a failed tool_result, or an error naming the tool). The other half of replay/agent_runs_by_stream.sql.
-- params: stream_ids VARCHAR[] = NULL, after BIGINT = NULL
-- returns: stream_id VARCHAR, is_llm BOOLEAN, name VARCHAR, called BIGINT, results BIGINT, failed BIGINT
WITH ev AS NOT MATERIALIZED (
    SELECT stream_id, model, tool_name, is_error,
           CAST(CASE event_type WHEN 'tool_called' THEN 4 WHEN 'tool_result' THEN 5 WHEN 'llm_response' THEN 6
               WHEN 'error' THEN 7 ELSE 0 END AS UTINYINT) AS k
    FROM events
    WHERE ($stream_ids IS NULL OR stream_id IN (SELECT unnest($stream_ids)))
      AND ($after IS NULL OR position > $after)
),
per_name AS (
    SELECT
        stream_id,
        k = 6 AS is_llm,
        CASE k
            WHEN 6 THEN coalesce(nullif(model, ''), 'unknown')
            WHEN 7 THEN tool_name
            ELSE coalesce(nullif(tool_name, ''), 'unknown')
        END AS name,
        count(*) FILTER (WHERE k IN (4, 6)) AS called,
        count(*) FILTER (WHERE k = 5) AS results,
        count(*) FILTER (WHERE (k = 5 AND is_error) OR k = 7) AS failed
    FROM ev
    WHERE k IN (4, 5, 6) OR (k = 7 AND tool_name <> '')
    GROUP BY ALL
)
SELECT stream_id, is_llm, name, called, results, failed
FROM per_name
