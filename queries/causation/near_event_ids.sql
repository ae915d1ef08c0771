-- summary: Event ids most like a given one (the "did you mean" of journal chain).
-- params: event_id VARCHAR, limit BIGINT = 3
-- returns: event_id VARCHAR, stream_id VARCHAR, event_type VARCHAR, similarity DOUBLE
SELECT
    event_id,
    stream_id,
    event_type,
    CAST(jaro_winkler_similarity(event_id, $event_id) AS DOUBLE) AS similarity
FROM events
ORDER BY similarity DESC, levenshtein(event_id, $event_id), event_id
LIMIT $limit
