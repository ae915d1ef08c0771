-- summary: The costliest runs (streams) on the session's cost basis, with their agent, models, tokens, errors and outcome.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, limit BIGINT = 5
-- returns: rank BIGINT, stream_id VARCHAR, agent VARCHAR, models VARCHAR, started_at TIMESTAMPTZ, events BIGINT, llm_calls BIGINT, errors BIGINT, tokens_in BIGINT, tokens_out BIGINT, cost_usd DECIMAL(38,9), unpriced_events BIGINT, outcome VARCHAR
WITH runs AS (
    SELECT
        stream_id,
        any_value(agent) FILTER (WHERE agent IS NOT NULL) AS agent,
        string_agg(DISTINCT model, ', ' ORDER BY model) AS models,
        min(occurred_at) AS first_at,
        count(*) AS events,
        count(*) FILTER (WHERE event_type = 'llm_response') AS llm_calls,
        count(*) FILTER (WHERE is_error) AS errors,
        coalesce(sum(tokens_in), 0) AS tokens_in,
        coalesce(sum(tokens_out), 0) AS tokens_out,
        coalesce(sum(cost_usd), 0) AS cost_usd,
        count(*) FILTER (WHERE unpriced) AS unpriced_events
    FROM cost_events
    WHERE ($since IS NULL OR occurred_at >= $since)
      AND ($until IS NULL OR occurred_at < $until)
    GROUP BY stream_id
),
top AS (
    SELECT * FROM runs ORDER BY cost_usd DESC, stream_id LIMIT $limit
),
outcomes AS (
    -- a run's outcome, where its first event states one: metadata.outcome / .reward (or under .run)
    SELECT
        stream_id,
        coalesce(
            json_extract_string(metadata, '$.outcome'),
            json_extract_string(metadata, '$.run.outcome'),
            'reward ' || coalesce(json_extract_string(metadata, '$.reward'), json_extract_string(metadata, '$.run.reward'))
        ) AS outcome
    FROM cost_events
    WHERE version = 1 AND stream_id IN (SELECT stream_id FROM top)
)
SELECT
    CAST(row_number() OVER (ORDER BY t.cost_usd DESC, t.stream_id) AS BIGINT) AS rank,
    t.stream_id,
    t.agent,
    t.models,
    t.first_at AS started_at,
    CAST(t.events AS BIGINT) AS events,
    CAST(t.llm_calls AS BIGINT) AS llm_calls,
    CAST(t.errors AS BIGINT) AS errors,
    CAST(t.tokens_in AS BIGINT) AS tokens_in,
    CAST(t.tokens_out AS BIGINT) AS tokens_out,
    CAST(t.cost_usd AS DECIMAL(38, 9)) AS cost_usd,
    CAST(t.unpriced_events AS BIGINT) AS unpriced_events,
    o.outcome
FROM top AS t
LEFT JOIN outcomes AS o USING (stream_id)
ORDER BY rank
