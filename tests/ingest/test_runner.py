"""``journal import`` over several paths: one file named twice (a symlink, ``a/../a/f``, a
relative and an absolute path) is read once, and its rejections are quarantined once, in one
import and across imports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import run_cli

from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal
from toolkit.journal.side_tables import read_table

GOOD = {"stream_id": "r", "event_type": "user_message", "occurred_at": "2026-11-01T09:00:00Z", "data": {"t": "hi"}}


def _export(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    return path


def _quarantine(journal_path: Path) -> list[dict[str, object]]:
    journal = Journal.open(journal_path)
    try:
        return read_table(journal, "quarantine").select(["source", "location", "record"]).to_pylist()
    finally:
        journal.close()


def test_a_file_named_twice_is_read_and_quarantined_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _export(tmp_path / "exports" / "run.jsonl")
    (tmp_path / "link.jsonl").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    j = str(tmp_path / "j")
    aliases = ["link.jsonl", "exports/../exports/run.jsonl", str(real), "exports/run.jsonl"]
    code, out, err = run_cli(capsys, "import", "-j", j, "--on-error", "quarantine", *aliases)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["read"], summary["imported"], summary["rejected"], summary["quarantined"]) == (2, 1, 1, 1)
    skipped = [n for n in summary["notes"] if "the same file as link.jsonl" in n]
    assert [n.split(":")[0] for n in skipped] == aliases[1:]
    assert "note: exports/run.jsonl: not read again" in err
    rows = _quarantine(tmp_path / "j")
    assert rows == [{"source": str(real), "location": "line 2", "record": "{not json"}]

    # a rerun through another name (and from elsewhere) finds its row already there
    monkeypatch.chdir(real.parent)
    code, out, err = run_cli(capsys, "import", "-j", j, "--on-error", "quarantine", "../link.jsonl")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["imported"], summary["already_present"], summary["quarantined"]) == (0, 1, 0)
    assert _quarantine(tmp_path / "j") == rows


def test_a_symlink_inside_an_imported_directory_to_a_file_there_is_read_once(tmp_path: Path) -> None:
    real = _export(tmp_path / "imp" / "a.jsonl")
    (tmp_path / "imp" / "b.jsonl").symlink_to(real)
    journal = Journal.create(tmp_path / "j")
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="jsonl", on_error="quarantine")
    assert (report.read, report.imported, report.rejected, report.quarantined) == (2, 1, 1, 1)
    assert any(n.startswith(f"{tmp_path / 'imp' / 'b.jsonl'}: not read: the same file as") for n in report.notes)
    rows = read_table(journal, "quarantine").select(["source", "location"]).to_pylist()
    assert rows == [{"source": str(real), "location": "line 2"}]


def test_a_directory_named_through_a_symlink_records_its_real_path(tmp_path: Path) -> None:
    real = _export(tmp_path / "imp" / "a.jsonl")
    os.symlink(tmp_path / "imp", tmp_path / "alias")
    journal = Journal.create(tmp_path / "j")
    import_paths(journal, [str(tmp_path / "alias")], fmt="jsonl", on_error="quarantine")
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="jsonl", on_error="quarantine")
    assert (report.rejected, report.quarantined) == (1, 0)
    rows = read_table(journal, "quarantine").select(["source"]).to_pylist()
    assert rows == [{"source": str(real)}]


def test_import_help_names_every_format() -> None:
    """journal import --help showed --from TEXT and no format: the README listed them, the help did not."""
    from click.testing import CliRunner

    from toolkit.cli.main import cli
    from toolkit.ingest.runner import REGISTRY

    text = " ".join(CliRunner().invoke(cli, ["import", "--help"]).output.split())
    assert "--from FORMAT" in text
    assert all(name in text for name in ["auto", *REGISTRY]), text
