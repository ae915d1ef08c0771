-- summary: Trace ids most like a given one (the "did you mean" of journal trace).
-- params: trace_id VARCHAR, limit BIGINT = 3
-- returns: trace_id VARCHAR, events BIGINT, similarity DOUBLE
SELECT
    trace_id,
    CAST(count(*) AS BIGINT) AS events,
    CAST(max(jaro_winkler_similarity(trace_id, $trace_id)) AS DOUBLE) AS similarity
FROM events
GROUP BY trace_id
ORDER BY similarity DESC NULLS LAST, levenshtein(coalesce(trace_id, $trace_id), $trace_id), trace_id
LIMIT $limit
