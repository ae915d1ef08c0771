"""Stamp the active OpenTelemetry span's W3C traceparent on events appended without one.

``opentelemetry-api`` is optional (``pip install 'agent-journal-toolkit[otel]'``): without it,
or without a valid active span, events are left as they are. An event that already carries a
``traceparent`` or a ``trace_id`` keeps it. ``Journal.append`` and the dict path of
``Journal.append_batch`` stamp automatically (Arrow tables, i.e. imports, keep what the source
wrote); ``append_traced`` remains for explicit use.

>>> stamp_traceparent([{"event_type": "custom", "data": {}}], traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")[0]["traceparent"]
'00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.journal.store import AppendResult, Journal


def current_traceparent() -> str | None:
    """The traceparent of the active span, or None (no opentelemetry-api, no valid span)."""
    try:
        trace = importlib.import_module("opentelemetry.trace")
    except ModuleNotFoundError:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def stamp_traceparent(
    events: Iterable[Mapping[str, Any]], *, traceparent: str | None = None
) -> list[dict[str, Any]]:
    """The events, with ``traceparent`` set where absent (the active span's by default)."""
    tp = traceparent if traceparent is not None else current_traceparent()
    rows = [dict(e) for e in events]
    if tp is None:
        return rows
    for row in rows:
        if not row.get("traceparent") and not row.get("trace_id"):
            row["traceparent"] = tp
    return rows


def append_traced(journal: Journal, stream_id: str, events: Iterable[Mapping[str, Any]], **kwargs: Any) -> AppendResult:
    """``journal.append`` with the active span's traceparent stamped on events that lack one."""
    return journal.append(stream_id, stamp_traceparent(events), **kwargs)


__all__ = ["append_traced", "current_traceparent", "stamp_traceparent"]
