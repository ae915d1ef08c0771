"""Property: what a journal holds does not depend on how its events were cut into commits."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal
from toolkit.journal.prepare import canonical_json
from toolkit.journal.schema import CANONICAL_EVENT_TYPES

text = st.text(st.characters(codec="utf-8"), max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
events = st.lists(
    st.fixed_dictionaries(
        {
            "stream_id": st.sampled_from(["a", "b", "c-long-stream-name"]),
            "event_type": st.sampled_from(CANONICAL_EVENT_TYPES),
            "data": json_values,
        }
    ),
    min_size=1,
    max_size=20,
)


def _as_arrow(chunk: list[dict[str, Any]]) -> pa.Table:
    """The bulk path: the same events as an Arrow table with JSON text."""
    return pa.table(
        {
            "stream_id": [e["stream_id"] for e in chunk],
            "event_type": [e["event_type"] for e in chunk],
            "data": [canonical_json(e["data"]) for e in chunk],
        }
    )


def _expected(all_events: list[dict[str, Any]]) -> list[tuple[str, int, str, Any]]:
    """Per stream, the events in the caller's order, numbered from 1 — no chunking involved."""
    out, counts = [], dict[str, int]()
    for e in all_events:
        counts[e["stream_id"]] = counts.get(e["stream_id"], 0) + 1
        out.append((e["stream_id"], counts[e["stream_id"]], e["event_type"], e["data"]))
    return sorted(out, key=lambda r: (r[0], r[1]))


@given(all_events=events, data=st.data())
def test_content_is_independent_of_chunking(all_events: list[dict[str, Any]], data: st.DataObject) -> None:
    n = len(all_events)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=3), label="cuts")) if n > 1 else []
    bounds = [0, *cuts, n]
    chunks = [all_events[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    via_arrow = data.draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)), label="via_arrow")

    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.create(Path(tmp) / "j")
        for chunk, arrow in zip(chunks, via_arrow, strict=True):
            journal.append_batch(_as_arrow(chunk) if arrow else chunk)
        rows = journal.read_all(["stream_id", "version", "event_type", "data", "position"]).to_pylist()
        got = sorted(
            ((r["stream_id"], r["version"], r["event_type"], json.loads(r["data"])) for r in rows),
            key=lambda r: (r[0], r[1]),
        )
        assert got == _expected(all_events)
        assert [r["position"] for r in rows] == list(range(1, n + 1))
        assert journal.delta_version == len(chunks)
        report = verify_journal(journal)
        assert report.ok and report.events == n
