"""Erasure: a subject's payloads go (table, history, archives); the chain and a record stay;
verify tells redaction from tampering."""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import ev, locate, lock_held_by_another_thread, rewrite_parquet, run_cli, set_cell, spawn

from toolkit.errors import RetentionError
from toolkit.journal import Journal, rewrite
from toolkit.journal.integrity import verify_journal
from toolkit.journal.redaction import redact_subject, subject_digest
from toolkit.journal.retention import purge_before
from toolkit.journal.side_tables import read_projection, read_table
from toolkit.reports.archive import archive_stream

UTC = dt.UTC
PII = "Alice Example, 12 Rue de la Paix, IBAN FR7630006000011234567890189"


@pytest.fixture
def people(journal: Journal) -> Journal:
    old = dt.datetime(2025, 1, 5, tzinfo=UTC)
    journal.append(
        "alice-1",
        [
            ev("user_message", {"text": PII}, subject_id="alice", occurred_at=old, metadata={"ip": "10.0.0.7"}),
            ev(
                "llm_response", {"text": f"Noted: {PII}"}, subject_id="alice", occurred_at=old + dt.timedelta(minutes=1)
            ),
        ],
    )
    journal.append("alice-2", [ev("user_message", {"text": f"again {PII}"}, subject_id="alice")])
    journal.append("bob-1", [ev("user_message", {"text": "bob's words"}, subject_id="bob")])
    return journal


