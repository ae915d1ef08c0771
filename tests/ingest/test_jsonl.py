from __future__ import annotations

import json
from pathlib import Path

from importer_contract import ImporterContract

from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

GOOD = [
    {"stream_id": "run-1", "event_type": "user_message", "occurred_at": "2026-11-01T09:00:00Z", "data": {"text": "hi"}},
    {"stream_id": "run-1", "event_type": "llm_response", "occurred_at": "2026-11-01T09:00:01Z", "model": "gpt-4o", "tokens_in": 10, "data": "ok"},
    {"stream_id": "run-2", "event_type": "tool_called", "occurred_at": "2026-11-01T09:00:02Z", "tool_name": "search", "data": [1, 2]},
]


class TestCanonicalJsonl(ImporterContract):
    fmt = "jsonl"
    expected_events = 3
    expected_rejections = 3

    def make_export(self, tmp_path: Path) -> Path:
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in GOOD))
        return path

    def make_damaged(self, tmp_path: Path) -> Path:
        path = tmp_path / "damaged.jsonl"
        lines = [json.dumps(e) for e in GOOD]
        lines.insert(1, '{"stream_id": "run-1", "event_type": "x"')  # cut off
        lines.insert(3, json.dumps({"stream_id": "run-1", "event_type": "x", "data": 1, "occurred_at": "2026-11-01T10:00:00"}))
        path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not utf-8\n")
        return path


def test_a_grown_export_imports_only_the_new_lines(tmp_path: Path, journal: Journal) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in GOOD[:2]))
    assert import_paths(journal, [str(path)]).imported == 2
    with path.open("a") as f:
        f.write(json.dumps(GOOD[2]) + "\n")
    report = import_paths(journal, [str(path)])
    assert (report.imported, report.already_present, report.read) == (1, 2, 3)


def test_location_names_file_and_line(tmp_path: Path, journal: Journal) -> None:
    path = TestCanonicalJsonl().make_damaged(tmp_path)
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert [r.location for r in report.rejections] == ["line 2", "line 4", "line 6"]
    assert all(r.source == str(path) for r in report.rejections)
