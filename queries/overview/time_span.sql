-- summary: The first and last UTC day with events, and the agents seen (for range and agent pickers).
-- params: none
-- returns: first_day DATE, last_day DATE, agents VARCHAR[]
SELECT
    CAST(min(day) AS DATE) AS first_day,
    CAST(max(day) AS DATE) AS last_day,
    list_sort(list(DISTINCT agent) FILTER (WHERE agent IS NOT NULL)) AS agents
FROM events
