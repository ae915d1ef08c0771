"""Evennia AI assistant archives: the real samples, the pitfalls of spec section 3, the same ids as
the aggregate's database, and the export that reads back to the same events."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from importer_contract import ImporterContract

from toolkit.errors import ToolkitError
from toolkit.ingest.base import ImportOptions
from toolkit.ingest.evennia_archive import EvenniaArchiveImporter, export_evennia_archive
from toolkit.ingest.runner import choose_importer, import_paths
from toolkit.journal import Journal

REPO = Path(__file__).resolve().parents[2]
ARCHIVES = REPO / "data" / "samples" / "evennia-archive"
DATABASE = REPO / "data" / "samples" / "eventsourcing" / "assistants.sqlite"
GUIDE_FILE = ARCHIVES / "guide-npc_20261121T234805Z.json"
SCOUT_FILE = ARCHIVES / "scout-helper_20261121T234805Z.json"
GUIDE = "bc7329a7-7f1c-5516-979c-f6e9e622dea3"
SCOUT = "f22f76ef-68fc-586a-9485-560b2005fa1c"
COLUMNS = [
    "stream_id", "stream_type", "version", "event_id", "event_type", "occurred_at", "data", "metadata",
    "agent", "tool_name", "tokens_in", "tokens_out", "duration_ms", "is_error", "error",
]  # fmt: skip


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def rows(journal: Journal, columns: list[str] = COLUMNS) -> list[dict[str, Any]]:
    return journal.read_all(columns).to_pylist()  # type: ignore[no-any-return]


class TestEvenniaArchive(ImporterContract):
    fmt = "evennia-archive"
    expected_events = 27
    expected_rejections = 2

    def make_export(self, tmp_path: Path) -> Path:
        out = tmp_path / "archives"
        out.mkdir()
        for f in (GUIDE_FILE, SCOUT_FILE):
            shutil.copyfile(f, out / f.name)
        return out

    def make_damaged(self, tmp_path: Path) -> Path:
        out = tmp_path / "damaged"
        out.mkdir()
        shutil.copyfile(GUIDE_FILE, out / GUIDE_FILE.name)
        doc = load(SCOUT_FILE)
        del doc["events"][-1]["timestamp"]  # the last event: nothing follows it
        write(out / SCOUT_FILE.name, doc)
        (out / "cut-off_20261121T234805Z.json").write_bytes(GUIDE_FILE.read_bytes()[:700])  # a truncated archive
        return out


def test_an_archive_of_an_aggregate_imported_from_its_database_adds_nothing(journal: Journal) -> None:
    from_db = import_paths(journal, [str(DATABASE)], fmt="eventsourcing")
    assert from_db.imported == 49
    report = import_paths(journal, [str(ARCHIVES)], fmt="evennia-archive")
    assert (report.imported, report.already_present, report.rejected) == (0, 27, 0)


def test_the_database_after_its_archives_adds_only_the_rest(journal: Journal) -> None:
    first = import_paths(journal, [str(GUIDE_FILE), str(SCOUT_FILE)])
    assert first.formats == {str(GUIDE_FILE): "evennia-archive", str(SCOUT_FILE): "evennia-archive"}  # sniffed
    report = import_paths(journal, [str(DATABASE)], fmt="eventsourcing")
    assert (report.imported, report.already_present) == (22, 27)  # builder-bot was never archived


def test_archive_events_equal_the_database_events(tmp_path: Path) -> None:
    a, b = Journal.create(tmp_path / "a"), Journal.create(tmp_path / "b")
    import_paths(a, [str(ARCHIVES)])
    import_paths(b, [str(DATABASE)], fmt="eventsourcing")
    from_db = {r["event_id"]: r for r in rows(b)}
    for r in rows(a):
        assert r == from_db[r["event_id"]]
    a.close()
    b.close()


def test_mapping(journal: Journal) -> None:
    import_paths(journal, [str(SCOUT_FILE)])
    got = rows(journal, [*COLUMNS, "source_type", "source"])
    doc = load(SCOUT_FILE)
    assert [r["version"] for r in got] == list(range(1, 13))  # the archive's order
    assert {r["stream_id"] for r in got} == {doc["aggregate_id"]}
    assert {r["agent"] for r in got} == {"scout-helper"}
    assert {r["stream_type"] for r in got} == {"AssistantAggregate"}
    assert [r["source_type"] for r in got] == [e["topic"] for e in doc["events"]]
    assert [r["occurred_at"] for r in got] == [dt.datetime.fromisoformat(e["timestamp"]) for e in doc["events"]]
    tick = got[3]
    assert (tick["event_type"], tick["tokens_in"], tick["tokens_out"], tick["duration_ms"]) == (
        "TickCompleted", 1320, 45, 980.0
    )  # fmt: skip
    tool = got[2]
    assert (tool["event_type"], tool["tool_name"], tool["duration_ms"], tool["is_error"]) == (
        "tool_result",
        "look",
        6.0,
        False,
    )
    assert got[0]["source"] == f"evennia-archive:{SCOUT_FILE}#events[0]"


def test_failed_tools_are_errors(journal: Journal) -> None:
    import_paths(journal, [str(GUIDE_FILE)])
    failed = [r for r in rows(journal) if r["event_type"] == "tool_result" and r["is_error"]]
    assert failed and all(r["error"] and json.loads(r["data"])["success"] is False for r in failed)


def test_times_written_by_str_get_their_iso_spelling_back(journal: Journal) -> None:
    raw = next(e for e in load(GUIDE_FILE)["events"] if e["topic"] == "ReflectionRecorded")
    assert raw["data"]["context"]["window_start"] == "2026-11-21 00:00:00+00:00"
    import_paths(journal, [str(GUIDE_FILE)])
    data = [json.loads(r["data"]) for r in rows(journal) if r["event_type"] == "ReflectionRecorded"]
    assert data[0]["context"]["window_start"] == "2026-11-21T00:00:00+00:00"  # as decoded from the database


def test_an_event_count_that_disagrees_is_reported(tmp_path: Path, journal: Journal) -> None:
    doc = load(SCOUT_FILE)
    doc["event_count"] = 13
    path = write(tmp_path / "scout.json", doc)
    report = import_paths(journal, [str(path)])
    assert report.imported == 12
    assert any("event_count is 13 but events holds 12" in n for n in report.notes)
    assert not any("event_count" in n for n in import_paths(journal, [str(SCOUT_FILE)]).notes)


def test_full_topics_and_hex_ids_are_the_same_events(tmp_path: Path, journal: Journal) -> None:
    """Pitfalls 3.4.1-2: an exporter that writes 32-hex ids and full library topics."""
    import_paths(journal, [str(SCOUT_FILE)])
    doc = load(SCOUT_FILE)
    doc["aggregate_id"] = doc["aggregate_id"].replace("-", "")
    for e in doc["events"]:
        e["topic"] = f"evennia.contrib.base_systems.ai.eventsourcing.domain:AssistantAggregate.{e['topic']}"
    report = import_paths(journal, [str(write(tmp_path / "full.json", doc))])
    assert (report.imported, report.already_present) == (0, 12)


def test_optional_fields_and_unknown_topics_pass_through(tmp_path: Path, journal: Journal) -> None:
    doc = {
        "assistant_key": "old-bot",
        "aggregate_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "exported_at": "2026-11-21T23:48:05+00:00",
        "event_count": 3,
        "events": [
            {"topic": "AssistantCreated", "timestamp": "2026-11-21T23:48:00+00:00", "data": {"assistant_key": "old-bot"}},
            {"topic": "ToolExecuted", "timestamp": "2026-11-21T23:48:01+00:00", "data": {"tool_name": "look", "success": True}},
            {"topic": "MoodChanged", "timestamp": "2026-11-21T23:48:02+00:00", "data": {"old_value": 5, "new_value": "x"}},
        ],
    }  # fmt: skip
    import_paths(journal, [str(write(tmp_path / "old.json", doc))])
    got = rows(journal)
    assert [r["event_type"] for r in got] == ["AssistantCreated", "tool_result", "MoodChanged"]
    assert got[1]["duration_ms"] is None and got[1]["tokens_in"] is None and got[1]["is_error"] is False
    assert got[0]["stream_type"] == "eventsourcing"  # no originator_topic: the aggregate class is unknown


def test_a_bad_entry_keeps_versions_equal_to_the_archive(tmp_path: Path, journal: Journal) -> None:
    doc = load(SCOUT_FILE)
    doc["events"][4] = "not an event"
    path = write(tmp_path / "scout.json", doc)
    report = import_paths(journal, [str(path)], on_error="quarantine")
    assert (report.imported, report.rejected) == (4, 8)
    assert report.rejections[0].location == "events[4] (version 5)"
    assert journal.stream_version(SCOUT) == 4


def test_envelope_keys_copied_into_data_are_dropped(tmp_path: Path, journal: Journal) -> None:
    """An exporter that dumps vars(event) whole: the same events as the sample."""
    import_paths(journal, [str(SCOUT_FILE)])
    doc = load(SCOUT_FILE)
    for i, e in enumerate(doc["events"]):
        e["data"] = {"originator_id": doc["aggregate_id"], "originator_version": i + 1, **e["data"]}
        e["data"]["timestamp"] = e.pop("timestamp")
    report = import_paths(journal, [str(write(tmp_path / "vars.json", doc))])
    assert (report.imported, report.already_present, report.rejected) == (0, 12, 0)


def test_not_an_archive(tmp_path: Path) -> None:
    other = write(tmp_path / "other.json", {"hello": "world"})
    assert not EvenniaArchiveImporter().sniff(str(other))
    batch = next(EvenniaArchiveImporter().batches(str(other), ImportOptions()))
    assert batch.rejections[0].location == "document" and "aggregate_id" in batch.rejections[0].reason


# ---------------------------------------------------------------------- export


def test_export_round_trip(tmp_path: Path, journal: Journal) -> None:
    import_paths(journal, [str(DATABASE)], fmt="eventsourcing")
    streams = sorted(set(journal.read_all(["stream_id"]).column("stream_id").to_pylist()))
    at = dt.datetime(2026, 11, 22, 8, 30, tzinfo=dt.UTC)
    paths = export_evennia_archive(journal, streams, tmp_path / "out", exported_at=at)
    assert sorted(p.name for p in paths) == [
        "builder-bot_20261122T083000Z.json", "guide-npc_20261122T083000Z.json", "scout-helper_20261122T083000Z.json"
    ]  # fmt: skip
    for p in paths:
        doc = load(p)
        assert doc["event_count"] == len(doc["events"]) and doc["exported_at"] == "2026-11-22T08:30:00+00:00"
        assert list(doc) == ["assistant_key", "aggregate_id", "exported_at", "event_count", "events"]
    back = Journal.create(tmp_path / "back")
    report = import_paths(back, [str(tmp_path / "out")])
    assert (report.formats, report.imported, report.rejected) == ({str(tmp_path / "out"): "evennia-archive"}, 49, 0)
    assert sorted(rows(back), key=lambda r: r["event_id"]) == sorted(rows(journal), key=lambda r: r["event_id"])
    back.close()
    again = import_paths(journal, [str(tmp_path / "out")])
    assert (again.imported, again.already_present) == (0, 49)


def test_export_of_an_archived_aggregate_matches_the_archive(tmp_path: Path, journal: Journal) -> None:
    import_paths(journal, [str(GUIDE_FILE)])
    (path,) = export_evennia_archive(journal, [GUIDE], tmp_path)
    ours, theirs = load(path), load(GUIDE_FILE)
    assert (ours["assistant_key"], ours["aggregate_id"], ours["event_count"]) == (
        theirs["assistant_key"], theirs["aggregate_id"], theirs["event_count"]
    )  # fmt: skip
    assert [(e["topic"], e["timestamp"]) for e in ours["events"]] == [
        (e["topic"], e["timestamp"]) for e in theirs["events"]
    ]


def test_export_of_an_unknown_stream_is_an_error(tmp_path: Path, journal: Journal) -> None:
    with pytest.raises(ToolkitError, match="not in the journal"):
        export_evennia_archive(journal, ["no-such-stream"], tmp_path)


def test_export_of_a_non_eventsourcing_stream_reads_back(tmp_path: Path, journal: Journal) -> None:
    journal.append(
        "run-1",
        [
            {"event_type": "user_message", "occurred_at": "2026-11-01T09:00:00Z", "agent": "flight-booker", "data": {"text": "hi"}},
            {"event_type": "tool_result", "occurred_at": "2026-11-01T09:00:01Z", "data": {"tool_name": "search", "success": False, "error": "boom"}},
        ],
    )  # fmt: skip
    (path,) = export_evennia_archive(journal, ["run-1"], tmp_path)
    assert path.name.startswith("flight-booker_")
    back = Journal.create(tmp_path / "back")
    import_paths(back, [str(path)])
    got = rows(back)
    assert [(r["stream_id"], r["version"], r["event_type"], r["agent"]) for r in got] == [
        ("run-1", 1, "user_message", "flight-booker"),
        ("run-1", 2, "tool_result", "flight-booker"),
    ]
    assert (got[1]["tool_name"], got[1]["is_error"], got[1]["error"]) == ("search", True, "boom")
    back.close()


def test_sniffing_a_directory_of_archives() -> None:
    assert choose_importer(str(ARCHIVES)).name == "evennia-archive"


def test_a_directory_does_not_follow_symlinks_out_of_it(tmp_path: Path, journal: Journal) -> None:
    (tmp_path / "imp").mkdir()
    shutil.copyfile(GUIDE_FILE, tmp_path / "imp" / GUIDE_FILE.name)
    (tmp_path / "imp" / SCOUT_FILE.name).symlink_to(SCOUT_FILE)  # outside the directory imported
    report = import_paths(journal, [str(tmp_path / "imp")], fmt="evennia-archive")
    assert {r["stream_id"] for r in rows(journal, ["stream_id"])} == {GUIDE}
    assert any(n.startswith(f"{tmp_path / 'imp' / SCOUT_FILE.name}: not read: a symlink") for n in report.notes)


def test_files_of_a_directory_that_are_not_json_are_named_in_the_notes(tmp_path: Path, journal: Journal) -> None:
    """The real archives beside a real pyeventsourcing database and a CSV (copies of
    ``data/samples``): the archives are imported, the other files are named as not read."""
    root = tmp_path / "exports"
    root.mkdir()
    shutil.copy(GUIDE_FILE, root)
    shutil.copy(SCOUT_FILE, root)
    samples = ARCHIVES.parent
    shutil.copy(samples / "eventsourcing" / "assistants.sqlite", root)
    shutil.copy(samples / "generic" / "llm-calls.csv", root)
    report = import_paths(journal, [str(root)], fmt="evennia-archive")
    assert (report.read, report.imported) == (27, 27)
    for name in ("assistants.sqlite", "llm-calls.csv"):
        assert any(n.startswith(f"{root / name}: not read") for n in report.notes), report.notes


def test_a_subdirectory_of_archives_is_named_in_the_notes(tmp_path: Path, journal: Journal) -> None:
    """Archives are read from the directory itself; a subdirectory holding a real archive (a copy
    of ``data/samples``) is named as not read instead of being passed over in silence."""
    root = tmp_path / "exports"
    (root / "older").mkdir(parents=True)
    shutil.copy(GUIDE_FILE, root)
    shutil.copy(SCOUT_FILE, root / "older")
    report = import_paths(journal, [str(root)], fmt="evennia-archive")
    assert (report.read, report.imported) == (15, 15)
    assert any(n.startswith(f"{root / 'older'}: not read") for n in report.notes), report.notes
