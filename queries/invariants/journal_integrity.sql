-- summary: Versions are contiguous from 1, event ids are unique, and causes point to earlier events.
-- params: allow_unknown_causes BOOLEAN = false
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: critical
-- monotone: false
-- A causation_id that names no event in the journal fails unless allow_unknown_causes (some
-- sources record command ids there). Duplicate ids are checked across the whole journal.
WITH ids AS (
    SELECT event_id, count(*) AS uses, min(position) AS first_position
    FROM events
    GROUP BY event_id
)
SELECT
    e.stream_id,
    e.version,
    e.version = coalesce(e.previous_version, 0) + 1
        AND coalesce(dup.uses, 1) = 1
        AND (e.causation_id IS NULL OR coalesce(cause.first_position < e.position, $allow_unknown_causes)) AS holds,
    CASE
        WHEN e.version <> coalesce(e.previous_version, 0) + 1
            THEN 'version ' || CAST(e.version AS VARCHAR) || ' follows ' || CAST(coalesce(e.previous_version, 0) AS VARCHAR)
        WHEN dup.uses > 1 THEN 'event_id ' || e.event_id || ' used ' || CAST(dup.uses AS VARCHAR) || ' times'
        WHEN e.causation_id IS NOT NULL AND cause.first_position IS NULL AND NOT $allow_unknown_causes
            THEN 'causation_id ' || e.causation_id || ' names no event in the journal'
        WHEN cause.first_position >= e.position THEN 'causation_id ' || e.causation_id || ' names a later event'
    END AS message
FROM (
    SELECT
        stream_id, version, event_id, position, causation_id,
        lag(version) OVER (PARTITION BY stream_id ORDER BY version) AS previous_version
    FROM events
) AS e
LEFT JOIN (SELECT event_id, uses FROM ids WHERE uses > 1) AS dup ON dup.event_id = e.event_id
LEFT JOIN ids AS cause ON cause.event_id = e.causation_id
