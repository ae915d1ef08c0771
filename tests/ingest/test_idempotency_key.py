"""journal import --idempotency-key FIELD fills idempotency_key from a column or a payload path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.analysis.regrade import regrade
from toolkit.ingest.base import ImportFormatError, ImportOptions
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

EVENTS = [
    {"stream_id": "order-7", "event_type": "tool_called", "occurred_at": "2026-03-09T08:00:00Z",
     "tool_name": "charge_card", "data": {"dispatch_id": "pay-7", "amount": 40}},
    {"stream_id": "order-7-again", "event_type": "tool_called", "occurred_at": "2026-03-09T08:05:00Z",
     "tool_name": "charge_card", "data": {"dispatch_id": "pay-7", "amount": 40}},
    {"stream_id": "order-8", "event_type": "tool_called", "occurred_at": "2026-03-09T09:00:00Z",
     "tool_name": "charge_card", "idempotency_key": "given-8", "data": {"dispatch_id": "pay-8"}},
    {"stream_id": "order-8", "event_type": "user_message", "occurred_at": "2026-03-09T09:01:00Z", "data": {"text": "hi"}},
]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return path


def test_keys_come_from_the_payload_path_and_given_keys_win(journal: Journal, source: Path) -> None:
    import_paths(journal, [str(source)], fmt="jsonl", options=ImportOptions(idempotency_field="data.dispatch_id"))
    keys = {(r["stream_id"], r["event_type"]): r["idempotency_key"] for r in journal.read_all().to_pylist()}
    assert keys == {("order-7", "tool_called"): "pay-7", ("order-7-again", "tool_called"): "pay-7",
                    ("order-8", "tool_called"): "given-8", ("order-8", "user_message"): None}
    found = regrade(journal, ["exactly_once"], write=False).findings.to_pylist()
    assert [(f["stream_id"], f["first_failing_version"]) for f in found] == [("order-7-again", 1)]


def test_without_the_option_nothing_is_filled(journal: Journal, source: Path) -> None:
    import_paths(journal, [str(source)], fmt="jsonl")
    assert [r["idempotency_key"] for r in journal.read_all().to_pylist() if r["idempotency_key"]] == ["given-8"]


def test_a_canonical_column_can_be_the_source(journal: Journal, source: Path) -> None:
    import_paths(journal, [str(source)], fmt="jsonl", options=ImportOptions(idempotency_field="stream_id"))
    assert {r["idempotency_key"] for r in journal.read_all().to_pylist()} == {"order-7", "order-7-again", "given-8", "order-8"}


def test_a_field_that_is_neither_column_nor_path_is_refused(journal: Journal, source: Path) -> None:
    with pytest.raises(ImportFormatError, match=r"not a canonical column nor a data\./metadata\. path") as e:
        import_paths(journal, [str(source)], fmt="jsonl", options=ImportOptions(idempotency_field="dispatch_id"))
    assert "Hint: e.g. --idempotency-key data.dispatch_id" in str(e.value)
    assert journal.read_all().num_rows == 0
