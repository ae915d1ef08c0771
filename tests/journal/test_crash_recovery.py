"""A writer killed with SIGKILL mid-commit leaves only whole commits; rerunning finishes the work; vacuum cleans up."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from helpers import assert_stream_keys_sound, event_rows, parquet_on_disk, run, spawn

from toolkit.errors import InvalidPathError
from toolkit.journal import Journal
from toolkit.journal.integrity import verify_journal
from toolkit.journal.maintenance import vacuum

COMMITS = 6
ROWS = 10_000


def _uncommitted_parts(journal_path: Path) -> list[str]:
    """Data files that no commit of the Delta log names (yet)."""
    log = "".join(p.read_text() for p in sorted((journal_path / "events" / "_delta_log").glob("*.json")))
    return [p.name for p in (journal_path / "events").rglob("*.parquet") if p.name not in log]


def _commits(journal_path: Path) -> int:
    return len(list((journal_path / "events" / "_delta_log").glob("*.json"))) - 1  # 0 is the table's creation


def _kill_mid_write(journal: Journal, workers: int = 0) -> int:
    """Run the work in a process and SIGKILL it while a commit's files are on disk but uncommitted.

    ``workers`` > 0: the process hashes and writes each append in parts, with that many worker
    processes; they must notice the kill, delete what they were writing and exit.
    """
    proc = spawn("crash_work", journal.path, COMMITS, ROWS, workers)
    pids: list[int] = []
    if workers:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "workers", first
        pids = [int(p) for p in first[1:]]
    deadline = time.monotonic() + 60
    try:
        while True:
            if _commits(journal.path) >= 1 and _uncommitted_parts(journal.path):
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert proc.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline, "no commit appeared in time"
            time.sleep(0.001)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    while any(Path(f"/proc/{pid}").exists() and _running(pid) for pid in pids):
        assert time.monotonic() < deadline + 30, f"append workers {pids} outlived their parent"
        time.sleep(0.01)
    return proc.returncode


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan is reaped by init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-processes"])
def test_sigkill_mid_append_leaves_whole_commits_and_rerun_completes(journal: Journal, workers: int) -> None:
    assert _kill_mid_write(journal, workers) == -signal.SIGKILL  # it saw uncommitted parts on disk
    orphans = _uncommitted_parts(journal.path)
    # in one process the parts stay behind; worker processes delete what they were writing when
    # their parent dies, so whether any part is left depends on when the kill came (it failed in CI)
    assert orphans or workers, "the kill should have left parts of the interrupted commit behind"

    # reopened: readable, verified, and holding exactly the first k commits, each whole
    after_kill = Journal.open(journal.path)
    report = verify_journal(after_kill)
    assert report.ok, report.breaks
    rows = event_rows(after_kill, ["stream_id", "version", "position", "event_id"])
    assert len(rows) % ROWS == 0
    done = len(rows) // ROWS
    assert 1 <= done < COMMITS
    assert {r["event_id"] for r in rows} == {f"c{c}-e{i}" for c in range(done) for i in range(ROWS)}
    assert_stream_keys_sound(rows)
    active = set(after_kill.file_paths())
    assert not {str(p) for p in (journal.path / "events").rglob("*.parquet") if p.name in orphans} & active

    # the same work again: committed batches are skipped, the rest appended, no duplicates
    out = run("crash_work", journal.path, COMMITS, ROWS, workers)
    lines = [line.split() for line in out.splitlines() if not line.startswith("workers")]
    assert [(int(c), int(a), int(s)) for c, a, s in lines] == [
        (c, 0 if c < done else ROWS, ROWS if c < done else 0) for c in range(COMMITS)
    ]
    final = Journal.open(journal.path)
    rows = event_rows(final, ["stream_id", "version", "position", "event_id"])
    assert len(rows) == COMMITS * ROWS
    assert_stream_keys_sound(rows)
    assert sorted(r["position"] for r in rows) == list(range(1, COMMITS * ROWS + 1))
    assert verify_journal(final).ok

    # vacuum removes the killed writer's parts and nothing the journal uses
    with pytest.raises(InvalidPathError):
        vacuum(final, retain_hours=0)  # below the retention guard without force
    deleted = vacuum(final, retain_hours=0, force=True)
    assert {Path(d).name for d in deleted} >= set(orphans)
    assert parquet_on_disk(final) == set(final.file_paths())
    report = verify_journal(final)
    assert report.ok and report.events == COMMITS * ROWS


@pytest.mark.parametrize("then", ["exit", "sigkill"])
def test_append_workers_end_with_their_process_though_it_forked(journal: Journal, then: str) -> None:
    """A child forked after a large append does not own the append workers: they end when the
    process that started them exits (at once) or is killed, while the child lives on."""
    proc = spawn("fork_after_append", journal.path, "exit" if then == "exit" else "wait")
    assert proc.stdout is not None
    *workers, child = map(int, proc.stdout.readline().split())
    try:
        started = time.monotonic()
        if then == "sigkill":
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert time.monotonic() - started < 5, "the process waited for its workers at exit"
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, f"append workers {workers} outlived their process"
            time.sleep(0.01)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
