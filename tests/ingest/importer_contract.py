"""The contract every importer meets; a new importer's test module subclasses ``ImporterContract``.

Subclasses set ``fmt`` and implement ``make_export(tmp_path) -> path`` (a small valid export with
``expected_events`` events) and ``make_damaged(tmp_path) -> path`` (an export with exactly
``expected_rejections`` bad records among valid ones, or None when the format cannot be damaged).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.ingest.base import RecordRejectedError
from toolkit.ingest.runner import choose_importer, import_paths, load_importer
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal
from toolkit.journal.side_tables import read_table


class ImporterContract:
    fmt: str = ""
    expected_events: int = 0
    expected_rejections: int = 0

    def make_export(self, tmp_path: Path) -> Path:
        raise NotImplementedError

    def make_damaged(self, tmp_path: Path) -> Path | None:
        return None

    def test_sniffs_its_own_format(self, tmp_path: Path) -> None:
        path = self.make_export(tmp_path)
        assert choose_importer(str(path)).name == self.fmt

    def test_does_not_sniff_an_unrelated_file(self, tmp_path: Path) -> None:
        other = tmp_path / "notes.txt"
        other.write_text("hello\n")
        assert load_importer(self.fmt).sniff(str(other)) is False

    def test_imports_idempotently_and_verifies(self, tmp_path: Path, journal: Journal) -> None:
        path = self.make_export(tmp_path)
        first = import_paths(journal, [str(path)], fmt=self.fmt)
        assert (first.imported, first.rejected) == (self.expected_events, 0)
        assert journal.read_all(["source"]).column("source").null_count == 0  # every event says where it came from
        again = import_paths(journal, [str(path)], fmt=self.fmt)
        assert (again.imported, again.already_present) == (0, self.expected_events)
        assert verify_journal(journal).ok

    def test_bad_records_fail_loudly_or_go_to_quarantine(self, tmp_path: Path, journal: Journal) -> None:
        path = self.make_damaged(tmp_path)
        if path is None:
            pytest.skip(f"{self.fmt}: no damaged fixture")
        before = journal.delta_version
        with pytest.raises(RecordRejectedError) as caught:
            import_paths(journal, [str(path)], fmt=self.fmt)
        assert caught.value.context["reason"] and caught.value.context["location"]
        assert journal.delta_version == before  # nothing written
        report = import_paths(journal, [str(path)], fmt=self.fmt, on_error="quarantine")
        assert report.rejected == self.expected_rejections == report.quarantined
        assert report.read >= report.imported + report.rejected
        q = read_table(journal, "quarantine")
        assert q.num_rows == self.expected_rejections and all(q.column("reason").to_pylist())
        again = import_paths(journal, [str(path)], fmt=self.fmt, on_error="quarantine")
        assert (again.imported, again.quarantined) == (0, 0)  # nothing twice
