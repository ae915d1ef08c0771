-- summary: Cumulative cost (and optionally tokens) of each run stays within budget.
-- params: max_cost_usd DOUBLE = 5, max_tokens BIGINT = NULL
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
-- severity: error
-- monotone: true
-- Costs and tokens never shrink, so once a run is over budget it stays over (monotone).
SELECT
    stream_id,
    version,
    cost_usd_so_far <= $max_cost_usd AND ($max_tokens IS NULL OR tokens_so_far <= $max_tokens) AS holds,
    CASE
        WHEN cost_usd_so_far > $max_cost_usd
            THEN 'cumulative cost $' || CAST(cost_usd_so_far AS VARCHAR) || ' exceeds $' || CAST($max_cost_usd AS VARCHAR)
        WHEN tokens_so_far > $max_tokens
            THEN 'cumulative tokens ' || CAST(tokens_so_far AS VARCHAR) || ' exceed ' || CAST($max_tokens AS VARCHAR)
    END AS message
FROM (
    SELECT
        stream_id,
        version,
        sum(coalesce(cost_usd, 0)) OVER run AS cost_usd_so_far,
        sum(coalesce(tokens_in, 0) + coalesce(tokens_out, 0)) OVER run AS tokens_so_far
    FROM events
    WINDOW run AS (PARTITION BY stream_id ORDER BY version ROWS UNBOUNDED PRECEDING)
)
