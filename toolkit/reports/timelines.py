"""Cross-stream timelines (trace, correlation) for the terminal or a file."""

from __future__ import annotations

import polars as pl

from toolkit.reports.tables import write_table

_SHOWN = ["offset_ms", "occurred_at", "stream_id", "version", "event_type", "agent", "title", "summary"]


def write_timeline(timeline: pl.DataFrame, fmt: str, output: str | None, *, title: str) -> None:
    """table: the readable columns; csv/json/parquet: every column but the raw payload."""
    if fmt == "table" and not output:
        frame = timeline.select(_SHOWN).with_columns(pl.col("summary").str.slice(0, 80))
    else:
        frame = timeline.drop("data")
    write_table(frame.to_arrow(), fmt, output, title=title)
