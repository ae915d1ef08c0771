-- summary: No two side-effect events share an idempotency_key (the doorbell was rung once).
-- params: none
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: critical
-- monotone: true
-- Side effects are tool calls and any event carrying an idempotency_key; the key is filled at
-- import (journal import --idempotency-key FIELD). The first use of a key holds; every later
-- event with the same key does not, wherever it is in the journal.
SELECT
    stream_id,
    version,
    idempotency_key IS NULL OR first_position = position AS holds,
    CASE WHEN idempotency_key IS NOT NULL AND first_position <> position THEN
        'idempotency_key ' || idempotency_key || ' already used by ' || first_stream_id
        || ' version ' || CAST(first_version AS VARCHAR) || ' (' || CAST(uses AS VARCHAR) || ' uses)'
    END AS message
FROM (
    SELECT
        stream_id, version, position, idempotency_key,
        min(position) OVER dup AS first_position,
        arg_min(stream_id, position) OVER dup AS first_stream_id,
        arg_min(version, position) OVER dup AS first_version,
        count(*) OVER dup AS uses
    FROM events
    WHERE idempotency_key IS NOT NULL OR event_type = 'tool_called'
    -- events without a key are their own partition (by event id), never one a key can name
    WINDOW dup AS (PARTITION BY idempotency_key IS NULL, coalesce(idempotency_key, event_id))
)
