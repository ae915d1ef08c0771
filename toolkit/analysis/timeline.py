"""Cross-stream timelines: every event of one W3C trace (``trace_events``) or of one logical
request / user session (``correlation_events``), in time order, with a line of explanation.

Events from any stream and any source (an agent's own journal, an OTLP import, a chat
transcript) that carry the same ``trace_id`` — parsed from their W3C ``traceparent`` — or the
same ``correlation_id`` are stitched into one timeline.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
>>> _ = j.append("a", [{"event_type": "user_message", "data": "hi", "traceparent": tp, "correlation_id": "s1"}])
>>> _ = j.append("b", [{"event_type": "tool_called", "data": {}, "traceparent": tp}])
>>> trace_events(j, tp).get_column("stream_id").to_list()
['a', 'b']
>>> correlation_events(j, "s1").height
1
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl

from toolkit.analysis.causation import near_values
from toolkit.analysis.titles import describe_event
from toolkit.engines import duckdb_engine
from toolkit.engines.polars_engine import scan_events
from toolkit.errors import EventNotFoundError
from toolkit.journal.store import Journal

TIMELINE_COLUMNS: tuple[str, ...] = (
    "occurred_at",
    "stream_id",
    "stream_type",
    "version",
    "event_id",
    "event_type",
    "agent",
    "subject_id",
    "model",
    "tool_name",
    "is_error",
    "error",
    "correlation_id",
    "causation_id",
    "trace_id",
    "span_id",
    "source",
    "position",
    "data",
)
# not a catalog query: the catalog's fixture test has no trace id to bind; the values are bound.
# A stored trace_id may be in capitals, or (journals written before import checked it) say
# something else than the event's traceparent: the trace's events are those whose trace_id is
# the id in any case or whose traceparent carries it. Their positions are found first from the
# two columns alone (a scan of both: no statistics prune lower() or LIKE), then their rows.
_TRACE = (
    "SELECT occurred_at, stream_id, stream_type, version, event_id, event_type, agent, subject_id, model, "
    "tool_name, is_error, error, correlation_id, causation_id, trace_id, span_id, source, position, data "
    "FROM events WHERE position IN ("
    "SELECT position FROM events WHERE lower(trace_id) = $trace_id OR lower(traceparent) LIKE $in_traceparent"
    ") ORDER BY occurred_at, position"
)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_W3C_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def normalise_trace_id(value: str) -> str:
    """A trace id from a 32-hex id or a whole W3C traceparent (any case).

    >>> normalise_trace_id("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01")
    '0af7651916cd43dd8448eb211c80319c'
    """
    v = value.strip().lower()
    m = _TRACEPARENT.fullmatch(v)
    return m.group(1) if m else v


def _timeline(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.sort("occurred_at", "position")
    if frame.height == 0:
        return frame.with_columns(
            offset_ms=pl.lit(None, pl.Float64), title=pl.lit(None, pl.String), summary=pl.lit(None, pl.String)
        )
    start = frame.get_column("occurred_at").min()
    texts = [describe_event(r) for r in frame.to_dicts()]
    return frame.with_columns(
        offset_ms=((pl.col("occurred_at") - pl.lit(start)).dt.total_microseconds() / 1000.0),
        title=pl.Series([t for t, _ in texts], dtype=pl.String),
        summary=pl.Series([s for _, s in texts], dtype=pl.String),
    )


def trace_events(journal: Journal, trace: str) -> pl.DataFrame:
    """Every event of one trace across streams and sources, in time order (``trace`` may be a
    traceparent): its trace_id is ``trace``'s id in any case, or its traceparent carries it.
    Raises ``EventNotFoundError`` with near trace ids when there is none."""
    trace_id = normalise_trace_id(trace)
    # a traceparent is searched for a W3C trace id only (hex digits and dashes: no LIKE wildcards)
    in_traceparent = f"%-{trace_id}-%" if _W3C_TRACE_ID.fullmatch(trace_id) else None
    session = duckdb_engine.connect(journal)
    try:
        frame = pl.DataFrame(session.query(_TRACE, {"trace_id": trace_id, "in_traceparent": in_traceparent}))
    finally:
        session.close()
    if frame.height == 0:
        near = near_values(journal, "causation/near_trace_ids", {"trace_id": trace_id, "limit": 3}, "trace_id")
        raise EventNotFoundError.near(trace_id, near, what="trace")
    return _timeline(frame)


def correlation_events(
    journal: Journal,
    correlation_id: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> pl.DataFrame:
    """Every event of one logical request or user session, across its streams, in time order."""
    frame = (
        scan_events(journal, since=since, until=until)
        .filter(pl.col("correlation_id") == correlation_id)
        .select(list(TIMELINE_COLUMNS))
        .collect()
    )
    if frame.height == 0:
        near = near_values(
            journal, "causation/near_correlation_ids", {"correlation_id": correlation_id, "limit": 3}, "correlation_id"
        )
        raise EventNotFoundError.near(correlation_id, near, what="correlation")
    return _timeline(frame)


def streams_of(timeline: pl.DataFrame) -> pl.DataFrame:
    """One row per stream of a timeline: events, first/last time, agents, errors."""
    return (
        timeline.group_by("stream_id")
        .agg(
            pl.col("stream_type").first(),
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("occurred_at").min().alias("first_at"),
            pl.col("occurred_at").max().alias("last_at"),
            pl.col("agent").drop_nulls().unique().sort().str.join(", ").alias("agents"),
            pl.col("is_error").sum().cast(pl.Int64).alias("errors"),
        )
        .sort("first_at", "stream_id")
    )


__all__ = ["TIMELINE_COLUMNS", "correlation_events", "normalise_trace_id", "streams_of", "trace_events"]
