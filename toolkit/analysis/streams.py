"""Stream listings and one-stream summaries (catalog queries over the ``events`` view)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa

from toolkit.analysis.replay import unknown_stream
from toolkit.engines import duckdb_engine
from toolkit.engines.queries import get_query
from toolkit.journal.store import Journal


def list_streams(journal: Journal, *, stream_type: str | None = None, limit: int = 1_000_000) -> pa.Table:
    q = get_query("journal/streams")
    session = duckdb_engine.connect(journal)
    try:
        return session.query(q.sql, q.bind({"stream_type": stream_type, "limit": limit}))
    finally:
        session.close()


def stream_stats(journal: Journal, stream_id: str) -> tuple[dict[str, Any], pa.Table]:
    """Head, span, totals of one stream, and its events by type."""
    head = journal.read_stream(stream_id, ["version", "occurred_at", "hash", "stream_type", "agent"])
    if head.num_rows == 0:
        raise unknown_stream(journal, stream_id)
    q = get_query("journal/stream_stats")
    session = duckdb_engine.connect(journal)
    try:
        by_type = session.query(q.sql, q.bind({"stream_id": stream_id}))
    finally:
        session.close()
    rows = head.to_pylist()
    totals = by_type.to_pylist()
    summary = {
        "stream_id": stream_id,
        "stream_type": rows[-1]["stream_type"],
        # the latest agent named: a stream's later events often leave it out (journal streams shows it too)
        "agent": next((r["agent"] for r in reversed(rows) if r["agent"] is not None), None),
        "events": len(rows),
        "version": rows[-1]["version"],
        "first_at": min(r["occurred_at"] for r in rows).isoformat(),
        "last_at": max(r["occurred_at"] for r in rows).isoformat(),
        "tokens_in": sum(r["tokens_in"] for r in totals),
        "tokens_out": sum(r["tokens_out"] for r in totals),
        "cost_usd": format(sum((r["cost_usd"] for r in totals), Decimal(0)), "f"),  # not 0E-9
        "errors": sum(r["errors"] for r in totals),
        "head_hash": rows[-1]["hash"],
    }
    return summary, by_type
