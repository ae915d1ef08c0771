-- summary: Events with tokens that the price table cannot price, and why (no model, no price for the model, none in force at that time, inconsistent tokens).
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL, limit BIGINT = 1000000
-- returns: occurred_at TIMESTAMPTZ, stream_id VARCHAR, version BIGINT, event_id VARCHAR, event_type VARCHAR, model VARCHAR, tokens_in BIGINT, tokens_out BIGINT, recorded_cost_usd DECIMAL(18,9), reason VARCHAR
SELECT
    occurred_at,
    stream_id,
    version,
    event_id,
    event_type,
    model,
    tokens_in,
    tokens_out,
    cost_usd AS recorded_cost_usd,
    unpriced_reason AS reason
FROM priced_events
WHERE unpriced_reason IS NOT NULL
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
ORDER BY occurred_at, stream_id, version
LIMIT $limit
