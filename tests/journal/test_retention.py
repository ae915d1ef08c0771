"""Retention: refusal inside the minimum, archive first, anchored removal, crash safety."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from helpers import build_tool_failure_loop, drop_row, ev, locate, rewrite_parquet, set_cell, spawn

from toolkit.errors import RetentionError
from toolkit.journal import Journal, rewrite
from toolkit.journal.integrity import verify_journal
from toolkit.journal.retention import Leftovers, file_sha256, purge_before
from toolkit.journal.side_tables import SIDE_TABLES, read_table

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 1, tzinfo=UTC)
OLD = dt.datetime(2025, 1, 10, 12, tzinfo=UTC)
BEFORE = dt.datetime(2025, 3, 1, tzinfo=UTC)


def _at(days: int) -> dt.datetime:
    return OLD + dt.timedelta(days=days)


@pytest.fixture
def aged(journal: Journal) -> Journal:
    """old: entirely before the cut; span: 3 events before, 3 after; new: after; skew: an old
    event that follows a young one (must stay)."""
    journal.append("old", [ev("custom", {"n": i}, occurred_at=_at(i)) for i in range(3)])
    journal.append("span", [ev("custom", {"n": i}, occurred_at=_at(i * 20)) for i in range(6)])
    journal.append("new", [ev("custom", {"n": 1}, occurred_at=_at(200))])
    journal.append(
        "skew",
        [ev("custom", occurred_at=_at(1)), ev("custom", occurred_at=_at(100)), ev("custom", occurred_at=_at(2))],
    )
    return journal


def test_refuses_events_younger_than_the_minimum(aged: Journal) -> None:
    with pytest.raises(RetentionError, match="minimum retention of 183 days") as e:
        purge_before(aged, NOW - dt.timedelta(days=30), now=NOW)
    assert "Hint:" in str(e.value) and "--force" in str(e.value)
    assert read_table(aged, "purges").num_rows == 0
    assert Journal.open(aged.path).read_all(["event_id"]).num_rows == 13


def test_purge_archives_records_and_still_verifies(aged: Journal) -> None:
    before_rows = {(r["stream_id"], r["version"]): r for r in aged.read_all().to_pylist()}
    result = purge_before(aged, BEFORE, now=NOW)
    # span: versions 1-3 (days 0, 20, 40) go; skew: only v1 (v3 is old but follows young v2)
    assert (result.events, result.streams, result.kept_out_of_order) == (3 + 3 + 1, 3, 1)
    fresh = Journal.open(aged.path)
    left = {(r["stream_id"], r["version"]) for r in fresh.read_all(["stream_id", "version"]).to_pylist()}
    assert left == {("span", 4), ("span", 5), ("span", 6), ("new", 1), ("skew", 2), ("skew", 3)}
    archive = Path(result.archive_path or "")
    assert archive.is_file() and file_sha256(archive) == result.archive_sha256
    archived = pq.read_table(archive).to_pylist()
    assert {(r["stream_id"], r["version"]) for r in archived} == set(before_rows) - left
    assert all(r == before_rows[(r["stream_id"], r["version"])] for r in archived)  # whole rows, unchanged
    records = {r["stream_id"]: r for r in read_table(fresh, "purges").to_pylist()}
    assert records["span"]["first_kept_version"] == 4
    assert records["span"]["anchor_hash"] == before_rows[("span", 3)]["hash"]
    assert records["old"]["removed_events"] == 3 and records["old"]["archive_sha256"] == result.archive_sha256
    report = verify_journal(fresh)
    assert report.ok, report.breaks
    assert report.anchored == 2  # span and skew start after a purge


def test_after_a_purge_tampering_still_fails(aged: Journal) -> None:
    purge_before(aged, BEFORE, now=NOW)
    path, row = locate(aged, "span", 5)
    rewrite_parquet(path, lambda t: set_cell(t, "data", row, '{"n":99}'))
    breaks = verify_journal(Journal.open(aged.path)).breaks or []
    assert [(b.stream_id, b.version, b.check) for b in breaks] == [("span", 5, "payload")]


def test_removing_more_than_the_record_says_is_named(aged: Journal) -> None:
    purge_before(aged, BEFORE, now=NOW)
    path, row = locate(aged, "span", 4)  # the anchored first event
    rewrite_parquet(path, lambda t: drop_row(t, row))
    breaks = verify_journal(Journal.open(aged.path)).breaks or []
    assert [(b.stream_id, b.version, b.check) for b in breaks] == [("span", 5, "version")]


def test_a_crash_between_record_and_rewrite_leaves_a_verifiable_journal(
    aged: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*a: object, **k: object) -> int:
        raise KeyboardInterrupt("killed before the commit")

    monkeypatch.setattr("toolkit.journal.retention.replace_partitions", crash)
    with pytest.raises(KeyboardInterrupt):
        purge_before(aged, BEFORE, now=NOW)
    fresh = Journal.open(aged.path)
    assert fresh.read_all(["event_id"]).num_rows == 13  # nothing removed
    assert read_table(fresh, "purges").num_rows == 3  # the records are there
    assert verify_journal(fresh).ok
    monkeypatch.setattr("toolkit.journal.retention.replace_partitions", rewrite.replace_partitions)
    result = purge_before(Journal.open(aged.path), BEFORE, now=NOW)
    assert result.events == 7
    fresh = Journal.open(aged.path)
    assert fresh.read_all(["event_id"]).num_rows == 6 and verify_journal(fresh).ok


def test_nothing_to_purge_writes_nothing(aged: Journal) -> None:
    version = aged.delta_version
    result = purge_before(aged, dt.datetime(2024, 1, 1, tzinfo=UTC), now=NOW)
    assert result.events == 0 and result.archive_path is None
    assert Journal.open(aged.path).delta_version == version


def test_retention_setting_round_trips(tmp_path: Path) -> None:
    from toolkit.journal.config import JournalConfig

    j = Journal.create(tmp_path / "j", config=JournalConfig(retention_min_days=30))
    assert Journal.open(j.path).config.retention_min_days == 30
    j.append("x", [ev("custom", occurred_at=NOW - dt.timedelta(days=40))])
    assert purge_before(Journal.open(j.path), NOW - dt.timedelta(days=31), now=NOW).events == 1


@pytest.mark.parametrize("killed_at", ["after the archive", "after the records", "after the registration"])
def test_a_purge_killed_half_way_is_rolled_back_by_the_rerun(
    aged: Journal, monkeypatch: pytest.MonkeyPatch, killed_at: str
) -> None:
    """Whatever step a kill interrupts, the rerun records the purge once, and no archive copy of
    the events is left that no record names (erasure would not find it)."""
    import toolkit.journal.retention as retention

    real_append = retention.append_side_rows

    def kill(*a: object, **k: object) -> int:
        raise KeyboardInterrupt(f"killed {killed_at}")

    def append(journal: Journal, name: str, rows: list[dict[str, object]]) -> int:
        if (killed_at, name) == ("after the archive", "purges") or (killed_at, name) == (
            "after the records",
            "archives",
        ):
            kill()
        return real_append(journal, name, rows)

    monkeypatch.setattr(retention, "append_side_rows", append)
    if killed_at == "after the registration":
        monkeypatch.setattr(retention, "replace_partitions", kill)
    with pytest.raises(KeyboardInterrupt):
        purge_before(aged, BEFORE, now=NOW)
    assert len(list((aged.path / "purge-archives").iterdir())) == 1  # the archive of the killed run
    monkeypatch.undo()
    result = purge_before(Journal.open(aged.path), BEFORE, now=NOW)
    fresh = Journal.open(aged.path)
    assert result.events == 7 and fresh.read_all(["event_id"]).num_rows == 6
    purges = read_table(fresh, "purges").to_pylist()
    assert sorted(r["stream_id"] for r in purges) == ["old", "skew", "span"]
    assert {r["purge_id"] for r in purges} == {result.purge_id}
    removed = read_table(fresh, "purged_events").to_pylist()  # the ids of the rerun's events, once
    assert sorted((r["purge_id"], r["stream_id"], r["version"]) for r in removed) == sorted(
        [(result.purge_id, "old", v) for v in (1, 2, 3)]
        + [(result.purge_id, "span", v) for v in (1, 2, 3)]
        + [(result.purge_id, "skew", 1)]
    )
    assert [r["archive_id"] for r in read_table(fresh, "archives").to_pylist()] == [result.purge_id]
    assert [p.name for p in (aged.path / "purge-archives").iterdir()] == [Path(result.archive_path or "").name]
    assert verify_journal(fresh).ok


def test_positions_are_never_given_twice_after_a_purge_removed_the_highest(tmp_path: Path) -> None:
    """Old events imported last hold the highest positions; a purge removed them and the next
    append was given their positions again (position-ordered readers had seen them)."""
    j = Journal.create(tmp_path / "j")
    j.append("new", [ev("user_message", occurred_at="2026-11-01T00:00:00Z")])
    j.append("old", [ev("user_message", occurred_at="2025-01-01T00:00:00Z") for _ in range(3)])
    assert j.max_position() == 4
    purge_before(j, dt.datetime(2025, 6, 1, tzinfo=dt.UTC), now=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    other = Journal.open(j.path)  # another process sees it too
    assert other.max_position() == 4
    other.append("new", [ev("tool_called", occurred_at="2026-11-01T00:01:00Z")])
    assert j.read_stream("new").column("position").to_pylist() == [1, 5]
    j.append("new", [ev("tool_result", occurred_at="2026-11-01T00:02:00Z")])
    assert j.read_stream("new").column("position").to_pylist() == [1, 5, 6]
    assert verify_journal(Journal.open(j.path)).ok


def test_a_journal_whose_path_has_spaces_reads_its_side_tables(tmp_path: Path) -> None:
    """deltalake percent-encodes side-table file URIs (`my%20journal/purges/...`): after a purge (or a
    written re-grade) every read of a side table and every SQL session failed with "No files found"."""
    from toolkit.analysis.overview import overview_tables
    from toolkit.analysis.regrade_trends import regrade_rules
    from toolkit.analysis.run_explorer import list_failing_rules

    j = Journal.create(tmp_path / "my journal #1")
    j.append("old", [ev("custom", {"n": i}, occurred_at=_at(i)) for i in range(3)])
    build_tool_failure_loop(j)
    purge_before(j, BEFORE, now=NOW)
    assert read_table(j, "purges").to_pylist()[0]["stream_id"] == "old"
    assert overview_tables(j).totals["events"] == 13  # a SQL session opens
    regrade_rules(j, ["no_tool_failure_loop"], write=True)
    assert list_failing_rules(j) == ["no_tool_failure_loop"]


def _older_side_table(journal: Journal, name: str) -> str:
    """Write side table ``name`` as a release before its last nullable column would have; returns that column."""
    schema = SIDE_TABLES[name]
    added = [f for f in schema if f.nullable][-1].name
    write_deltalake(str(journal.path / name), pa.schema([f for f in schema if f.name != added]).empty_table())
    return added


def test_a_purge_appends_to_a_purges_table_written_before_a_column_was_added(aged: Journal) -> None:
    added = _older_side_table(aged, "purges")
    result = purge_before(aged, BEFORE, now=NOW)
    purges = read_table(aged, "purges")
    assert purges.num_rows == result.streams and purges.column(added).null_count < purges.num_rows
    assert verify_journal(Journal.open(aged.path)).ok


def test_findings_written_before_a_column_was_added_can_be_rewritten(journal: Journal) -> None:
    added = _older_side_table(journal, "findings")  # failing_events: findings of older releases lack it
    schema = SIDE_TABLES["findings"]
    row = {f.name: ("x" if pa.types.is_string(f.type) else NOW) for f in schema if not f.nullable}
    old_schema = pa.schema([f for f in schema if f.name != added])
    write_deltalake(str(journal.path / "findings"), pa.Table.from_pylist([row], schema=old_schema), mode="append")
    old = read_table(journal, "findings")
    assert old.column(added).to_pylist() == [None]
    rewrite.rewrite_side_table(journal, "findings", old, "redact")  # what journal redact does to them
    assert read_table(journal, "findings").to_pylist() == old.to_pylist()
    assert added in DeltaTable(str(journal.path / "findings")).schema().to_arrow().names


def _killed_archive_run(journal: Journal, op: str, archive: Path) -> None:
    """A purge --archive or journal archive -o of ``journal`` SIGKILLed once its archive file is
    written and before it is registered: the file and its pending record are left."""
    target = {"purge": "toolkit.journal.retention", "archive": "toolkit.reports.archive"}[op]
    proc = spawn("killed_at", journal.path, op, f"{target}:write_parquet_atomic", "after", 1, archive)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{op} not killed ({proc.returncode}): {out}{err}"
    assert archive.is_file() and any((journal.path / "pending-archives").glob("*.json"))


@pytest.fixture
def alice(journal: Journal) -> Journal:
    """One stream with an event before the cut-off of the killed_at purge (2025-01-05T00:00:30Z)."""
    old = dt.datetime(2025, 1, 5, tzinfo=UTC)
    journal.append("alice-1", [ev("user_message", {"n": i}, occurred_at=old + dt.timedelta(minutes=i)) for i in (0, 1)])
    return journal


def _clean_up(path: Path) -> Leftovers:
    """What a purge that removes nothing finds of the leftovers of killed runs."""
    return purge_before(Journal.open(path), dt.datetime(2024, 1, 1, tzinfo=UTC), now=NOW).leftovers


@pytest.mark.parametrize("op", ["purge", "archive"])
def test_a_copy_of_a_journal_keeps_the_archive_a_killed_run_of_the_original_left(
    alice: Journal, tmp_path: Path, op: str
) -> None:
    """A copy of the journal directory (cp -r) made while a killed run's record was pending holds
    that record too: a purge, archive or redact of the copy deleted the original's file (it is at
    the recorded path with the recorded digest). It is not the copy's: the copy keeps it and says
    so; the original still deletes it."""
    archive = tmp_path / "outside" / "alice-1.parquet"
    _killed_archive_run(alice, op, archive)
    digest = file_sha256(archive)
    copy = tmp_path / "copy"
    shutil.copytree(alice.path, copy)

    found = _clean_up(copy)
    assert archive.is_file() and file_sha256(archive) == digest
    assert found.removed == [] and list(found.kept) == [str(archive)]
    assert str(alice.path) in found.kept[str(archive)]
    assert any(str(archive) in note and str(alice.path) in note for note in found.notes())
    assert any((copy / "pending-archives").glob("*.json"))  # the original has not dealt with it yet

    assert _clean_up(alice.path).removed == [str(archive)]  # the original deletes its own leftover
    assert not archive.exists() and not any((alice.path / "pending-archives").glob("*.json"))
    again = _clean_up(copy)  # the original settled it: the copy drops its record, says nothing
    assert again.removed == [] and again.kept == {} and not any((copy / "pending-archives").glob("*.json"))


def test_an_archive_a_copy_registered_survives_the_clean_up_of_the_original(alice: Journal, tmp_path: Path) -> None:
    """After a killed journal archive, its copy resumes it to the same file and registers it (same
    events, same bytes): the original's record named that digest and deleted the copy's archive.
    Each run's archive carries its run's id, so the file the copy wrote is not the one the
    original's killed run wrote."""
    from toolkit.reports.archive import archive_stream

    archive = tmp_path / "outside" / "alice-1.parquet"
    _killed_archive_run(alice, "archive", archive)
    copy = tmp_path / "copy"
    shutil.copytree(alice.path, copy)
    written = archive_stream(Journal.open(copy), "alice-1", archive)
    assert list(written.leftovers.kept) == [str(archive)]
    assert [a["sha256"] for a in read_table(Journal.open(copy), "archives").to_pylist()] == [written.sha256]

    assert _clean_up(alice.path).removed == []
    assert archive.is_file() and file_sha256(archive) == written.sha256


def test_a_copy_keeps_the_archive_of_a_purge_of_the_original_killed_before_its_commit(
    alice: Journal, tmp_path: Path
) -> None:
    """A purge killed after registering its archive and before its commit is rolled back by the
    next run, archive file included: on a copy, that file is the original's."""
    archive = tmp_path / "outside" / "purged.parquet"
    proc = spawn("killed_at", alice.path, "purge", "toolkit.journal.retention:replace_partitions", "before", 1, archive)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL and archive.is_file()
    copy = tmp_path / "copy"
    shutil.copytree(alice.path, copy)

    found = _clean_up(copy)
    assert archive.is_file() and list(found.kept) == [str(archive)]
    assert read_table(Journal.open(copy), "purges").num_rows == 0  # rolled back there
    _clean_up(alice.path)  # the original rolls its purge back, archive file included
    assert not archive.exists()
