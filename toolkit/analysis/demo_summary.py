"""The summary ``make demo`` prints: streams, events, tokens and cost by model."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from toolkit.engines import duckdb_engine
from toolkit.engines.queries import get_query
from toolkit.journal.store import Journal

_OVERVIEW = """
SELECT
    CAST(count(DISTINCT stream_id) AS BIGINT) AS streams,
    CAST(count(*) AS BIGINT) AS events,
    CAST(count(DISTINCT agent) AS BIGINT) AS agents,
    min(day) AS first_day,
    max(day) AS last_day,
    CAST(coalesce(sum(cost_usd), 0) AS DECIMAL(38, 9)) AS cost_usd  -- a sum: above DECIMAL(18, 9)'s 1e9 USD
FROM events
"""


def summarise_journal(journal: Journal) -> tuple[dict[str, Any], pa.Table]:
    session = duckdb_engine.connect(journal)
    try:
        overview = session.query(_OVERVIEW).to_pylist()[0]
        q = get_query("journal/summary_by_model")
        by_model = session.query(q.sql, q.bind({}))
    finally:
        session.close()
    return overview, by_model
