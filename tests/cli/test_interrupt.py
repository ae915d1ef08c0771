"""Ctrl-C in a writing command: ``Aborted.`` (exit 1, as before), then one ``Hint:`` line saying what
the journal holds and what to do; and what that line says is true: the journal holds what was
committed before the interrupt, and running the same command again finishes the job once.

The append is interrupted by a real SIGINT; the others in-process by a KeyboardInterrupt raised
where Ctrl-C would land (their progress callback, or the step after a commit)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, ev, event_rows, run_cli, snapshot

from toolkit.journal import Journal
from toolkit.journal.side_tables import read_table

FIXTURE = REPO / "tests" / "fixtures" / "demo-journal"
SUBJECT = "user-0011"


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    path = tmp_path / "j"
    shutil.copytree(FIXTURE, path)
    return path


def ctrl_c(*_: Any, **__: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def interrupting_progress_bar(label: str, total: int | None) -> Iterator[Callable[..., None]]:
    yield ctrl_c  # the first time the command reports progress, the user presses Ctrl-C


def assert_aborted_with_hint(command: str, code: int, err: str) -> None:
    """Exit 1 (click's abort), ``Aborted.``, then the command's Hint as the last line."""
    lines = err.strip().splitlines()
    assert code == 1, err
    assert lines[-2:-1] == ["Aborted."] and lines[-1].startswith("Hint: "), err
    assert lines[-1] == f"Hint: {getattr(importlib.import_module(f'toolkit.cli.cmd_{command}'), 'INTERRUPTED', None)}"
    assert "Traceback" not in err


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def test_append_interrupted_by_sigint_wrote_nothing_and_says_so(tmp_path: Path) -> None:
    """A real Ctrl-C: SIGINT while journal append reads its input (a FIFO that stays open)."""
    journal = Journal.create(tmp_path / "j")
    before = snapshot(journal)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "append", "-j", str(journal.path), "-i", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with fifo.open("w") as writer:  # returns once journal append has opened it: it is running
        writer.write(json.dumps({"stream_id": "run-1", **ev("user_message")}) + "\n")
        writer.flush()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert out == ""
    assert_aborted_with_hint("append", proc.returncode, err)
    assert "all lines are one commit" in err and "without one would be added a second time" in err
    assert snapshot(journal) == before


def test_import_interrupted_after_its_commit_is_finished_by_a_rerun(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ctrl-C right after the events' commit, while the quarantined records are written: the events
    are in the journal; the same import again adds none of them twice and keeps the record."""
    source = tmp_path / "export.jsonl"
    lines = [json.dumps({"stream_id": f"run-{i % 2}", **ev("user_message", {"n": i})}) for i in range(5)]
    source.write_text("\n".join([*lines, "not json"]) + "\n")
    jpath = str(tmp_path / "j")
    argv = ("import", "-j", jpath, "--from", "jsonl", "--on-error", "quarantine", str(source))

    with monkeypatch.context() as m:
        m.setattr("toolkit.ingest.runner.append_rows", ctrl_c)
        code, out, err = run(capsys, *argv)
    assert_aborted_with_hint("import", code, err)
    assert "events already imported are skipped, not added twice" in err
    journal = Journal.open(jpath)
    assert len(event_rows(journal)) == 5 and read_table(journal, "quarantine").num_rows == 0

    code, out, err = run(capsys, *argv)
    summary = json.loads(out)
    assert (code, summary["imported"], summary["already_present"], summary["quarantined"]) == (0, 0, 5, 1), err
    assert len(event_rows(journal)) == 5 and read_table(journal, "quarantine").num_rows == 1


def test_compact_interrupted_between_partitions_keeps_every_event(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    journal = Journal.create(tmp_path / "j")
    for _ in range(2):  # two files in each of three partitions (days)
        journal.append_batch(
            [{"stream_id": f"run-{d}", **ev(occurred_at=f"2026-10-0{d}T12:00:00Z")} for d in (1, 2, 3)]
        )
    ids = sorted(r["event_id"] for r in event_rows(journal, ["event_id"]))
    assert len(journal.files()) == 6

    with monkeypatch.context() as m:
        m.setattr("toolkit.reports.progress.progress_bar", interrupting_progress_bar)
        code, _, err = run(capsys, "compact", "-j", str(journal.path))
    assert_aborted_with_hint("compact", code, err)
    journal = Journal.open(journal.path)
    assert len(journal.files()) == 5  # the first partition was compacted (its own commit), the others not
    assert sorted(r["event_id"] for r in event_rows(journal, ["event_id"])) == ids

    code, _, err = run(capsys, "compact", "-j", str(journal.path))
    journal = Journal.open(journal.path)
    assert code == 0 and len(journal.files()) == 3, err
    assert sorted(r["event_id"] for r in event_rows(journal, ["event_id"])) == ids
    assert run(capsys, "verify", "-j", str(journal.path))[0] == 0


def test_regrade_interrupted_while_judging_wrote_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, journal_dir: Path
) -> None:
    journal = Journal.open(journal_dir)
    before = snapshot(journal)
    with monkeypatch.context() as m:
        m.setattr("toolkit.reports.progress.progress_bar", interrupting_progress_bar)
        code, _, err = run(capsys, "regrade", "-j", str(journal_dir), "budget")
    assert_aborted_with_hint("regrade", code, err)
    assert read_table(journal, "findings").num_rows == 0 and read_table(journal, "regrades").num_rows == 0
    assert snapshot(journal) == before

    code, _, err = run(capsys, "regrade", "-j", str(journal_dir), "budget")
    assert code in (0, 3) and read_table(journal, "regrades").num_rows == 1, err


def test_purge_interrupted_before_its_commit_keeps_every_event_and_a_rerun_records_it_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, journal_dir: Path
) -> None:
    """Ctrl-C after the archive and the purge records, before the commit that removes the events."""
    journal = Journal.open(journal_dir)
    before = snapshot(journal)
    argv = ("purge", "-j", str(journal_dir), "--before", "2026-10-03", "--force")
    with monkeypatch.context() as m:
        m.setattr("toolkit.journal.retention.replace_partitions", ctrl_c)
        code, _, err = run(capsys, *argv)
    assert_aborted_with_hint("purge", code, err)
    assert "every event is still in the journal" in err
    assert snapshot(journal).rows == before.rows
    assert run(capsys, "verify", "-j", str(journal_dir))[0] == 0

    code, out, err = run(capsys, *argv)
    assert code == 0, err
    purge_id = json.loads(out)["purge_id"]
    purges = read_table(journal, "purges")
    assert set(purges.column("purge_id").to_pylist()) == {purge_id}  # the unfinished one rolled back
    removed = sum(purges.column("removed_events").to_pylist())
    assert removed > 0 and snapshot(journal).rows == before.rows - removed
    assert [p.name for p in (journal_dir / "purge-archives").iterdir()] == [f"{purge_id}.parquet"]
    assert run(capsys, "verify", "-j", str(journal_dir))[0] == 0


