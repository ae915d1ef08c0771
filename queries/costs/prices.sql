-- summary: The price table in force in this session (USD per 1M tokens), row by row with its file, line and source.
-- params: none
-- returns: model VARCHAR, match VARCHAR, provider VARCHAR, effective_from TIMESTAMPTZ, effective_to TIMESTAMPTZ, input_usd_per_mtok DECIMAL(18,6), output_usd_per_mtok DECIMAL(18,6), cache_read_usd_per_mtok DECIMAL(18,6), cache_write_usd_per_mtok DECIMAL(18,6), reasoning_usd_per_mtok DECIMAL(18,6), prompt_tokens_above BIGINT, source VARCHAR, source_date DATE, file VARCHAR, line BIGINT
SELECT *
FROM prices
ORDER BY file, line
