"""Events the journal refuses because of what it holds (the same id with different content, a
stream of another type): located at their source line, quarantinable; dry runs count the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolkit.ingest.base import RecordRejectedError
from toolkit.ingest.runner import import_paths
from toolkit.journal import Journal

SAMPLES = Path(__file__).parents[2] / "data" / "samples"
T = "2026-11-01T09:00:0{}Z"


def lines(path: Path, *events: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def ev(i: int, eid: str, text: str, stream: str = "r") -> dict[str, object]:
    return {"stream_id": stream, "event_id": eid, "event_type": "user_message", "data": {"t": text}, "occurred_at": T.format(i)}


def test_the_same_id_twice_in_one_import_names_both_lines(tmp_path: Path) -> None:
    src = lines(tmp_path / "in.jsonl", ev(1, "a", "x"), ev(2, "b", "y"), ev(3, "a", "changed"), ev(4, "c", "z"))
    journal = Journal.create(tmp_path / "j")
    with pytest.raises(RecordRejectedError) as caught:
        import_paths(journal, [str(src)])
    msg = str(caught.value)
    assert f"{src}: line 3: event_id 'a' also names the event at {src} line 1" in msg
    assert journal.read_all(["event_id"]).num_rows == 0
    report = import_paths(journal, [str(src)], on_error="quarantine")
    assert (report.imported, report.rejected, report.quarantined) == (3, 1, 1)
    (bad,) = report.rejections
    assert (bad.source, bad.location) == (str(src), "line 3") and "changed" in (bad.record or "")


def test_an_id_already_in_the_journal_with_other_content_is_located_and_quarantinable(tmp_path: Path) -> None:
    name = "scout-helper_20261121T234805Z.json"
    journal = Journal.create(tmp_path / "j")
    first = import_paths(journal, [str(SAMPLES / "evennia-archive" / name)])
    changed = tmp_path / name
    doc = json.loads((SAMPLES / "evennia-archive" / name).read_text())
    doc["events"][1]["data"]["description"] = "edited after the fact"
    changed.write_text(json.dumps(doc))
    with pytest.raises(RecordRejectedError) as caught:
        import_paths(journal, [str(changed)])
    assert str(changed) in str(caught.value) and "already in the journal with different content" in str(caught.value)
    assert "event 1:" not in str(caught.value)  # not an index into the import's batch
    report = import_paths(journal, [str(changed)], on_error="quarantine")
    assert report.rejected >= 1 and report.quarantined == report.rejected
    assert all(str(changed) in r.source for r in report.rejections)
    assert report.imported == 0 and report.already_present == first.imported - report.rejected
    assert journal.read_all(["event_id"]).num_rows == first.imported


def test_a_dry_run_counts_and_refuses_what_the_real_run_would(tmp_path: Path) -> None:
    data = tmp_path / "sample-data"
    shutil.copytree(SAMPLES / "agentstore" / "sample-data", data)
    journal = Journal.create(tmp_path / "j")
    planned = import_paths(journal, [str(data)], dry_run=True)
    real = import_paths(journal, [str(data)])
    assert (planned.imported, planned.already_present) == (real.imported, real.already_present) == (real.imported, 0)
    again = import_paths(journal, [str(data)], dry_run=True)
    assert (again.imported, again.already_present) == (0, real.imported)
    held = journal.read_all(["stream_id", "event_id"]).slice(0, 1).to_pylist()[0]
    clash = lines(tmp_path / "clash.jsonl", ev(1, held["event_id"], "other", stream=held["stream_id"]))
    with pytest.raises(RecordRejectedError, match="already in the journal with different content"):
        import_paths(journal, [str(clash)], dry_run=True)


def test_a_rerun_from_another_working_directory_adds_no_quarantine_or_snapshot_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of the side tables are told apart by their source: the path as typed made a rerun from
    elsewhere (``t3``, ``as/t3``, ``/tmp/.../as/t3``) add every rejection and snapshot again."""
    src = tmp_path / "as"
    (src / "t3").mkdir(parents=True)
    lines(src / "t3" / "in.jsonl", ev(1, "a", "x"), {"stream_id": "r", "event_type": ""}, ev(2, "b", "y"))
    db = src / "assistants.sqlite"
    shutil.copy(SAMPLES / "eventsourcing" / "assistants.sqlite", db)
    journal = Journal.create(tmp_path / "j")
    counts = []
    for cwd, rel in ((src, "t3"), (tmp_path, "as/t3"), (tmp_path / "j", str(src / "t3"))):
        monkeypatch.chdir(cwd)
        r = import_paths(journal, [rel], fmt="jsonl", on_error="quarantine")
        s = import_paths(journal, [str(Path(rel).parent / "assistants.sqlite")], on_error="quarantine")
        counts.append((r.quarantined, s.snapshots))
    first, *reruns = counts
    assert first[0] == 1 and first[1] > 0 and reruns == [(0, 0), (0, 0)]


def test_a_refused_event_without_a_source_line_is_located_in_its_record_and_quarantined_once(tmp_path: Path) -> None:
    """Sources that are not ``fmt:file:line`` (an archive's events[i], a chat message, a stored
    event's rowid) were located as ``record <its place in the whole import>``: wrong, and a rerun
    with one more file before it quarantined the same refusal again under another number."""
    name = "scout-helper_20261121T234805Z.json"
    journal = Journal.create(tmp_path / "j")
    import_paths(journal, [str(SAMPLES / "evennia-archive" / name)])
    src = tmp_path / "in"
    src.mkdir()
    doc = json.loads((SAMPLES / "evennia-archive" / name).read_text())
    doc["events"][2]["data"]["description"] = "edited after the fact"
    (src / name).write_text(json.dumps(doc))
    with pytest.raises(RecordRejectedError) as caught:
        import_paths(journal, [str(src)])
    assert f"{src / name}: events[2]: event_id" in str(caught.value)
    first = import_paths(journal, [str(src)], on_error="quarantine")
    assert [(r.source, r.location) for r in first.rejections] == [(str(src / name), "events[2]")]
    shutil.copy(SAMPLES / "evennia-archive" / "guide-npc_20261121T234805Z.json", src / "a-guide.json")
    again = import_paths(journal, [str(src)], on_error="quarantine")
    assert (again.rejected, again.quarantined) == (1, 0)
