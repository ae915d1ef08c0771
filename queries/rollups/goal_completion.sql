-- summary: Goal completion rate per agent: goals created, completed and failed or abandoned (GoalCreated/GoalCompleted-style events of agent frameworks).
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: agent VARCHAR, streams BIGINT, goals_created BIGINT, goals_completed BIGINT, goals_failed BIGINT, completion_rate DOUBLE
-- Goal events are recognised by name (event_type or source_type): goal created / set / added,
-- goal completed / achieved, goal failed / abandoned / cancelled (any case, with or without _).
WITH goals AS (
    SELECT
        coalesce(agent, '(none)') AS agent,
        stream_id,
        regexp_replace(lower(event_type || ' ' || coalesce(source_type, '')), '[^a-z]', '', 'g') AS name
    FROM events
    WHERE (event_type ILIKE '%goal%' OR source_type ILIKE '%goal%')
      AND ($since IS NULL OR occurred_at >= $since)
      AND ($until IS NULL OR occurred_at < $until)
)
SELECT
    agent,
    CAST(count(DISTINCT stream_id) AS BIGINT) AS streams,
    CAST(count(*) FILTER (WHERE regexp_matches(name, 'goal(created|set|added)')) AS BIGINT) AS goals_created,
    CAST(count(*) FILTER (WHERE regexp_matches(name, 'goal(completed|achieved)')) AS BIGINT) AS goals_completed,
    CAST(count(*) FILTER (WHERE regexp_matches(name, 'goal(failed|abandoned|cancelled|canceled)')) AS BIGINT) AS goals_failed,
    CAST(
        count(*) FILTER (WHERE regexp_matches(name, 'goal(completed|achieved)'))
        / nullif(count(*) FILTER (WHERE regexp_matches(name, 'goal(created|set|added)')), 0) AS DOUBLE
    ) AS completion_rate
FROM goals
GROUP BY agent
ORDER BY agent
