-- summary: Correlation ids most like a given one (the "did you mean" of journal correlation).
-- params: correlation_id VARCHAR, limit BIGINT = 3
-- returns: correlation_id VARCHAR, events BIGINT, similarity DOUBLE
SELECT
    correlation_id,
    CAST(count(*) AS BIGINT) AS events,
    CAST(max(jaro_winkler_similarity(correlation_id, $correlation_id)) AS DOUBLE) AS similarity
FROM events
GROUP BY correlation_id
ORDER BY similarity DESC NULLS LAST, correlation_id
LIMIT $limit
