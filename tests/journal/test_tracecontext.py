"""Appending inside an active OpenTelemetry span stamps its traceparent (opentelemetry-api)."""

from __future__ import annotations

import pytest

from toolkit.journal import Journal
from toolkit.journal.tracecontext import append_traced, current_traceparent, stamp_traceparent

trace = pytest.importorskip("opentelemetry.trace", reason="opentelemetry-api is the optional [otel] extra")

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


def _span() -> object:
    ctx = trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=trace.TraceFlags(1))
    return trace.NonRecordingSpan(ctx)


def test_no_active_span_no_stamp() -> None:
    assert current_traceparent() is None
    assert stamp_traceparent([{"event_type": "custom"}]) == [{"event_type": "custom"}]


def test_active_span_is_stamped_and_parsed_by_the_journal(journal: Journal) -> None:
    with trace.use_span(_span()):
        tp = current_traceparent()
        rows = stamp_traceparent(
            [{"event_type": "custom", "data": 1}, {"event_type": "custom", "data": 2, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-00"}]
        )
    assert tp == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert rows[0]["traceparent"] == tp and rows[1]["traceparent"].startswith("00-1111")
    journal.append("r", rows)
    stored = journal.read_stream("r", ["trace_id", "span_id"]).to_pylist()
    assert stored[0] == {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}


def test_append_traced(journal: Journal) -> None:
    with trace.use_span(_span()):
        append_traced(journal, "r", [{"event_type": "custom", "data": 1}], expected_version=0)
    append_traced(journal, "r", [{"event_type": "custom", "data": 2}])  # no span: nothing stamped
    assert journal.read_stream("r", ["trace_id"]).column("trace_id").to_pylist() == ["0af7651916cd43dd8448eb211c80319c", None]


def test_journal_append_stamps_the_active_span_without_being_asked(journal: Journal) -> None:
    with trace.use_span(_span()):
        journal.append("r", [{"event_type": "custom", "data": 1}])
        journal.append_batch([{"stream_id": "s", "event_type": "custom", "data": 2}])
        journal.append("t", [{"event_type": "custom", "data": 3, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}])
    journal.append("r", [{"event_type": "custom", "data": 4}])  # outside the span: nothing stamped
    ids = {s: journal.read_stream(s, ["trace_id"]).column("trace_id").to_pylist() for s in ("r", "s", "t")}
    assert ids == {"r": ["0af7651916cd43dd8448eb211c80319c", None], "s": ["0af7651916cd43dd8448eb211c80319c"], "t": ["1" * 32]}