def test_archive_interrupted_after_its_tombstone_is_resumed_by_a_rerun(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, journal_dir: Path, tmp_path: Path
) -> None:
    stream = "run-7-0000001"
    out_file = tmp_path / "out" / f"{stream}.parquet"
    argv = ("archive", "-j", str(journal_dir), stream, "-o", str(out_file), "--delete")
    journal = Journal.open(journal_dir)
    events = journal.read_stream(stream).num_rows
    with monkeypatch.context() as m:
        m.setattr("toolkit.reports.archive.announce_archive", ctrl_c)  # after the tombstone's commit
        code, _, err = run(capsys, *argv)
    assert_aborted_with_hint("archive", code, err)
    types = Journal.open(journal_dir).read_stream(stream, ["event_type"]).column("event_type").to_pylist()
    assert len(types) == events + 1 and types[-1] == "stream_archived" and not out_file.exists()

    code, out, err = run(capsys, *argv)
    assert code == 0, err
    result = json.loads(out)
    assert (result["events"], result["deleted"]) == (events + 1, events)
    types = Journal.open(journal_dir).read_stream(stream, ["event_type"]).column("event_type").to_pylist()
    assert types == ["stream_archived"] and out_file.is_file()  # one tombstone, not two
    assert run(capsys, "verify", "-j", str(journal_dir))[0] == 0


def test_redact_interrupted_before_its_commit_is_finished_by_a_rerun(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, journal_dir: Path
) -> None:
    """Ctrl-C after the redaction record, before the commit that replaces the payloads."""
    argv = ("redact", "-j", str(journal_dir), "--subject", SUBJECT)

    def payloads() -> list[str]:
        rows = event_rows(Journal.open(journal_dir), ["subject_id", "data"])
        return [r["data"] for r in rows if r["subject_id"] == SUBJECT]

    old = payloads()
    with monkeypatch.context() as m:
        m.setattr("toolkit.journal.redaction.replace_partitions", ctrl_c)
        code, _, err = run(capsys, *argv)
    assert_aborted_with_hint("redact", code, err)
    assert payloads() == old and not any('"redacted"' in p for p in old)
    assert run(capsys, "verify", "-j", str(journal_dir))[0] == 0

    code, out, err = run(capsys, *argv)
    assert code == 0, err
    marker = json.dumps({"redacted": json.loads(out)["redaction_id"]}, separators=(",", ":"))
    assert payloads() == [marker] * len(old)
    assert run(capsys, "verify", "-j", str(journal_dir))[0] == 0


def test_import_interrupted_while_saving_rule_keys_reports_its_import_and_says_it_is_done(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ctrl-C after the commit, while the rule keys of a large journal are saved: the summary of the
    import is out already, the Hint says the events are in, and nothing of the keys is left."""
    from toolkit.analysis import rule_keys

    source = tmp_path / "export.jsonl"
    lines = [json.dumps({"stream_id": f"run-{i % 2}", **ev("user_message", {"n": i})}) for i in range(5)]
    source.write_text("\n".join(lines) + "\n")
    jpath = tmp_path / "j"
    monkeypatch.setattr(rule_keys, "KEYS_AT_IMPORT", 1)  # "large"
    with monkeypatch.context() as m:
        m.setattr(rule_keys, "save_frame", ctrl_c)
        code, out, err = run(capsys, "import", "-j", str(jpath), "--from", "jsonl", str(source))
    assert_aborted_with_hint("import", code, err)
    assert json.loads(out)["imported"] == 5
    assert "while saving the rule keys, the import is complete" in err
    journal = Journal.open(jpath)
    assert len(event_rows(journal)) == 5 and rule_keys.saved_folder(journal) is None
    code, out, err = run(capsys, "regrade", "-j", str(jpath), "all")  # as the Hint says: it saves them
    assert code in (0, 3), err
    assert rule_keys.saved_folder(journal) is not None