def _everything_on_disk(root: Path) -> str:
    """Every Parquet file (referenced or not) and Delta log entry under ``root``, decoded to text."""
    parts = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(p).to_pylist(), default=str))
        elif p.suffix == ".json":
            parts.append(p.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def test_redaction_keeps_the_skeleton_and_verifies(people: Journal) -> None:
    before = {r["event_id"]: r for r in people.read_all().to_pylist()}
    result = redact_subject(people, "alice", reason="art. 17 request 42")
    assert (result.events, result.streams) == (3, 2)
    fresh = Journal.open(people.path)
    after = {r["event_id"]: r for r in fresh.read_all().to_pylist()}
    assert after.keys() == before.keys()
    marker = json.dumps({"redacted": result.redaction_id}, separators=(",", ":"))
    for eid, row in after.items():
        if before[eid]["subject_id"] == "alice":
            assert row["data"] == row["metadata"] == marker
            assert {k: v for k, v in row.items() if k not in ("data", "metadata")} == {
                k: v for k, v in before[eid].items() if k not in ("data", "metadata")
            }
        else:
            assert row == before[eid]
    records = read_table(fresh, "redactions").to_pylist()
    assert {r["event_id"] for r in records} == {e for e, r in before.items() if r["subject_id"] == "alice"}
    assert all(r["subject_sha256"] == subject_digest("alice") and r["reason"] == "art. 17 request 42" for r in records)
    assert all("subject_id" not in r for r in records)  # the record names the subject by digest only
    report = verify_journal(fresh)
    assert report.ok, report.breaks
    assert report.redacted == 3


def test_personal_data_leaves_history_and_archives(people: Journal, tmp_path: Path) -> None:
    purge = purge_before(people, dt.datetime(2025, 1, 5, 0, 0, 30, tzinfo=UTC), now=dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert purge.events == 1  # alice-1 v1 now lives only in the purge archive
    archive_stream(people, "alice-2", tmp_path / "alice-2.json", fmt="evennia-archive")
    archive_stream(people, "alice-1", tmp_path / "alice-1.parquet")
    people.append("bob-1", [ev("custom", {"k": 1})])  # more history
    people.append(
        "alice-3",
        [ev("tool_called", {"to": PII}, subject_id="alice", tool_name="send_mail", tool_call_id="c1")],
        stream_type="agent_run",
    )
    from toolkit.analysis.projections import catch_up
    from toolkit.analysis.snapshots import take_snapshots

    catch_up(people, "tool_calls")  # a read model derived from the payloads
    take_snapshots(people, every=1)
    assert (people.path / "projection_tool_calls").is_dir()
    assert "alice-3" in read_table(people, "snapshots").column("stream_id").to_pylist()
    assert PII in _everything_on_disk(people.path) + _everything_on_disk(tmp_path)

    result = redact_subject(people, "alice")
    assert sorted(Path(p).name for p in result.archives_rewritten) == sorted(
        [Path(purge.archive_path or "").name, "alice-2.json", "alice-1.parquet"]
    )
    assert "projection_tool_calls" in result.derived_dropped
    assert not (people.path / "projection_tool_calls").exists()
    assert not {"alice-1", "alice-2", "alice-3"} & set(read_table(people, "snapshots").column("stream_id").to_pylist())
    assert "bob-1" in read_table(people, "snapshots").column("stream_id").to_pylist()
    assert PII not in _everything_on_disk(people.path)
    assert PII not in _everything_on_disk(tmp_path)
    assert "10.0.0.7" not in _everything_on_disk(people.path) + _everything_on_disk(tmp_path)
    fresh = Journal.open(people.path)
    assert verify_journal(fresh).ok
    # the archives' new digests are registered
    from toolkit.journal.retention import file_sha256

    rows = sorted(read_table(fresh, "archives").to_pylist(), key=lambda r: r["archived_at"])
    latest = {r["path"]: r["sha256"] for r in rows}
    assert all(file_sha256(p) == h for p, h in latest.items())
    assert "bob's words" in json.dumps(fresh.read_all(["data"]).to_pylist())


def test_tampering_with_a_redacted_event_is_still_tampering(people: Journal) -> None:
    redact_subject(people, "alice", erase=False)
    path, row = locate(people, "alice-1", 2)
    rewrite_parquet(path, lambda t: set_cell(t, "data", row, '{"redacted":"someone-else"}'))
    breaks = verify_journal(Journal.open(people.path)).breaks or []
    assert [(b.stream_id, b.version, b.check) for b in breaks] == [("alice-1", 2, "payload")]


def test_a_fake_marker_without_a_record_is_tampering(people: Journal) -> None:
    path, row = locate(people, "bob-1", 1)
    rewrite_parquet(
        path, lambda t: set_cell(set_cell(t, "data", row, '{"redacted":"x"}'), "metadata", row, '{"redacted":"x"}')
    )
    breaks = verify_journal(Journal.open(people.path)).breaks or []
    assert [(b.stream_id, b.version, b.check) for b in breaks] == [("bob-1", 1, "payload")]


def test_a_crash_between_record_and_rewrite_is_safe(people: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*a: object, **k: object) -> int:
        raise KeyboardInterrupt("killed before the commit")

    monkeypatch.setattr("toolkit.journal.redaction.replace_partitions", crash)
    with pytest.raises(KeyboardInterrupt):
        redact_subject(people, "alice")
    fresh = Journal.open(people.path)
    assert read_table(fresh, "redactions").num_rows == 3
    assert PII in json.dumps(fresh.read_all(["data"]).to_pylist())  # not yet redacted
    assert verify_journal(fresh).ok
    monkeypatch.setattr("toolkit.journal.redaction.replace_partitions", rewrite.replace_partitions)
    result = redact_subject(Journal.open(people.path), "alice")
    assert result.events == 3
    fresh = Journal.open(people.path)
    assert PII not in json.dumps(fresh.read_all(["data"]).to_pylist())
    report = verify_journal(fresh)
    assert report.ok and report.redacted == 3


def test_redacting_twice_is_a_no_op_and_unknown_subjects_are_named(people: Journal) -> None:
    redact_subject(people, "alice", erase=False)
    again = redact_subject(people, "alice", erase=False)
    assert (again.events, again.already_redacted) == (0, 3)
    with pytest.raises(RetentionError, match="no events with subject_id 'carol'"):
        redact_subject(people, "carol")


def test_archive_appends_a_tombstone_and_delete_keeps_the_chain(people: Journal, tmp_path: Path) -> None:
    original = people.read_stream("alice-1")
    result = archive_stream(people, "alice-1", tmp_path / "a.parquet", delete=True, reason="closed")
    assert (result.events, result.tombstone_version, result.deleted) == (3, 3, 2)
    archived = pq.read_table(tmp_path / "a.parquet")
    assert archived.slice(0, 2).to_pylist() == original.to_pylist()
    tomb = archived.slice(2).to_pylist()[0]
    assert tomb["event_type"] == "stream_archived"
    assert json.loads(tomb["data"])["archive_path"] == str(tmp_path / "a.parquet")
    assert tomb["causation_id"] == original.column("event_id")[-1].as_py()
    fresh = Journal.open(people.path)
    assert fresh.read_stream("alice-1").column("version").to_pylist() == [3]
    report = verify_journal(fresh)
    assert report.ok and report.anchored == 1
    with pytest.raises(RetentionError, match="exists already"):
        archive_stream(fresh, "bob-1", tmp_path / "a.parquet")


def test_evennia_archive_is_readable_by_its_importer(people: Journal, tmp_path: Path) -> None:
    out = tmp_path / "bob.json"
    archive_stream(people, "bob-1", out, fmt="evennia-archive")
    doc = json.loads(out.read_text())
    assert [e["topic"] for e in doc["events"]] == ["user_message", "AssistantArchived"]
    assert doc["events"][-1]["data"]["reason"] == "archived"
    assert isinstance(pa.table({"x": [1]}), pa.Table)


def test_a_snapshot_taken_during_a_redaction_does_not_bring_the_payloads_back(
    people: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """take_snapshots reads and folds under the write lock: a redaction cannot commit between
    the snapshot's read of the payloads and its append of the states folded from them."""
    import threading

    import toolkit.analysis.replay as replay
    from toolkit.analysis.snapshots import take_snapshots

    read, redacted = threading.Event(), threading.Event()
    real = replay.stream_events

    def slow_read(journal: Journal, stream_id: str) -> Any:
        events = real(journal, stream_id)
        read.set()
        redacted.wait(3)  # before the fix the redaction committed here
        return events

    monkeypatch.setattr(replay, "stream_events", slow_read)
    snap = threading.Thread(target=take_snapshots, args=(people,), kwargs={"every": 1, "stream_ids": ["alice-2"]})
    snap.start()
    assert read.wait(10)
    redact = threading.Thread(target=lambda: (redact_subject(Journal.open(people.path), "alice"), redacted.set()))
    redact.start()
    snap.join(30)
    redact.join(30)
    assert redacted.is_set()
    states = json.dumps(read_table(Journal.open(people.path), "snapshots").to_pylist(), default=str)
    assert "alice-2" not in states and PII not in states
    assert PII not in _everything_on_disk(people.path)


def test_a_redaction_killed_after_dropping_snapshots_erases_their_history_on_rerun(
    people: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toolkit.analysis.snapshots import take_snapshots

    take_snapshots(people, every=1)
    assert '"alice-1"' in _everything_on_disk(people.path / "snapshots")  # states folded from her payloads

    def killed(journal: Journal, name: str) -> list[str]:
        raise KeyboardInterrupt("killed after the snapshots were rewritten")

    monkeypatch.setattr("toolkit.journal.redaction.erase_side_table_history", killed)
    with pytest.raises(KeyboardInterrupt):
        redact_subject(people, "alice")
    monkeypatch.setattr("toolkit.journal.redaction.erase_side_table_history", rewrite.erase_side_table_history)
    redact_subject(Journal.open(people.path), "alice")
    assert '"alice-1"' not in _everything_on_disk(people.path / "snapshots")
    assert '"bob-1"' in _everything_on_disk(people.path / "snapshots")


def test_a_kill_during_history_erasure_leaves_the_log_retention_as_it_was(
    people: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake import DeltaTable

    def killed(self: DeltaTable) -> None:
        raise KeyboardInterrupt("killed while erasing history")

    monkeypatch.setattr(DeltaTable, "create_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        redact_subject(people, "alice")
    monkeypatch.undo()
    config = DeltaTable(people.events_uri).metadata().configuration
    assert config.get("delta.logRetentionDuration") in (None, "interval 30 days")
    redact_subject(Journal.open(people.path), "alice")
    assert PII not in _everything_on_disk(people.path)
    assert verify_journal(Journal.open(people.path)).ok


@pytest.mark.parametrize("killed_in", ["write_parquet_atomic", "remove_stream_prefix"])
def test_an_interrupted_archive_delete_is_resumed_without_a_second_tombstone(
    people: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_in: str
) -> None:
    original = people.read_stream("alice-1")

    def kill(*a: object, **k: object) -> Any:
        raise KeyboardInterrupt(f"killed in {killed_in}")

    monkeypatch.setattr(f"toolkit.reports.archive.{killed_in}", kill)
    with pytest.raises(KeyboardInterrupt):
        archive_stream(people, "alice-1", tmp_path / "a.parquet", delete=True)
    monkeypatch.undo()
    result = archive_stream(Journal.open(people.path), "alice-1", tmp_path / "a.parquet", delete=True)
    assert (result.events, result.tombstone_version, result.deleted) == (3, 3, 2)
    archived = pq.read_table(tmp_path / "a.parquet")
    assert archived.column("event_type").to_pylist() == ["user_message", "llm_response", "stream_archived"]
    assert archived.slice(0, 2).to_pylist() == original.to_pylist()
    fresh = Journal.open(people.path)
    assert fresh.read_stream("alice-1").column("version").to_pylist() == [3]
    assert [a["sha256"] for a in read_table(fresh, "archives").to_pylist()] == [result.sha256]
    assert verify_journal(fresh).ok
    with pytest.raises(RetentionError, match="deleted already"):  # never overwritten by the tombstone alone
        archive_stream(fresh, "alice-1", tmp_path / "a.parquet", delete=True, force=True)
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 3


def test_verify_during_a_redaction_reports_no_false_breaks(people: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The redaction vacuums the files it replaced while verify is reading them: verify sees the
    commit and verifies again rather than report an unreadable file."""
    reader = Journal.open(people.path)
    real = Journal.read_file
    redacted: list[int] = []

    def read_file(self: Journal, f: Any, columns: Any = None) -> Any:
        if self is reader and not redacted:
            redacted.append(redact_subject(Journal.open(people.path), "alice").events)
        return real(self, f, columns) if columns is not None else real(self, f)

    monkeypatch.setattr(Journal, "read_file", read_file)
    report = verify_journal(reader)
    assert redacted == [3]
    assert report.ok, report.breaks
    assert report.redacted == 3


def test_an_open_journal_sees_a_redaction_made_by_another_handle(people: Journal) -> None:
    """History erasure cuts the Delta log before a new checkpoint, the commit file after the
    version a handle loaded included: refresh notices and loads the table anew."""
    reader = Journal.open(people.path)
    before = reader.refresh()
    redact_subject(Journal.open(people.path), "alice")
    assert reader.refresh() > before
    assert PII not in json.dumps(reader.read_all(["data"]).to_pylist())


def test_a_process_that_read_snapshots_before_a_redaction_does_not_serve_them_after(people: Journal) -> None:
    from toolkit.analysis.agent_run import AGENT_RUN
    from toolkit.analysis.snapshots import nearest_snapshot, take_snapshots

    take_snapshots(people, every=1)
    assert nearest_snapshot(people, "alice-1", AGENT_RUN, 2) is not None  # the process's snapshot index is warm
    redact_subject(Journal.open(people.path), "alice")
    assert nearest_snapshot(people, "alice-1", AGENT_RUN, 2) is None


def test_a_redaction_rerun_with_nothing_to_do_erases_no_files(people: Journal) -> None:
    first = redact_subject(people, "alice")
    assert first.files_erased > 0
    again = redact_subject(Journal.open(people.path), "alice")
    assert (again.events, again.already_redacted, again.files_erased) == (0, 3, 0)


def _bytes_on_disk(root: Path) -> str:
    """Every file under ``root`` as text, whatever its name: Parquet files (found by their magic
    bytes: temp files too) decoded, every other file's bytes as they are (Delta log JSON and
    checkpoints' pointers, locks, temp files)."""
    parts = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        if raw[:4] == b"PAR1":
            try:
                parts.append(json.dumps(pq.read_table(p).to_pylist(), default=str))
                continue
            except (OSError, pa.ArrowException):
                pass  # a partial file: its bytes
        parts.append(raw.decode("utf-8", errors="replace"))
    return "\n".join(parts)


def _killed_at(journal: Journal, op: str, target: str, when: str, nth: int = 1, archive: Path | None = None) -> None:
    """Run ``op`` on the journal in another process and SIGKILL it at ``target`` (helpers._killed_at)."""
    proc = spawn("killed_at", journal.path, op, target, when, nth, archive or "")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{op} not killed at {target} ({proc.returncode}): {out}{err}"


QUOTING_RULE = """-- summary: No user message goes unanswered (the message quotes it).
-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR
SELECT stream_id, version, event_type <> 'user_message' AS holds, 'unanswered: ' || data AS message
FROM events
"""


def test_findings_quoting_a_payload_lose_the_text_and_keep_the_verdict(people: Journal, tmp_path: Path) -> None:
    from toolkit.analysis.regrade import regrade

    rule = tmp_path / "unanswered.sql"
    rule.write_text(QUOTING_RULE, encoding="utf-8")
    regrade(people, ["unanswered"], rule_files=[str(rule)])
    before = {r["stream_id"]: r for r in read_table(people, "findings").to_pylist()}
    assert sorted(before) == ["alice-1", "alice-2", "bob-1"] and PII in before["alice-1"]["message"]

    result = redact_subject(people, "alice")
    assert result.findings_redacted == 2
    after = {r["stream_id"]: r for r in read_table(Journal.open(people.path), "findings").to_pylist()}
    marker = json.dumps({"redacted": result.redaction_id}, separators=(",", ":"))
    for sid in ("alice-1", "alice-2"):
        assert after[sid]["message"] == marker
        assert {k: v for k, v in after[sid].items() if k != "message"} == {
            k: v for k, v in before[sid].items() if k != "message"
        }
    assert after["bob-1"] == before["bob-1"]
    assert PII not in _bytes_on_disk(people.path)
    again = redact_subject(Journal.open(people.path), "alice")
    assert again.findings_redacted == 0  # already the marker of the first redaction


@pytest.mark.parametrize("via", ["library", "cli"])
def test_a_redaction_between_a_regrades_read_and_its_write_reaches_its_findings(
    people: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], via: str
) -> None:
    """regrade judges the journal as it was when it started, then writes the findings: a redaction
    that committed in between scrubbed the findings there were, and the batch written after it
    quoted alice's payloads again. Its findings of her streams now carry the marker, as those the
    redaction scrubbed do; none is dropped and bob's keep their text."""
    import toolkit.analysis.regrade as regrading

    rule = tmp_path / "unanswered.sql"
    rule.write_text(QUOTING_RULE, encoding="utf-8")
    real, redactions = regrading._findings_table, []

    def redacted_meanwhile(*args: Any, **kwargs: Any) -> Any:  # after the rules read, before the write
        redactions.append(redact_subject(Journal.open(people.path), "alice"))
        return real(*args, **kwargs)

    monkeypatch.setattr(regrading, "_findings_table", redacted_meanwhile)
    if via == "library":
        result = regrading.regrade(people, ["unanswered"], rule_files=[str(rule)])
        shown = json.dumps(result.findings.to_pylist(), default=str)
    else:
        code, shown, err = run_cli(
            capsys, "regrade", "unanswered", "--rules", str(rule), "-j", str(people.path), "--format", "json"
        )
        assert code == 3  # findings present
        said = err.partition("the text of ")[2].partition(" of its streams is its marker")[0]
    marker = json.dumps({"redacted": redactions[0].redaction_id}, separators=(",", ":"))
    rows = {r["stream_id"]: r for r in read_table(Journal.open(people.path), "findings").to_pylist()}
    assert sorted(rows) == ["alice-1", "alice-2", "bob-1"] and len({r["batch_id"] for r in rows.values()}) == 1
    assert rows["alice-1"]["message"] == rows["alice-2"]["message"] == marker
    assert rows["alice-1"]["first_failing_version"] == 1 and rows["bob-1"]["message"] == "unanswered: " + json.dumps(
        {"text": "bob's words"}, separators=(",", ":")
    )
    assert PII not in shown and "bob's words" in shown  # what the run printed or returned
    assert PII not in _bytes_on_disk(people.path)
    assert (said if via == "cli" else f"{result.findings_redacted} findings") == "2 findings"


def test_a_regrade_after_a_redaction_writes_the_marker_for_its_streams_and_reads_without_the_lock(
    people: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The findings of a redacted stream carry its marker whenever the re-grade ran (as journal
    redact leaves those it finds; no note: nothing came meanwhile), and the rules read while another
    writer holds the lock: regrade takes it only to write (it took it before reading, so a long
    import made a re-grade wait, or fail on the lock's timeout, before judging anything)."""
    import threading
    import time

    import toolkit.analysis.regrade as regrading

    rule = tmp_path / "unanswered.sql"
    rule.write_text(QUOTING_RULE, encoding="utf-8")
    redaction = redact_subject(Journal.open(people.path), "alice")
    marker = json.dumps({"redacted": redaction.redaction_id}, separators=(",", ":"))
    judged_at: list[float] = []
    real = regrading._findings_table

    def noting(*args: Any, **kwargs: Any) -> Any:
        judged_at.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(regrading, "_findings_table", noting)
    released_at = [0.0]
    with lock_held_by_another_thread(people.path) as release:

        def release_later() -> None:
            time.sleep(1.5)
            released_at[0] = time.monotonic()
            release.set()

        threading.Thread(target=release_later).start()
        result = regrading.regrade(Journal.open(people.path), ["unanswered"], rule_files=[str(rule)])
    assert judged_at and judged_at[0] < released_at[0]  # judged while the other writer held the lock
    rows = {r["stream_id"]: r for r in read_table(Journal.open(people.path), "findings").to_pylist()}
    assert rows["alice-1"]["message"] == rows["alice-2"]["message"] == marker
    assert rows["bob-1"]["message"].startswith("unanswered: ")
    assert result.findings_redacted == 0  # no redaction came during the run: no note
    assert PII not in _bytes_on_disk(people.path)


def test_a_redaction_after_a_killed_purge_reaches_the_archive_the_purge_left(people: Journal) -> None:
    """A purge killed after writing its archive and before recording it left a copy of the
    subject's events in purge-archives/ that no record names: the redaction first rolls the
    unfinished purge back (as the next purge would), so no copy survives."""
    _killed_at(people, "purge", "toolkit.journal.retention:append_side_rows", "before")
    left = list((people.path / "purge-archives").glob("purge-*.parquet"))
    assert len(left) == 1 and PII in json.dumps(pq.read_table(left[0]).to_pylist(), default=str)
    fresh = Journal.open(people.path)
    assert read_table(fresh, "purges").num_rows == 0 and verify_journal(fresh).ok

    redact_subject(fresh, "alice")
    assert PII not in _bytes_on_disk(people.path)
    report = verify_journal(Journal.open(people.path))
    assert report.ok and report.redacted == 3


@pytest.mark.parametrize(
    ("op", "target", "when", "nth"),
    [
        ("purge", "toolkit.journal.retention:write_parquet_atomic", "after", 1),  # written, not recorded
        ("purge", "pyarrow.parquet:write_table", "after", 1),  # written to its temp file, not renamed
        ("archive", "toolkit.reports.archive:write_parquet_atomic", "after", 1),  # written, not registered
    ],
)
def test_a_redaction_reaches_the_archive_a_killed_run_left_outside_the_journal(
    people: Journal, tmp_path: Path, op: str, target: str, when: str, nth: int
) -> None:
    """A purge --archive PATH (the only way on an s3:// journal) or journal archive -o PATH killed
    after writing the file and before registering it left the subject's events in a file outside
    the journal that no registration names: the clean-up of purge-archives/ never looked there,
    and the redaction rewrote registered archives only. The run announced the file in the journal
    first: the redaction finds and deletes it (its events are still in the journal)."""
    outside = tmp_path / "outside"
    _killed_at(people, op, target, when, nth, archive=outside / "old.parquet")
    assert PII in _bytes_on_disk(outside)  # the killed run's copy of her events
    fresh = Journal.open(people.path)
    assert read_table(fresh, "archives").num_rows == 0 and verify_journal(fresh).ok

    result = redact_subject(fresh, "alice")
    assert PII not in _bytes_on_disk(outside)
    assert PII not in _bytes_on_disk(people.path)
    assert result.leftovers.removed == [str(outside / "old.parquet")]
    assert not any((people.path / "pending-archives").glob("*.json"))  # settled
    assert verify_journal(Journal.open(people.path)).ok


def test_a_file_the_user_had_at_the_archive_path_survives_an_archive_killed_before_replacing_it(
    people: Journal, tmp_path: Path
) -> None:
    """The announced archive path may name a file of the user's that the archive was to replace
    (journal archive --force): a run killed before the archive was renamed over it leaves that
    file, which the next run keeps (it deleted it as an unregistered archive)."""
    mine = tmp_path / "outside" / "old.parquet"
    mine.parent.mkdir()
    mine.write_bytes(b"the user's own file")
    _killed_at(people, "archive", "toolkit.reports.archive:announce_archive", "after", 1, archive=mine)
    result = redact_subject(Journal.open(people.path), "alice")
    assert mine.read_bytes() == b"the user's own file" and result.leftovers.removed == []
    assert not any((people.path / "pending-archives").glob("*.json"))  # settled


@pytest.mark.parametrize(
    ("op", "target"),
    [
        ("archive", "toolkit.reports.archive:announce_archive"),  # announced, nothing written
        ("purge", "pyarrow.parquet:write_table"),  # written to its temp file, not renamed
    ],
)
def test_a_file_put_at_the_archive_path_after_a_killed_run_survives_the_next_run(
    people: Journal, tmp_path: Path, op: str, target: str
) -> None:
    """A run killed before its archive reached the path leaves nothing there; a file the user puts
    there afterwards (journal export -o to the same name, a copy) is not the archive, and the next
    purge, archive or redact keeps it (it deleted any unregistered file at an announced path)."""
    path = tmp_path / "outside" / "old.parquet"
    _killed_at(people, op, target, "after", 1, archive=path)
    assert not path.exists()
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"a file the user wrote there later")
    result = redact_subject(Journal.open(people.path), "alice")
    assert path.read_bytes() == b"a file the user wrote there later"
    assert not list(path.parent.glob(".*.tmp"))  # what the killed run's write left is gone
    assert result.leftovers.removed == ([str(path)] if op == "purge" else [])
    assert not any((people.path / "pending-archives").glob("*.json"))  # settled


RAISING_RULES = """
import json

import polars as pl
from toolkit.analysis.rules import polars_rule


def _first_payload(events, subject):
    data = events.filter(pl.col("subject_id") == subject).sort("occurred_at").select("data").collect().to_series()
    return json.loads(data[0])


@polars_rule("alice_texts", "Alice's texts parse.", columns=("subject_id", "data", "occurred_at"))
def alice_texts(events, p):
    raise ValueError(f"cannot parse {_first_payload(events, 'alice')}")


@polars_rule("bob_texts", "Bob's texts parse.", columns=("subject_id", "data", "occurred_at"))
def bob_texts(events, p):
    raise ValueError(f"cannot parse {_first_payload(events, 'bob')}")
"""


def _everything_derived(people: Journal, tmp_path: Path) -> None:
    """A purge archive and findings holding some of alice's payloads, snapshots and a projection."""
    from toolkit.analysis.projections import catch_up
    from toolkit.analysis.regrade import regrade
    from toolkit.analysis.snapshots import take_snapshots

    purge_before(people, dt.datetime(2025, 1, 5, 0, 0, 30, tzinfo=UTC), now=dt.datetime(2026, 1, 1, tzinfo=UTC))
    people.append(
        "alice-3",
        [ev("tool_called", {"to": PII}, subject_id="alice", tool_name="send_mail", tool_call_id="c1")],
        stream_type="agent_run",
    )
    catch_up(people, "tool_calls")
    take_snapshots(people, every=1)
    rule = tmp_path / "unanswered.sql"
    rule.write_text(QUOTING_RULE, encoding="utf-8")
    regrade(people, ["unanswered"], rule_files=[str(rule)])
    raising = tmp_path / "raising.py"
    raising.write_text(RAISING_RULES, encoding="utf-8")
    regrade(people, ["alice_texts"], rule_files=[str(raising)])  # an error (no stream) quoting her payload
    for side in ("purge-archives", "findings"):
        assert PII in _bytes_on_disk(people.path / side), side
    assert (people.path / "projection_tool_calls" / "_delta_log").is_dir()
    assert "alice-2" in read_table(people, "snapshots").column("stream_id").to_pylist()


@pytest.mark.parametrize(
    ("target", "when", "nth"),
    [
        ("toolkit.journal.redaction:rewrite_side_table", "after", 1),  # findings scrubbed, their history kept
        ("toolkit.journal.redaction:replace_partitions", "before", 1),  # recorded, findings scrubbed, not replaced
        ("toolkit.journal.redaction:replace_partitions", "after", 1),  # replaced, nothing else
        ("toolkit.journal.redaction:write_parquet_atomic", "after", 1),  # archive rewritten, not registered
        ("toolkit.journal.redaction:rewrite_side_table", "after", 2),  # snapshots dropped, their history kept
        ("deltalake:DeltaTable.create_checkpoint", "before", 2),  # snapshots vacuumed, log not cut
        ("os:unlink", "after", 5),  # in the middle of cutting the snapshots' log
        ("os:unlink", "after", 7),  # in the middle of removing the projection (one of its two files gone)
        ("os:unlink", "after", 12),  # in the middle of cutting the events' log
        ("deltalake:DeltaTable.create_checkpoint", "after", 3),  # events vacuumed and checkpointed, log not cut
    ],
)
def test_a_redaction_killed_anywhere_leaves_a_readable_journal_and_a_rerun_finishes(
    people: Journal, tmp_path: Path, target: str, when: str, nth: int
) -> None:
    from toolkit.analysis.projections import catch_up
    from toolkit.analysis.replay import state_at

    _everything_derived(people, tmp_path)
    events = people.read_all().num_rows
    _killed_at(people, "redact", target, when, nth)

    fresh = Journal.open(people.path)
    assert fresh.read_all().num_rows == events
    report = verify_journal(fresh)
    assert report.ok, report.breaks
    state_at(fresh, "alice-2", version=1)  # snapshots (kept or dropped) still serve or are ignored
    catch_up(fresh, "tool_calls")  # the projection is whole or gone (rebuilt), never half-removed
    assert read_projection(fresh, "tool_calls") is not None

    result = redact_subject(Journal.open(people.path), "alice")
    assert result.events + result.already_redacted == 3
    assert PII not in _bytes_on_disk(people.path)
    report = verify_journal(Journal.open(people.path))
    assert report.ok and report.redacted == 3 and report.anchored == 1


def test_quarantined_lines_of_the_subject_are_named_and_redacted_on_request(
    people: Journal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolkit.ingest.runner import import_paths

    export = tmp_path / "late.jsonl"
    lines = [
        {
            "stream_id": "alice-9",
            "event_type": "user_message",
            "subject_id": "alice",
            "data": {"text": PII},
            "occurred_at": "soon",
        },
        {
            "stream_id": "bob-9",
            "event_type": "user_message",
            "subject_id": "bob",
            "data": {"text": "bob again"},
            "occurred_at": "later",
        },
    ]
    export.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert import_paths(people, [str(export)], on_error="quarantine").quarantined == 2

    code, out, err = run_cli(capsys, "redact", "-j", str(people.path), "--subject", "alice")
    assert code == 0, err
    assert json.loads(out)["quarantine_kept"] == 1
    assert "1 quarantined record(s) mention 'alice'" in err and "Hint: run the command again with --quarantine" in err
    assert PII in _bytes_on_disk(people.path / "quarantine")

    code, out, err = run_cli(capsys, "redact", "-j", str(people.path), "--subject", "alice", "--quarantine")
    assert code == 0, err
    assert (json.loads(out)["quarantine_redacted"], json.loads(out)["quarantine_kept"]) == (1, 0)
    assert PII not in _bytes_on_disk(people.path)
    records = read_table(Journal.open(people.path), "quarantine").column("record").to_pylist()
    assert sum("bob again" in r for r in records) == 1 and sum(r.startswith('{"redacted":') for r in records) == 1


def test_a_redaction_removes_what_a_killed_compaction_spilled(people: Journal) -> None:
    """A compaction spills a partition's rows (payloads included) to JOURNAL/.compact-tmp and
    removes them at its end or at the start of the next compaction: one killed in between left
    them where only the next compaction would look."""
    _killed_at(people, "compact", "pyarrow.parquet:write_table", "after")
    assert PII in _bytes_on_disk(people.path / ".compact-tmp")
    assert verify_journal(Journal.open(people.path)).ok

    redact_subject(Journal.open(people.path), "alice")
    assert PII not in _bytes_on_disk(people.path)


def test_a_second_redaction_takes_the_new_events_and_leaves_the_first_as_it_was(people: Journal) -> None:
    """The subject's new events (another day: another partition) after a first redaction: only
    their partition is rewritten; the events redacted before keep their marker and are not copied."""
    first = redact_subject(people, "alice")
    people.append(
        "alice-4",
        [
            ev(
                "user_message",
                {"text": f"later {PII}"},
                subject_id="alice",
                occurred_at=dt.datetime(2025, 3, 1, tzinfo=UTC),
            )
        ],
    )
    before = {r["event_id"]: r for r in Journal.open(people.path).read_all().to_pylist()}
    second = redact_subject(Journal.open(people.path), "alice")
    assert (second.events, second.already_redacted) == (1, 3)
    rows = Journal.open(people.path).read_all().to_pylist()
    assert sorted(r["event_id"] for r in rows) == sorted(before)  # no event twice, none lost
    first_marker = json.dumps({"redacted": first.redaction_id}, separators=(",", ":"))
    second_marker = json.dumps({"redacted": second.redaction_id}, separators=(",", ":"))
    for r in rows:
        if r["stream_id"] == "alice-4":
            assert r["data"] == second_marker
        else:
            assert r == before[r["event_id"]]
    assert sum(r["data"] == first_marker for r in rows) == 3
    report = verify_journal(Journal.open(people.path))
    assert report.ok and report.redacted == 4
    assert PII not in _bytes_on_disk(people.path)


@pytest.mark.parametrize(
    ("column", "value"), [("event_type", "tool_result"), ("subject_id", "mallory"), ("tokens_in", 7)]
)
def test_after_the_history_is_erased_a_redacted_events_other_columns_are_still_checked(
    people: Journal, column: str, value: object
) -> None:
    redact_subject(people, "alice")
    path, row = locate(people, "alice-1", 2)
    rewrite_parquet(path, lambda t: set_cell(t, column, row, value))
    report = verify_journal(Journal.open(people.path))
    assert [(b.stream_id, b.version, b.check) for b in report.breaks or []] == [("alice-1", 2, "hash")]


def test_a_redacted_event_whose_record_went_is_tampering(people: Journal) -> None:
    from toolkit.journal.rewrite import rewrite_side_table

    redact_subject(people, "alice")
    records = read_table(people, "redactions")
    keep = [r for r in records.to_pylist() if not (r["stream_id"] == "alice-2")]
    rewrite_side_table(people, "redactions", pa.Table.from_pylist(keep, schema=records.schema), "tamper")
    report = verify_journal(Journal.open(people.path))
    assert [(b.stream_id, b.version, b.check) for b in report.breaks or []] == [("alice-2", 1, "payload")]


def test_a_second_redaction_leaves_the_archives_the_first_one_redacted(people: Journal, tmp_path: Path) -> None:
    """Their rows keep the first redaction's marker (the one its records name): the files are
    not rewritten with the second's."""
    from toolkit.journal.retention import file_sha256

    purge = purge_before(people, dt.datetime(2025, 1, 5, 0, 0, 30, tzinfo=UTC), now=dt.datetime(2026, 1, 1, tzinfo=UTC))
    archive_stream(people, "alice-2", tmp_path / "alice-2.json", fmt="evennia-archive")
    first = redact_subject(people, "alice")
    files = sorted([purge.archive_path or "", str(tmp_path / "alice-2.json")])
    assert sorted(first.archives_rewritten) == files
    digests = {p: file_sha256(p) for p in files}
    people.append("alice-4", [ev("user_message", {"text": PII}, subject_id="alice")])
    second = redact_subject(Journal.open(people.path), "alice")
    assert (second.events, second.archives_rewritten) == (1, [])
    assert {p: file_sha256(p) for p in files} == digests


def test_a_rule_error_quoting_a_payload_a_redaction_replaced_during_the_regrade_is_not_written(
    people: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule that raises names no stream (its finding's stream_id is null), yet its error may
    quote a payload read before a redaction that committed while the rules read: that finding
    gets the redaction's marker too (its kind and rule stay); with no redaction meanwhile a rule
    error keeps its text."""
    import toolkit.analysis.regrade as regrading

    rule = tmp_path / "numeric.sql"
    rule.write_text(
        "-- summary: Every payload is a number (it is not: the error quotes one).\n"
        "-- returns: stream_id VARCHAR, version BIGINT, holds BOOLEAN, message VARCHAR\n"
        "SELECT stream_id, version, CAST(data AS INTEGER) > 0 AS holds, 'x' AS message FROM events\n"
        "WHERE subject_id = 'alice'\n",
        encoding="utf-8",
    )
    real, redactions = regrading._findings_table, []

    def redacted_meanwhile(*args: Any, **kwargs: Any) -> Any:  # after the rules read, before the write
        redactions.append(redact_subject(Journal.open(people.path), "alice"))
        return real(*args, **kwargs)

    monkeypatch.setattr(regrading, "_findings_table", redacted_meanwhile)
    result = regrading.regrade(people, ["numeric"], rule_files=[str(rule)])
    marker = json.dumps({"redacted": redactions[0].redaction_id}, separators=(",", ":"))
    (row,) = read_table(Journal.open(people.path), "findings").to_pylist()
    assert (row["kind"], row["rule"], row["stream_id"]) == ("error", "numeric", None)
    assert row["message"] == marker and json.loads(row["evidence"])["error"] == marker
    assert PII not in json.dumps(result.findings.to_pylist(), default=str)
    assert PII not in _bytes_on_disk(people.path)
    monkeypatch.setattr(regrading, "_findings_table", real)
    again = regrading.regrade(Journal.open(people.path), ["numeric"], rule_files=[str(rule)])
    assert again.findings.column("message")[0].as_py().startswith("rule numeric raised")  # nothing came meanwhile


def test_a_rule_error_quoting_a_redacted_payload_loses_its_text(people: Journal, tmp_path: Path) -> None:
    """A rule that raises names no stream, so journal redact, which scrubbed the findings of the
    subject's streams only, left an error quoting her payload in the findings table. The error
    that quotes a text of the redacted payloads now gets the marker (its kind and rule stay); the
    one quoting bob's payload keeps its text."""
    from toolkit.analysis.regrade import regrade

    rules = tmp_path / "raising.py"
    rules.write_text(RAISING_RULES, encoding="utf-8")
    regrade(people, ["alice_texts", "bob_texts"], rule_files=[str(rules)])
    before = {r["rule"]: r for r in read_table(people, "findings").to_pylist()}
    assert {(r["kind"], r["stream_id"]) for r in before.values()} == {("error", None)}
    assert PII in before["alice_texts"]["message"] and "bob's words" in before["bob_texts"]["message"]

    result = redact_subject(people, "alice")
    after = {r["rule"]: r for r in read_table(Journal.open(people.path), "findings").to_pylist()}
    marker = json.dumps({"redacted": result.redaction_id}, separators=(",", ":"))
    assert after["alice_texts"]["message"] == marker and json.loads(after["alice_texts"]["evidence"])["error"] == marker
    assert (after["alice_texts"]["kind"], after["alice_texts"]["stream_id"]) == ("error", None)
    assert after["bob_texts"] == before["bob_texts"]
    assert result.findings_redacted == 1
    assert PII not in _bytes_on_disk(people.path)


def test_a_rule_error_quoting_a_payload_a_purge_archived_since_loses_its_text(people: Journal, tmp_path: Path) -> None:
    """The event the error quotes left the journal for a purge archive before the redaction: the
    texts of the subject's archived payloads count too."""
    from toolkit.analysis.regrade import regrade

    rules = tmp_path / "raising.py"
    rules.write_text(RAISING_RULES, encoding="utf-8")
    regrade(people, ["alice_texts"], rule_files=[str(rules)])
    (quoting,) = read_table(people, "findings").to_pylist()
    assert repr({"text": PII}) in quoting["message"]  # her first event, alice-1 version 1, which the purge archives
    purge_before(people, dt.datetime(2025, 1, 5, 0, 0, 30, tzinfo=UTC), now=dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert all(PII != json.loads(d).get("text") for d in people.read_all().column("data").to_pylist())

    result = redact_subject(Journal.open(people.path), "alice")
    marker = json.dumps({"redacted": result.redaction_id}, separators=(",", ":"))
    (row,) = read_table(Journal.open(people.path), "findings").to_pylist()
    assert (row["rule"], row["kind"], row["message"]) == ("alice_texts", "error", marker)
    assert PII not in _bytes_on_disk(people.path)


def test_the_regrade_note_counts_the_rule_errors_it_gave_the_marker_apart(
    people: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The note about a redaction that came during the re-grade said "N findings of its streams",
    but N took the rule errors too (no stream; they get the marker as well): it now says how many
    of each."""
    import toolkit.analysis.regrade as regrading

    quoting, raising = tmp_path / "unanswered.sql", tmp_path / "raising.py"
    quoting.write_text(QUOTING_RULE, encoding="utf-8")
    raising.write_text(RAISING_RULES, encoding="utf-8")
    real = regrading._findings_table

    def redacted_meanwhile(*args: Any, **kwargs: Any) -> Any:  # after the rules read, before the write
        redact_subject(Journal.open(people.path), "alice")
        return real(*args, **kwargs)

    monkeypatch.setattr(regrading, "_findings_table", redacted_meanwhile)
    code, _, err = run_cli(
        capsys, "regrade", "unanswered", "alice_texts", "--rules", str(quoting), "--rules", str(raising),
        "-j", str(people.path), "--format", "json",
    )  # fmt: skip
    assert code == 3
    rows = read_table(Journal.open(people.path), "findings").to_pylist()
    assert sorted((r["kind"], r["stream_id"] or "") for r in rows) == [
        ("error", ""), ("violation", "alice-1"), ("violation", "alice-2"), ("violation", "bob-1"),
    ]  # fmt: skip
    (note,) = [line for line in err.splitlines() if line.startswith("note: a redaction")]
    assert note == (
        "note: a redaction committed during the re-grade: the text of 2 findings of its streams and of "
        "1 rule error (no stream: an error may quote a payload) is its marker, as journal redact leaves "
        "the findings it finds"
    )


class _Passes(list[str]):
    """Texts of redacted payloads that count the passes made over them."""

    passes = 0

    def __iter__(self) -> Any:
        self.passes += 1
        return super().__iter__()


def test_scrub_findings_goes_through_the_quoted_texts_once_however_many_rule_errors() -> None:
    """Each rule error (no stream) was checked against every text of the redacted payloads, one
    pass over them per error: a subject's 10^6 events give ~5*10^6 texts, and 100 errors took
    minutes under the write lock. The texts are now gone through once; the errors that quote one
    (at any place of the message or the error, however short the text) get the marker, the others
    keep their text."""
    from toolkit.journal.redaction import marker_for, scrub_findings

    texts = _Passes([f"secret-{i:05d}" for i in range(2_000)] + ["IBAN FR76", "Zo\\u00eb", "ab"])
    said = [f"KeyError: 'field{i}'" for i in range(50)]
    said[3] = "ValueError: cannot parse {'text': 'secret-01999'}"  # the last text, at the end
    said[17] = "IBAN FR76 is not a number"  # at the start
    said[29] = 'bad "Zo\\u00eb" in JSON'
    errors = [None] * 50
    errors[41] = "an ab here"  # a text shorter than the anchor, in the error only
    findings = pa.table({
        "stream_id": pa.array([None] * 50 + ["alice-1"], pa.string()),
        "message": [f"rule r{i} raised {s}" for i, s in enumerate(said)] + ["secret-00001"],
        "evidence": [json.dumps({"error": e if e is not None else s}) for s, e in zip(said, errors, strict=True)]
        + ['{"error": null}'],
    })  # fmt: skip
    marker = marker_for("r1")
    out, changed = scrub_findings(findings, {}, marker, quoting=texts)
    assert texts.passes == 1
    scrubbed = [i for i, m in enumerate(out.column("message").to_pylist()) if m == marker]
    assert scrubbed == [3, 17, 29, 41] and changed == 4
    assert [json.loads(e)["error"] == marker for e in out.column("evidence").to_pylist()[:50]] == [
        i in (3, 17, 29, 41) for i in range(50)
    ]
    assert out.column("message")[50].as_py() == "secret-00001"  # a stream not redacted keeps its text


def test_a_rule_error_quoting_a_payload_archived_as_an_evennia_document_loses_its_text(
    people: Journal, tmp_path: Path
) -> None:
    """As for a purge archive: the quoted event left the journal for an Evennia archive (journal
    archive --format evennia-archive --delete), whose entries hold the payload as JSON objects."""
    from toolkit.analysis.regrade import regrade

    rules = tmp_path / "raising.py"
    rules.write_text(RAISING_RULES, encoding="utf-8")
    regrade(people, ["alice_texts"], rule_files=[str(rules)])
    archive_stream(people, "alice-1", tmp_path / "alice-1.json", fmt="evennia-archive", delete=True)
    fresh = Journal.open(people.path)
    assert PII not in json.dumps(fresh.read_stream("alice-1", ["data"]).to_pylist())
    (quoting,) = read_table(fresh, "findings").to_pylist()
    assert PII in quoting["message"]

    result = redact_subject(fresh, "alice")
    marker = json.dumps({"redacted": result.redaction_id}, separators=(",", ":"))
    (row,) = read_table(Journal.open(people.path), "findings").to_pylist()
    assert (row["rule"], row["kind"], row["message"]) == ("alice_texts", "error", marker)
    assert PII not in (tmp_path / "alice-1.json").read_text(encoding="utf-8")
    assert PII not in _bytes_on_disk(people.path)
