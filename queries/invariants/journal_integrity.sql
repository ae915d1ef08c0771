-- summary: Versions are contiguous from 1, event ids are unique, and causes point to earlier events.
-- params: allow_unknown_causes BOOLEAN = false
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: critical
-- monotone: false
-- A causation_id that names no event in the journal fails unless allow_unknown_causes (some
-- sources record command ids there). Duplicate ids are checked across the whole journal.
-- Retention (journal purge, journal archive --delete) is not a violation: a stream may start at a
-- first_kept_version its purges recorded, and a cause a purge removed (purged_events; for a purge
-- recorded before that table, any unknown cause of an event of a stream it cut, at or after its
-- first kept version) is not one naming no event.
WITH ids AS (
    SELECT event_id, count(*) AS uses, min(position) AS first_position
    FROM events
    GROUP BY event_id
),
kept AS (
    SELECT DISTINCT stream_id, first_kept_version FROM purges
),
removed AS (
    SELECT DISTINCT event_id FROM purged_events
),
unrecorded AS (
    SELECT stream_id, min(first_kept_version) AS first_kept_version
    FROM purges
    WHERE purge_id NOT IN (SELECT purge_id FROM purged_events)
    GROUP BY stream_id
),
e AS (
    SELECT
        s.stream_id, s.version, s.event_id, s.position, s.causation_id,
        coalesce(
            s.previous_version,
            CASE WHEN kept.stream_id IS NOT NULL THEN s.version - 1 ELSE 0 END
        ) AS previous_version
    FROM (
        SELECT
            stream_id, version, event_id, position, causation_id,
            lag(version) OVER (PARTITION BY stream_id ORDER BY version) AS previous_version
        FROM events
    ) AS s
    LEFT JOIN kept
        ON s.previous_version IS NULL AND kept.stream_id = s.stream_id AND kept.first_kept_version = s.version
)
SELECT
    e.stream_id,
    e.version,
    e.version = e.previous_version + 1
        AND coalesce(dup.uses, 1) = 1
        AND (
            e.causation_id IS NULL
            OR coalesce(
                cause.first_position < e.position,
                $allow_unknown_causes OR removed.event_id IS NOT NULL OR unrecorded.stream_id IS NOT NULL
            )
        ) AS holds,
    CASE
        WHEN e.version <> e.previous_version + 1
            THEN 'version ' || CAST(e.version AS VARCHAR) || ' follows ' || CAST(e.previous_version AS VARCHAR)
        WHEN dup.uses > 1 THEN 'event_id ' || e.event_id || ' used ' || CAST(dup.uses AS VARCHAR) || ' times'
        WHEN e.causation_id IS NOT NULL AND cause.first_position IS NULL AND NOT $allow_unknown_causes
            AND removed.event_id IS NULL AND unrecorded.stream_id IS NULL
            THEN 'causation_id ' || e.causation_id || ' names no event in the journal'
        WHEN cause.first_position >= e.position THEN 'causation_id ' || e.causation_id || ' names a later event'
    END AS message
FROM e
LEFT JOIN (SELECT event_id, uses FROM ids WHERE uses > 1) AS dup ON dup.event_id = e.event_id
LEFT JOIN ids AS cause ON cause.event_id = e.causation_id
LEFT JOIN removed ON cause.first_position IS NULL AND removed.event_id = e.causation_id
LEFT JOIN unrecorded
    ON cause.first_position IS NULL AND e.causation_id IS NOT NULL
    AND unrecorded.stream_id = e.stream_id AND e.version >= unrecorded.first_kept_version
