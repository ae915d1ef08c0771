-- summary: Every event with cost_usd as the source recorded it (the view cost_events on the recorded basis).
-- params: none
-- returns: stream_id VARCHAR, stream_type VARCHAR, version BIGINT, position BIGINT, event_id VARCHAR, event_type VARCHAR, source_type VARCHAR, occurred_at TIMESTAMPTZ, recorded_at TIMESTAMPTZ, correlation_id VARCHAR, causation_id VARCHAR, traceparent VARCHAR, trace_id VARCHAR, span_id VARCHAR, model VARCHAR, tool_name VARCHAR, tokens_in BIGINT, tokens_out BIGINT, tokens_cache_read BIGINT, tokens_cache_write BIGINT, tokens_reasoning BIGINT, cost_usd DECIMAL(18,9), duration_ms DOUBLE, is_error BOOLEAN, error VARCHAR, data VARCHAR, metadata VARCHAR, agent VARCHAR, subject_id VARCHAR, tool_call_id VARCHAR, idempotency_key VARCHAR, source VARCHAR, payload_sha256 VARCHAR, prev_hash VARCHAR, hash VARCHAR, day DATE, unpriced BOOLEAN
SELECT
    *,
    cost_usd IS NULL AND coalesce(tokens_in, 0) + coalesce(tokens_out, 0) + coalesce(tokens_cache_read, 0)
        + coalesce(tokens_cache_write, 0) + coalesce(tokens_reasoning, 0) > 0 AS unpriced
FROM events
