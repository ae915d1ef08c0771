-- summary: Recorded vs repriced cost per day and model (a dry-run diff: nothing is rewritten), with the events the price table cannot price.
-- params: since TIMESTAMPTZ = NULL, until TIMESTAMPTZ = NULL
-- returns: day DATE, model VARCHAR, billable_events BIGINT, tokens_in BIGINT, tokens_out BIGINT, recorded_cost_usd DECIMAL(38,9), repriced_cost_usd DECIMAL(38,9), diff_usd DECIMAL(38,9), unrecorded_events BIGINT, unpriced_events BIGINT
-- billable: the event has tokens or a recorded cost; unrecorded: no recorded cost; unpriced: tokens but no price (counted as 0 in repriced_cost_usd).
-- diff_usd compares the events that have a price only: an event the table cannot price is no saving.
SELECT
    day,
    coalesce(model, '(none)') AS model,
    CAST(count(*) AS BIGINT) AS billable_events,
    CAST(coalesce(sum(tokens_in), 0) AS BIGINT) AS tokens_in,
    CAST(coalesce(sum(tokens_out), 0) AS BIGINT) AS tokens_out,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS recorded_cost_usd,
    CAST(coalesce(sum(repriced_cost_usd), 0) AS DECIMAL(38, 9)) AS repriced_cost_usd,
    CAST(coalesce(sum(coalesce(repriced_cost_usd, 0) - coalesce(cost_usd, 0)) FILTER (WHERE unpriced_reason IS NULL), 0)
        AS DECIMAL(38, 9)) AS diff_usd,
    CAST(count(*) FILTER (WHERE cost_usd IS NULL) AS BIGINT) AS unrecorded_events,
    CAST(count(*) FILTER (WHERE unpriced_reason IS NOT NULL) AS BIGINT) AS unpriced_events
FROM priced_events
WHERE (billable OR cost_usd IS NOT NULL)
  AND ($since IS NULL OR occurred_at >= $since)
  AND ($until IS NULL OR occurred_at < $until)
GROUP BY ALL
ORDER BY day, model
