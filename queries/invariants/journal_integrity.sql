-- summary: Versions are contiguous from 1, event ids are unique, and causes point to earlier events.
-- params: allow_unknown_causes BOOLEAN = false
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: critical
-- monotone: false
-- A causation_id that names no event in the journal fails unless allow_unknown_causes (some
-- sources record command ids there). Duplicate ids are checked across the whole journal.
SELECT
    stream_id,
    version,
    version = coalesce(previous_version, 0) + 1
        AND id_uses = 1
        AND (causation_id IS NULL OR coalesce(cause_position < position, $allow_unknown_causes)) AS holds,
    CASE
        WHEN version <> coalesce(previous_version, 0) + 1
            THEN 'version ' || CAST(version AS VARCHAR) || ' follows ' || CAST(coalesce(previous_version, 0) AS VARCHAR)
        WHEN id_uses > 1 THEN 'event_id ' || event_id || ' used ' || CAST(id_uses AS VARCHAR) || ' times'
        WHEN causation_id IS NOT NULL AND cause_position IS NULL AND NOT $allow_unknown_causes
            THEN 'causation_id ' || causation_id || ' names no event in the journal'
        WHEN cause_position >= position THEN 'causation_id ' || causation_id || ' names a later event'
    END AS message
FROM (
    SELECT
        e.stream_id, e.version, e.event_id, e.position, e.causation_id,
        lag(e.version) OVER (PARTITION BY e.stream_id ORDER BY e.version) AS previous_version,
        count(*) OVER (PARTITION BY e.event_id) AS id_uses,
        c.cause_position
    FROM events AS e
    LEFT JOIN (SELECT event_id, min(position) AS cause_position FROM events GROUP BY event_id) AS c
        ON c.event_id = e.causation_id
)
