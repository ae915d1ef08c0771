-- summary: Each run (stream) with the UTC day it started, for failure rates per day.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: stream_id VARCHAR, day DATE
SELECT stream_id, min(day) AS day
FROM events
GROUP BY stream_id
HAVING ($since IS NULL OR max(occurred_at) >= $since)
   AND ($until IS NULL OR min(occurred_at) < $until)
ORDER BY day, stream_id
