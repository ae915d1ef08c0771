-- summary: Every event with its cost repriced from the price table (view prices) at its own time, or at as_of (a cost without tokens kept as recorded); why a billable event has no price.
-- params: as_of TIMESTAMPTZ = NULL
-- returns: stream_id VARCHAR, stream_type VARCHAR, version BIGINT, position BIGINT, event_id VARCHAR, event_type VARCHAR, source_type VARCHAR, occurred_at TIMESTAMPTZ, recorded_at TIMESTAMPTZ, correlation_id VARCHAR, causation_id VARCHAR, traceparent VARCHAR, trace_id VARCHAR, span_id VARCHAR, model VARCHAR, tool_name VARCHAR, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_cache_write BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(18,9), duration_ms DOUBLE, is_error BOOLEAN, error VARCHAR, data VARCHAR, metadata VARCHAR, agent VARCHAR, subject_id VARCHAR, tool_call_id VARCHAR, idempotency_key VARCHAR, source VARCHAR, payload_sha256 VARCHAR, prev_hash VARCHAR, hash VARCHAR, day DATE, billable BOOLEAN, price_row VARCHAR, price_provider VARCHAR, repriced_cost_usd DECIMAL(18,9), unpriced_reason VARCHAR
-- A model is priced by one pattern of price_segments: exact names first, then regexes in file order.
-- The segments do not overlap (in time and tokens_in), so the join gives at most one rate per event.
WITH models AS (
    SELECT DISTINCT model FROM events WHERE model IS NOT NULL
),
patterns AS (
    SELECT DISTINCT pattern, match, rule_order FROM price_segments
),
model_rule AS (
    SELECT m.model, p.pattern, p.match
    FROM models AS m
    JOIN patterns AS p
      ON (p.match = 'exact' AND m.model = p.pattern)
      OR (p.match = 'regex' AND regexp_full_match(m.model, p.pattern))
    QUALIFY row_number() OVER (PARTITION BY m.model ORDER BY p.match = 'exact' DESC, p.rule_order) = 1
),
rates AS (
    SELECT mr.model, s.*
    FROM model_rule AS mr
    JOIN price_segments AS s USING (pattern, match)  -- an exact and a regex row may share the text
),
costed AS (
    SELECT
        e.*,
        -- any token count makes an event billable: cache or reasoning tokens without tokens_in/out are inconsistent, not free
        coalesce(e.tokens_in, 0) + coalesce(e.tokens_out, 0) + coalesce(e.tokens_cache_read, 0)
            + coalesce(e.tokens_cache_write, 0) + coalesce(e.tokens_reasoning, 0) > 0 AS billable,
        coalesce(e.tokens_cache_read, 0) + coalesce(e.tokens_cache_write, 0) > coalesce(e.tokens_in, 0)
            OR coalesce(e.tokens_reasoning, 0) > coalesce(e.tokens_out, 0) AS inconsistent,
        r.price_row,
        r.provider AS price_provider,
        r.input_rate,
        r.cache_read_rate,
        r.cache_write_rate,
        r.output_rate,
        r.reasoning_rate
    FROM events AS e
    LEFT JOIN rates AS r
      ON r.model = e.model
     AND coalesce(CAST($as_of AS TIMESTAMPTZ), e.occurred_at) >= r.valid_from
     AND (r.valid_to IS NULL OR coalesce(CAST($as_of AS TIMESTAMPTZ), e.occurred_at) < r.valid_to)
     AND coalesce(e.tokens_in, 0) > r.tokens_above
     AND (r.tokens_upto IS NULL OR coalesce(e.tokens_in, 0) <= r.tokens_upto)
),
token_costs AS (
    -- the arithmetic runs only for the events a rate was found for (rates are USD per 1M tokens),
    -- unrounded: DECIMAL(38, 12) holds any BIGINT tokens at any rate the price table takes
    SELECT
        * EXCLUDE (input_rate, cache_read_rate, cache_write_rate, output_rate, reasoning_rate),
        CASE WHEN price_row IS NOT NULL AND NOT inconsistent THEN
            ((coalesce(tokens_in, 0) - coalesce(tokens_cache_read, 0) - coalesce(tokens_cache_write, 0)) * input_rate
                + coalesce(tokens_cache_read, 0) * cache_read_rate
                + coalesce(tokens_cache_write, 0) * cache_write_rate
                + (coalesce(tokens_out, 0) - coalesce(tokens_reasoning, 0)) * output_rate
                + coalesce(tokens_reasoning, 0) * reasoning_rate) * CAST(0.000001 AS DECIMAL(7, 6))
        END AS token_cost
    FROM costed
)
SELECT
    * EXCLUDE (inconsistent, price_row, price_provider, token_cost),
    price_row,
    price_provider,
    -- a cost recorded on an event without tokens (a paid tool call, a request fee) is no token
    -- price: it is kept as recorded, so repricing neither drops it nor calls it a saving.
    -- An event's cost is a DECIMAL(18, 9) like the journal's cost_usd; one that does not fit
    -- (a price or token count off by orders of magnitude) is unpriced, with its reason
    CASE
        WHEN NOT billable THEN cost_usd
        WHEN token_cost < 999999999.9999999995 THEN CAST(token_cost AS DECIMAL(18, 9))
    END AS repriced_cost_usd,
    CASE
        WHEN NOT billable THEN NULL
        WHEN model IS NULL THEN 'no model'
        WHEN price_row IS NULL AND model NOT IN (SELECT model FROM model_rule) THEN 'no price for this model'
        WHEN price_row IS NULL THEN 'no price in force at that time'
        WHEN inconsistent THEN 'cache tokens exceed tokens_in or reasoning tokens exceed tokens_out'
        WHEN token_cost >= 999999999.9999999995
            THEN 'repriced cost ' || CAST(token_cost AS VARCHAR) || ' USD is above 999999999.999999999, the most an event''s cost_usd holds'
    END AS unpriced_reason
FROM token_costs
