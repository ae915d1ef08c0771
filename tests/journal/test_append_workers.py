"""Large appends hashed and written in parts by worker processes: the same journal as in one process."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from helpers import assert_stream_keys_sound, event_rows, lock_held_by_another_thread, parquet_on_disk, snapshot

from toolkit import allocators
from toolkit.errors import EventValidationError, LockReentryError, LockTimeoutError
from toolkit.journal import Journal, appendworkers, store
from toolkit.journal.appendworkers import AppendWorkerError, AppendWorkers, FileLayout, pool, split_by_stream
from toolkit.journal.integrity import verify_journal
from toolkit.journal.prepare import validate_table

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 1, tzinfo=UTC)


def batch(seed: int, rows: int, streams: list[str], types: dict[str, str] | None = None) -> pa.Table:
    """``rows`` events spread at random over ``streams`` (interleaved), some with nulls and separators."""
    rng = random.Random(seed)
    sids = [rng.choice(streams) for _ in range(rows)]
    types = types or {}
    return pa.table(
        {
            "stream_id": sids,
            "stream_type": [types.get(s, "run") for s in sids],
            "event_type": [rng.choice(["tool_called", "tool_result", "llm_response"]) for _ in range(rows)],
            "event_id": [f"b{seed}-{i}" for i in range(rows)],
            "occurred_at": pa.array(
                [T0 + dt.timedelta(hours=rng.randrange(72), microseconds=i) for i in range(rows)],
                pa.timestamp("us", tz="UTC"),
            ),
            "model": [rng.choice([None, "m1", "m\x1f2"]) for _ in range(rows)],
            "tokens_in": [rng.choice([None, rng.randrange(10_000)]) for _ in range(rows)],
            "duration_ms": [rng.choice([None, rng.random() * 100]) for _ in range(rows)],
            "data": [f'{{"i":{i},"s":{seed}}}' for i in range(rows)],
        }
    )


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every append records the same time, so two journals of the same batches hash alike."""
    monkeypatch.setattr(store, "_now", lambda: dt.datetime(2026, 11, 20, 12, tzinfo=UTC))


def parallel(journal: Journal, workers: int = 1) -> Journal:
    journal.append_workers, journal.parallel_append_rows = workers, 1
    return journal


def committed_only(journal: Journal, events: pa.Table) -> Journal:
    """A fresh view of ``journal``, checked to hold exactly ``events``' events, no file its log does
    not list, and whole hash chains."""
    fresh = Journal.open(journal.path)
    held = fresh.read_all(["event_id"]).column("event_id").to_pylist()
    assert sorted(held) == sorted(events.column("event_id").to_pylist())
    assert parquet_on_disk(journal) == {str(journal.path / "events" / f.path) for f in fresh.files()}
    assert verify_journal(fresh).ok
    return fresh


@pytest.fixture
def two(tmp_path: Path, fixed_clock: None) -> Iterator[tuple[Journal, Journal]]:
    """The same empty journal twice: in one process only, and with worker processes."""
    alone = Journal.create(tmp_path / "alone")
    alone.append_workers = 0
    with_workers = parallel(Journal.create(tmp_path / "workers"))
    yield alone, with_workers
    alone.close()
    with_workers.close()


def test_split_by_stream_gives_whole_streams_in_ranges_of_ids_keeping_row_order() -> None:
    t = batch(1, 5_000, [f"s{i:02d}" for i in range(30)]).append_column("n", pa.array(range(5_000)))
    parts = split_by_stream(t, 3)
    assert len(parts) == 3 and sum(p.num_rows for p in parts) == t.num_rows
    ids = [set(p.column("stream_id").to_pylist()) for p in parts]
    assert all(max(a) < min(b) for a, b in itertools.pairwise(ids))  # disjoint, ascending ranges
    assert all(abs(p.num_rows - t.num_rows / 3) < t.num_rows / 6 for p in parts)
    for p in parts:  # the caller's order inside each part
        n = p.column("n").to_pylist()
        assert n == sorted(n)
    one = split_by_stream(batch(2, 100, ["only"]), 2)
    assert len(one) == 1 and one[0].num_rows == 100
    sorted_rows = t.sort_by("stream_id")  # streams in runs: the parts are slices
    assert pa.concat_tables(split_by_stream(sorted_rows, 2)).equals(sorted_rows)


@pytest.mark.parametrize("workers", [1, 2])
def test_parts_written_by_workers_are_the_rows_and_hashes_of_one_process(
    two: tuple[Journal, Journal], workers: int
) -> None:
    alone, with_workers = two
    with_workers.append_workers = workers
    streams = [f"run-{i:03d}" for i in range(40)]
    batches = [batch(1, 3_000, streams[:25]), batch(2, 2_000, streams), batch(3, 4_000, streams[10:])]
    for b in batches:  # later batches continue chains the workers did not start
        ra, rw = alone.append_batch(b), with_workers.append_batch(b)
        assert (ra.appended, ra.first_position, ra.last_position, ra.heads) == (
            rw.appended,
            rw.first_position,
            rw.last_position,
            rw.heads,
        )
    a, w = Journal.open(alone.path).read_all(), Journal.open(with_workers.path).read_all()
    assert a.num_rows == 9_000 and a.equals(w)
    assert verify_journal(Journal.open(with_workers.path)).ok
    # the heads the writer kept are those a fresh reader finds
    fresh = Journal.open(with_workers.path).heads()
    kept = with_workers.heads()
    assert {s: (h.version, h.first_day, h.last_day) for s, h in fresh.items()} == {
        s: (h.version, h.first_day, h.last_day) for s, h in kept.items()
    }
    assert all(kept[s].hash == a.filter(pa.compute.equal(a["stream_id"], s))["hash"][-1].as_py() for s in kept)
    # an idempotent re-append of everything writes nothing
    for b in batches:
        assert with_workers.append_batch(b).skipped == b.num_rows


def test_files_of_a_part_hold_only_its_streams(two: tuple[Journal, Journal]) -> None:
    _, with_workers = two
    with_workers.append_batch(batch(1, 6_000, [f"r{i:02d}" for i in range(20)]))
    files = with_workers.files()
    # each part's files cover its own range of stream ids: reads prune by them
    ranges = {(f.min_stream_id, f.max_stream_id) for f in files}
    assert len(ranges) == 2 and max(lo for lo, _ in ranges) > min(hi for _, hi in ranges)
    assert sum(f.rows for f in files) == 6_000


def _block(journal: Journal, stream_type: str) -> Path:
    """A regular file where the partition folder of ``stream_type`` must go: writing there fails."""
    blocker = journal.path / "events" / f"stream_type={stream_type}"
    blocker.write_text("not a folder")
    return blocker


@pytest.mark.parametrize("failing", ["worker", "this process"])
def test_a_failure_in_any_part_writes_nothing_and_raises_the_cause(journal: Journal, failing: str) -> None:
    parallel(journal)
    journal.append("before", [{"event_type": "x", "data": {}}])
    before = snapshot(journal)
    # the lowest stream ids are in this process's part, the highest in the worker's
    streams = [f"s-{i:02d}" for i in range(20)]
    types = {streams[0]: "early", streams[-1]: "late"}
    b = batch(1, 4_000, streams, types)
    blocker = _block(journal, "late" if failing == "worker" else "early")
    with pytest.raises(OSError) as caught:
        journal.append_batch(b)
    assert any("append worker process" in n for n in getattr(caught.value, "__notes__", [])) == (failing == "worker")
    blocker.unlink()
    assert snapshot(journal) == before  # no commit, and no file of either part left behind
    # the journal is whole and the same append now goes through
    again = Journal.open(journal.path)
    assert verify_journal(again).ok and again.stream_version("before") == 1
    parallel(again)
    assert again.append_batch(b).appended == 4_000
    rows = event_rows(again, ["stream_id", "version", "position", "event_id"])
    assert len(rows) == 4_001
    assert_stream_keys_sound(rows)
    assert verify_journal(again).ok


def test_a_worker_that_dies_is_reported_and_replaced(journal: Journal) -> None:
    workers = AppendWorkers()
    try:
        workers.start(1)
        part = batch(1, 10, ["s"])
        layout = FileLayout(str(journal.path / "events"), ("stream_type", "day"), (), 8192)
        (pid,) = workers.pids()
        workers._workers[0].proc.kill()
        workers._workers[0].proc.wait()
        with pytest.raises(AppendWorkerError, match=f"append worker \\(pid {pid}\\) exited"):
            workers.submit(0, part, {}, layout)
        workers.start(1)
        assert workers.pids() != [pid]
    finally:
        workers.close()
    # the process's own pool starts a new worker when its worker died between appends
    parallel(journal)
    journal.append_batch(batch(1, 1_000, ["a", "b", "c", "d"]))
    for w in pool()._workers:
        w.proc.kill()
        w.proc.wait()
    assert journal.append_batch(batch(2, 1_000, ["a", "b", "c", "d"])).appended == 1_000
    assert verify_journal(Journal.open(journal.path)).ok


def test_small_appends_and_a_busy_pool_stay_in_this_process(journal: Journal) -> None:
    journal.append_workers = 1
    journal.parallel_append_rows = 500
    workers = pool()
    assert workers.try_acquire()  # another thread is appending with the workers
    try:
        r = journal.append_batch(batch(1, 2_000, ["a", "b", "c", "d"]))
    finally:
        workers.release()
    assert r.appended == 2_000
    assert len({(f.min_stream_id, f.max_stream_id) for f in journal.files()}) == 1  # one part
    heads = pl.DataFrame([(s, h.version) for s, h in journal.heads().items()], schema=["s", "v"], orient="row").sort(
        "s"
    )
    assert heads.get_column("v").sum() == 2_000


def test_an_interrupt_while_handing_over_a_later_part_leaves_no_answer_for_the_next_append(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the second part is handed over: the first worker's answer is still read (and its
    files deleted), so the next append does not take that stale answer for its own."""
    parallel(journal, 2)
    journal.append("before", [{"event_type": "x", "data": {}}])
    before = snapshot(journal)
    submit = AppendWorkers.submit

    def interrupted(self: AppendWorkers, index: int, *args: Any) -> Any:
        if index == 1:
            raise KeyboardInterrupt  # as if Ctrl-C came while the part was written to its memfd
        return submit(self, index, *args)

    streams = [f"s-{i:02d}" for i in range(30)]
    monkeypatch.setattr(AppendWorkers, "submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        journal.append_batch(batch(1, 6_000, streams))
    monkeypatch.setattr(AppendWorkers, "submit", submit)
    assert snapshot(journal) == before  # no commit, and the first worker's files are gone
    assert journal.append_batch(batch(2, 6_000, streams)).appended == 6_000
    rows = event_rows(journal, ["stream_id", "version", "position", "event_id"])
    assert sorted(r["event_id"] for r in rows if r["stream_id"] != "before") == sorted(f"b2-{i}" for i in range(6_000))
    assert_stream_keys_sound(rows)
    assert verify_journal(Journal.open(journal.path)).ok


def test_a_worker_whose_answer_was_never_read_is_not_reused(journal: Journal) -> None:
    workers = AppendWorkers()
    layout = FileLayout(str(journal.path / "events"), ("stream_type", "day"), (), 8192)
    try:
        workers.start(1)
        workers.submit(0, journal_rows(journal, "old"), {}, layout)  # its answer is never read
        workers.start(1)
        actions, heads = workers.submit(0, journal_rows(journal, "new"), {}, layout).result()
        assert heads.get_column("stream_id").to_list() == ["new"]
        layout.remove(actions)
    finally:
        workers.close()


def journal_rows(journal: Journal, stream_id: str) -> pa.Table:
    """Ten numbered rows of a new stream, as ``_write`` hands them to ``write_part``."""
    from toolkit.journal.assign import number
    from toolkit.journal.prepare import validate_table

    table = validate_table(batch(1, 10, [stream_id]))
    table = table.append_column("_idx", pa.array(range(10), pa.int64()))
    return number(table, {}, None, 0, T0)[0]


@pytest.mark.parametrize("shadow", ["toolkit/__init__.py", "queue.py"])
def test_workers_import_this_toolkit_whatever_the_working_directory_holds(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shadow: str
) -> None:
    """Run from a checkout of another project (its own ``toolkit`` package, a ``queue.py``): the
    workers still run the code of the appending process."""
    cwd = tmp_path / "elsewhere"
    (cwd / shadow).parent.mkdir(parents=True)
    (cwd / shadow).write_text("raise ImportError('not the toolkit the appending process runs')\n")
    monkeypatch.chdir(cwd)
    pool().close()  # workers start from this directory
    parallel(journal)
    assert journal.append_batch(batch(1, 2_000, [f"s{i}" for i in range(8)])).appended == 2_000
    assert len({(f.min_stream_id, f.max_stream_id) for f in journal.files()}) == 2  # a worker wrote a part
    pool().close()


@pytest.mark.parametrize("executable", ["", "missing-python"])
def test_appends_stay_in_this_process_when_no_worker_can_start(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    """An embedding interpreter without a usable ``sys.executable``: large appends still go through."""
    pool().close()
    monkeypatch.setattr("sys.executable", str(tmp_path / executable) if executable else "")
    parallel(journal)
    assert journal.append_batch(batch(1, 2_000, [f"s{i}" for i in range(8)])).appended == 2_000
    assert journal.append_validated(validate_table(batch(2, 2_000, ["t"]))).appended == 2_000
    assert verify_journal(Journal.open(journal.path)).ok


def test_text_printed_while_a_worker_starts_does_not_garble_its_answers(
    journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``sitecustomize`` (or a module's import) that prints: the answers stay readable."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("print('welcome to the cluster')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    pool().close()  # workers start with this environment
    parallel(journal)
    assert journal.append_batch(batch(1, 2_000, [f"s{i}" for i in range(8)])).appended == 2_000
    assert len({(f.min_stream_id, f.max_stream_id) for f in journal.files()}) == 2  # a worker wrote a part
    pool().close()


def test_a_starting_worker_gets_a_smaller_share_until_it_has_said_it_is_ready(journal: Journal) -> None:
    pool().close()
    parallel(journal)
    streams = [f"s{i}" for i in range(8)]
    # handed a part while it is still importing: its start-up message comes before its answer
    assert journal.append_batch(batch(1, 2_000, streams)).appended == 2_000
    workers = pool()
    assert workers.try_acquire()
    try:
        workers.start(1)
        deadline = time.monotonic() + 60
        while (share := workers.first_share(1)) is not None:  # the message arrives once its code is imported
            assert share == pytest.approx(appendworkers.STARTING_SHARE)
            assert time.monotonic() < deadline, "the worker never said it was ready"
            time.sleep(0.05)
    finally:
        workers.release()
    pool().close()
    workers = pool()
    assert workers.try_acquire()
    try:
        workers.start(1)
        assert workers.first_share(1) == pytest.approx(appendworkers.STARTING_SHARE)  # just spawned
        while workers.first_share(1) is not None:
            time.sleep(0.05)
    finally:
        workers.release()
    # ready, and the message read: the next answer is the part's
    assert journal.append_batch(batch(2, 2_000, streams)).appended == 2_000
    # the first append gave this process ≈ 70 % of the rows (s0-s5), the second half of them (s0-s3)
    ranges = {(f.min_stream_id, f.max_stream_id) for f in journal.files()}
    assert ranges == {("s0", "s5"), ("s6", "s7"), ("s0", "s3"), ("s4", "s7")}
    assert_stream_keys_sound(event_rows(journal))
    assert verify_journal(Journal.open(journal.path)).ok


def test_a_worker_idle_past_its_memory_release_still_answers(journal: Journal) -> None:
    pool().close()  # one worker of its own (a test before may have left two)
    parallel(journal)
    assert journal.append_batch(batch(1, 1_000, ["a", "b", "c", "d"])).appended == 1_000
    (pid,) = pool().pids()
    time.sleep(appendworkers.IDLE_RELEASE_S + 0.5)  # it gave its free memory back meanwhile
    assert journal.append_batch(batch(2, 1_000, ["a", "b", "c", "d"])).appended == 1_000
    assert pool().pids() == [pid]  # the same worker answered
    assert verify_journal(Journal.open(journal.path)).ok


def test_workers_run_with_the_allocator_settings_and_toolkit_sets_them_on_import(journal: Journal) -> None:
    pool().close()  # one worker of its own (a test before may have left two)
    parallel(journal)
    journal.append_batch(batch(1, 1_000, ["a", "b", "c", "d"]))
    (pid,) = pool().pids()
    env = dict(
        line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line
    )
    # Polars puts its own defaults in front of a jemalloc configuration; the last setting wins
    assert env["_RJEM_MALLOC_CONF"].endswith(allocators.WORKER_ENV["_RJEM_MALLOC_CONF"])
    assert {k: env.get(k) for k in allocators.WORKER_ENV if k != "_RJEM_MALLOC_CONF"} == {
        k: v for k, v in allocators.WORKER_ENV.items() if k != "_RJEM_MALLOC_CONF"
    }
    code = "import os, toolkit; print(os.environ['_RJEM_MALLOC_CONF'], os.environ['MIMALLOC_PURGE_DELAY'])"
    clean = {k: v for k, v in os.environ.items() if k not in allocators.RUNTIME_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [allocators.RUNTIME_ENV[k] for k in ("_RJEM_MALLOC_CONF", "MIMALLOC_PURGE_DELAY")]
    mine = {**clean, "MIMALLOC_PURGE_DELAY": "5"}  # a value the user set wins
    out = subprocess.run([sys.executable, "-c", code], env=mine, capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "5"


# ---------------------------------------------------------------------- append_batches (pipelined)


def _results(results: list[store.AppendResult]) -> list[tuple[Any, ...]]:
    return [(r.appended, r.skipped, r.first_position, r.last_position, r.heads) for r in results]


@pytest.mark.parametrize("workers", [0, 1])
def test_append_batches_writes_the_journal_a_loop_of_append_batch_writes(
    two: tuple[Journal, Journal], workers: int
) -> None:
    loop, pipelined = two
    pipelined.append_workers = workers
    streams = [f"run-{i:03d}" for i in range(40)]
    batches = [
        batch(1, 3_000, streams[:20]),
        batch(2, 2_000, streams[20:30]),  # streams the batch before does not touch: numbered while it is written
        batch(3, 2_500, streams[25:]),  # continues streams of the batch before: waits for its commit
        batch(1, 3_000, streams[:20]),  # all already there: skipped
        batch(4, 0, streams),  # empty
        batch(5, 1_500, streams[:5]),
    ]
    expected = [loop.append_batch(b) for b in batches]
    got = pipelined.append_batches(iter(batches))
    assert _results(got) == _results(expected)
    assert [r.delta_version for r in got] == [r.delta_version for r in expected]
    a, p = Journal.open(loop.path).read_all(), Journal.open(pipelined.path).read_all()
    assert a.num_rows == 9_000 and a.equals(p)
    assert verify_journal(Journal.open(pipelined.path)).ok
    assert pipelined.append_batches(batches)[0].skipped == 3_000  # idempotent again


def test_append_batches_stops_at_a_bad_batch_after_committing_those_before(journal: Journal) -> None:
    parallel(journal)
    streams = [f"s{i:02d}" for i in range(10)]
    bad = batch(3, 1_000, streams).set_column(8, "data", pa.array(["{not json"] + ['{"i":1}'] * 999))
    good = [batch(1, 1_000, streams[:5]), batch(2, 1_000, streams[5:])]
    with pytest.raises(EventValidationError) as caught:
        journal.append_batches([*good, bad, batch(4, 1_000, streams)])
    assert (caught.value.context["field"], caught.value.context["index"]) == ("data", 0)
    fresh = Journal.open(journal.path)
    assert fresh.read_all(["event_id"]).num_rows == 2_000 and verify_journal(fresh).ok
    assert fresh.delta_version == 2  # create, then one commit per good batch
    # the rerun finishes the job: the committed batches are skipped, nothing is doubled
    fixed = bad.set_column(8, "data", pa.array(['{"i":0}'] * 1_000))
    results = Journal.open(journal.path).append_batches([*good, fixed, batch(4, 1_000, streams)])
    assert [r.skipped for r in results] == [1_000, 1_000, 0, 0]
    rows = event_rows(journal, ["stream_id", "version", "position", "event_id"])
    assert len(rows) == 4_000
    assert_stream_keys_sound(rows)


def test_append_batches_whose_write_fails_commits_neither_it_nor_the_next(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    parallel(journal)
    streams = [f"s{i:02d}" for i in range(10)]
    first, second, third = batch(1, 1_000, streams[:3]), batch(2, 1_000, streams[3:6]), batch(3, 1_000, streams[6:])
    journal.append_batches([first])
    before = snapshot(journal)
    real = store.write_part
    calls = []

    def failing(numbered: pa.Table, *args: Any, **kwargs: Any) -> Any:
        calls.append(numbered.num_rows)
        if len(calls) == 1:
            raise MemoryError("the disk controller caught fire")
        return real(numbered, *args, **kwargs)

    journal.append_workers = 0  # every part in this process, through write_part
    monkeypatch.setattr(store, "write_part", failing)
    with pytest.raises(MemoryError, match="caught fire"):
        journal.append_batches([second, third])  # the third was numbered while the second was written
    monkeypatch.undo()
    assert snapshot(journal) == before
    again = Journal.open(journal.path)
    assert [r.appended for r in again.append_batches([first, second, third])] == [0, 1_000, 1_000]
    assert verify_journal(Journal.open(journal.path)).ok


def test_append_batches_hands_out_the_next_batch_before_the_one_before_is_committed(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches in flight: the workers go on to the next batch's part while this process still
    writes its part of the batch before (no core waits for the other at each commit)."""
    parallel(journal)
    order: list[str] = []
    hand_out, commit = store.hand_out, Journal._commit_actions

    def handing_out(workers: AppendWorkers, count: int, numbered: pa.Table, *args: Any) -> Any:
        order.append(f"hand out {numbered.column('event_id')[0].as_py().split('-')[0]}")
        return hand_out(workers, count, numbered, *args)

    def committing(self: Journal, actions: Any, properties: Any) -> None:
        order.append(f"commit {len(order)}")
        commit(self, actions, properties)

    monkeypatch.setattr(store, "hand_out", handing_out)
    monkeypatch.setattr(Journal, "_commit_actions", committing)
    streams = [f"s{i:02d}" for i in range(30)]
    batches = [batch(1, 1_000, streams[:10]), batch(2, 1_000, streams[10:20]), batch(3, 1_000, streams[20:])]
    journal.append_batches(batches)
    assert [o.split()[0] for o in order] == ["hand", "hand", "commit", "hand", "commit", "commit"]
    assert [o for o in order if o.startswith("hand")] == ["hand out b1", "hand out b2", "hand out b3"]
    rows = event_rows(journal, ["stream_id", "version", "position", "event_id"])
    assert [r["event_id"].split("-")[0] for r in rows] == ["b1"] * 1_000 + ["b2"] * 1_000 + ["b3"] * 1_000
    assert_stream_keys_sound(rows)
    assert verify_journal(Journal.open(journal.path)).ok


def test_parts_reuse_the_memory_they_are_handed_over_in_and_give_it_back_after_the_append(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch's part goes to the worker through one of at most two memfds (two batches in flight), the
    later ones shorter than what the memfd held before; the append gives them back at its end."""
    parallel(journal)
    made: list[int] = []
    new_shared = AppendWorkers._new_shared

    def counting(self: AppendWorkers) -> Any:
        made.append(1)
        return new_shared(self)

    monkeypatch.setattr(AppendWorkers, "_new_shared", counting)
    streams = [f"s{i:02d}" for i in range(60)]
    sizes = [4_000, 3_000, 2_000, 1_000, 500, 250]
    batches = [batch(k, n, streams[10 * k : 10 * k + 10]) for k, n in enumerate(sizes)]
    journal.append_batches(batches)
    assert 1 <= len(made) <= 2 and pool()._shared == []  # one when a part was answered before the next came
    rows = event_rows(journal, ["stream_id", "version", "position", "event_id"])
    assert [r["event_id"] for r in rows] == [f"b{k}-{i}" for k, n in enumerate(sizes) for i in range(n)]
    assert_stream_keys_sound(rows)
    assert verify_journal(Journal.open(journal.path)).ok


def test_a_hand_out_failing_midway_leaves_the_batch_before_its_own_worker_answers(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second batch's hand-out fails at its second worker (Ctrl-C) after the first worker took
    its part, while the first batch (two streams: this process and the first worker only) is still
    written here: the first worker's answer to the first batch is the first batch's (read for the
    part handed out after it, that batch was committed with the second batch's rows instead)."""
    parallel(journal, workers=2)
    pool().start(2)
    deadline = time.monotonic() + 30
    while not all(w.started() for w in pool()._workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = batch(1, 2_000, ["a0", "a1"])
    second = batch(2, 3_000, [f"b{i:02d}" for i in range(30)])
    write, submit = store.write_part, AppendWorkers.submit
    handed: list[int] = []

    def slow_first_batch(numbered: pa.Table, *args: Any, **kwargs: Any) -> Any:
        if numbered.column("event_id")[0].as_py().startswith("b1-"):
            time.sleep(1)  # the first batch's worker part is answered meanwhile, and not yet read
        return write(numbered, *args, **kwargs)

    def interrupted(self: AppendWorkers, index: int, part: pa.Table, *args: Any) -> Any:
        handed.append(index)
        if len(handed) == 3:  # the second batch's part for the second worker
            time.sleep(0.3)
            raise KeyboardInterrupt
        return submit(self, index, part, *args)

    monkeypatch.setattr(store, "write_part", slow_first_batch)
    monkeypatch.setattr(AppendWorkers, "submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        journal.append_batches([first, second])
    assert handed == [0, 0, 1]
    committed_only(journal, first)
    monkeypatch.undo()
    try:
        results = parallel(Journal.open(journal.path), workers=2).append_batches([first, second])
    finally:
        pool().close()  # the tests after this one count on one worker
    assert [(r.appended, r.skipped) for r in results] == [(0, 2_000), (3_000, 0)]
    assert verify_journal(Journal.open(journal.path)).ok


@pytest.mark.skipif(not appendworkers._memfds(), reason="parts go over in temporary files here")
def test_ctrl_c_while_a_part_is_copied_out_commits_the_batch_before_with_the_same_worker(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the second batch's part is copied into shared memory, before the worker was
    asked anything: it still owes the first batch's part, which is committed (killed, the worker
    took that batch down with it, and the error raised was its exit, not the Ctrl-C)."""
    parallel(journal)
    write = appendworkers._Shared.write
    writes: list[int] = []

    def interrupted(self: Any, part: pa.Table) -> None:
        writes.append(part.num_rows)
        if len(writes) == 2:
            raise KeyboardInterrupt
        write(self, part)

    monkeypatch.setattr(appendworkers._Shared, "write", interrupted)
    first, second = batch(1, 3_000, [f"a{i:02d}" for i in range(10)]), batch(2, 3_000, [f"b{i:02d}" for i in range(10)])
    with pytest.raises(KeyboardInterrupt):
        journal.append_batches([first, second])
    assert len(writes) == 2
    assert pool()._workers and all(w.usable for w in pool()._workers)  # none was killed
    fresh = committed_only(journal, first)
    monkeypatch.undo()
    results = parallel(fresh).append_batches([first, second])
    assert [(r.appended, r.skipped) for r in results] == [(0, 3_000), (3_000, 0)]


@pytest.mark.parametrize("thread", ["journal-append_", "journal-append-parts_"])
def test_ctrl_c_while_a_thread_of_append_batches_starts_leaves_no_file(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, thread: str
) -> None:
    """Ctrl-C while ``submit`` waits for the writer's (or the gatherer's) thread to start: the job is
    queued already and runs; its files must not be left behind uncommitted (the future that
    would have committed or deleted them was never returned)."""
    parallel(journal)
    start = threading.Thread.start
    interrupted: list[str] = []

    def starting(self: threading.Thread) -> None:
        start(self)
        if self.name.startswith(thread) and not interrupted:
            interrupted.append(self.name)
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", starting)
    b = batch(1, 2_000, [f"s{i:02d}" for i in range(10)])
    with pytest.raises(KeyboardInterrupt):
        journal.append_batches([b])
    monkeypatch.undo()
    assert interrupted
    time.sleep(1)  # (a job left running would have written its files by now)
    fresh = Journal.open(journal.path)
    assert parquet_on_disk(journal) == {str(journal.path / "events" / f.path) for f in fresh.files()}
    assert verify_journal(fresh).ok
    parallel(fresh).append_batches([b])
    ids = Journal.open(journal.path).read_all(["event_id"]).column("event_id").to_pylist()
    assert sorted(ids) == sorted(b.column("event_id").to_pylist())


def test_a_failed_worker_part_commits_the_batches_before_and_none_written_after_it(journal: Journal) -> None:
    """The third batch is written (by both processes) while the second one's worker part fails: the
    first is committed, the second and third leave no file, and the worker serves the next append."""
    pool().close()  # one worker of its own (a test before may have left two)
    parallel(journal)
    streams = [f"s{i:02d}" for i in range(30)]
    late = {streams[19]: "late"}  # the highest id of the second batch: in the worker's part
    batches = [batch(1, 1_000, streams[:10]), batch(2, 1_000, streams[10:20], late), batch(3, 1_000, streams[20:])]
    blocker = _block(journal, "late")
    with pytest.raises(OSError) as caught:
        journal.append_batches(batches)
    assert any("append worker process" in n for n in getattr(caught.value, "__notes__", []))
    blocker.unlink()
    fresh = Journal.open(journal.path)
    assert {r["event_id"].split("-")[0] for r in fresh.read_all(["event_id"]).to_pylist()} == {"b1"}
    assert parquet_on_disk(journal) == {f.path for f in fresh.files()}  # no file of the second or third
    (pid,) = pool().pids()
    results = parallel(fresh).append_batches(batches)  # the rerun finishes the job, with the same worker
    assert [(r.appended, r.skipped) for r in results] == [(0, 1_000), (1_000, 0), (1_000, 0)]
    assert pool().pids() == [pid]
    rows = event_rows(journal, ["stream_id", "version", "position", "event_id"])
    assert len(rows) == 3_000
    assert_stream_keys_sound(rows)
    assert verify_journal(Journal.open(journal.path)).ok


def test_append_batches_raises_the_failed_write_of_the_batch_before_not_the_next_ones_bad_input(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = [f"s{i:02d}" for i in range(4)]
    first = batch(1, 1_000, streams)
    bad = batch(2, 1_000, streams).set_column(8, "data", pa.array(["{bad"] + ['{"i":1}'] * 999))
    before = snapshot(journal)

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    journal.append_workers = 0
    monkeypatch.setattr(store, "write_part", failing)
    # the second batch continues the first one's streams: it waits for that commit, which fails
    with pytest.raises(OSError, match="disk full"):
        journal.append_batches([first, bad])
    monkeypatch.undo()
    assert snapshot(journal) == before  # neither committed, no file left
    with pytest.raises(EventValidationError):  # the rerun commits the first and stops at the second
        Journal.open(journal.path).append_batches([first, bad])
    assert Journal.open(journal.path).read_all(["event_id"]).num_rows == 1_000


def test_an_interrupt_while_append_batches_waits_for_a_write_commits_that_batch(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    import _thread
    import threading

    real = store.write_part

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)
        return real(*args, **kwargs)

    journal.append_workers = 0
    monkeypatch.setattr(store, "write_part", slow)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        journal.append_batches([batch(1, 1_000, ["a", "b", "c"])])
    timer.join()
    monkeypatch.undo()
    fresh = Journal.open(journal.path)
    # the batch being written when Ctrl-C came was committed, not left as uncommitted files
    assert fresh.read_all(["event_id"]).num_rows == 1_000 and verify_journal(fresh).ok
    assert parquet_on_disk(journal) == {f.path for f in fresh.files()}


def test_workers_get_the_allocator_settings_when_polars_was_imported_before_toolkit() -> None:
    polars_default = "dirty_decay_ms:500,muzzy_decay_ms:1000"  # what Polars sets when nothing is set
    env = {"_RJEM_MALLOC_CONF": polars_default}
    allocators.apply_worker(env)
    assert env["_RJEM_MALLOC_CONF"] == polars_default + "," + allocators.WORKER_ENV["_RJEM_MALLOC_CONF"]
    mine = {"_RJEM_MALLOC_CONF": polars_default + ",dirty_decay_ms:7"}  # the user's own setting wins
    allocators.apply_worker(mine)
    assert mine["_RJEM_MALLOC_CONF"] == polars_default + ",dirty_decay_ms:7"
    empty: dict[str, str] = {}
    allocators.apply_worker(empty)
    assert empty == allocators.WORKER_ENV


def test_append_batches_checks_an_empty_batch_as_append_batch_does(journal: Journal) -> None:
    empty = batch(1, 0, ["a"]).drop_columns(["data"])
    with pytest.raises(EventValidationError) as one:
        journal.append_batch(empty)
    with pytest.raises(EventValidationError) as many:
        journal.append_batches([batch(2, 100, ["a"]), empty])
    assert str(many.value) == str(one.value)
    assert Journal.open(journal.path).read_all(["event_id"]).num_rows == 100  # the batch before: committed


def test_an_on_commit_callback_writing_to_the_same_journal_fails_at_once_and_the_batches_before_stay(
    journal: Journal,
) -> None:
    """The callback runs while append_batches holds the write lock: it would wait for itself until the
    lock timeout (60 s) and then blame "another process"; it gets LockReentryError at once instead."""
    seen: list[int] = []

    def on_commit(result: store.AppendResult) -> None:
        seen.append(result.appended)
        if len(seen) == 2:
            journal.append("audit", [{"event_type": "custom", "data": {"batches": len(seen)}}])

    with pytest.raises(LockReentryError, match="already holds the journal's write lock"):
        journal.append_batches([batch(1, 100, ["a"]), batch(2, 100, ["b"]), batch(3, 100, ["c"])], on_commit=on_commit)
    fresh = Journal.open(journal.path)
    assert fresh.read_all(["event_id"]).num_rows == 200 and verify_journal(fresh).ok
    # the lock was given back: the same write now goes through
    journal.append("audit", [{"event_type": "custom", "data": {}}])
    assert Journal.open(journal.path).read_all(["event_id"]).num_rows == 201


def test_a_nested_hold_lets_the_holders_own_appends_through_but_not_their_callbacks(journal: Journal) -> None:
    """``write_lock(nested=True)`` holds the lock over a read → plan → write operation; the appends
    it makes take it again at once, and a callback of such an append still gets LockReentryError."""
    from toolkit.journal.lock import write_lock

    def on_commit(result: store.AppendResult) -> None:
        journal.append("audit", [{"event_type": "custom", "data": {}}])

    with write_lock(journal.path, 5, nested=True):
        journal.append("a", [{"event_type": "custom", "data": {}}])
        with pytest.raises(LockReentryError):
            journal.append_batches([batch(1, 10, ["b"])], on_commit=on_commit)
        journal.append("a", [{"event_type": "custom", "data": {}}])  # the nesting is back after the refusal
    with write_lock(journal.path, 5), pytest.raises(LockReentryError):
        journal.append("a", [{"event_type": "custom", "data": {}}])
    assert Journal.open(journal.path).read_all(["event_id"]).num_rows == 12


def test_another_thread_of_the_process_waits_for_the_write_lock_as_another_process_does(journal: Journal) -> None:
    from toolkit.journal.lock import write_lock

    with lock_held_by_another_thread(journal.path, 10) as release:
        with pytest.raises(LockTimeoutError, match="another thread of this process held the write lock"):
            with write_lock(journal.path, 0.05):
                pass
        threading.Timer(0.2, release.set).start()
        journal.append("late", [{"event_type": "custom", "data": {}}])  # waits for the holder, then writes
    assert Journal.open(journal.path).read_all(["event_id"]).num_rows == 1


@pytest.mark.parametrize("heads", [0, 6_000])
def test_a_worker_that_stops_responding_is_killed_and_the_append_fails_writing_nothing(
    journal: Journal, heads: int
) -> None:
    """A stopped worker (SIGSTOP: as a deadlock or a dead mount would leave it) does not hold the
    append, and the journal's write lock, forever. With ``heads`` streams already in the journal the
    request (their chain heads) is larger than a pipe holds, so the hand-over itself would block."""
    if heads:
        journal.append_workers = 0
        journal.append_batch(batch(0, heads, [f"s-{i:05d}" for i in range(heads)]))
    parallel(journal)
    journal.worker_stall_s = 1.5
    journal._start_workers(journal.parallel_append_rows)
    (pid,) = pool().pids()[:1]
    before = snapshot(journal)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(AppendWorkerError, match=f"pid {pid}\\) did not respond for 1.5 s and was killed"):
            journal.append_batch(batch(1, 4_000, [f"s-{i:05d}" for i in range(0, max(heads, 40), max(heads, 40) // 40)]))
        assert time.monotonic() - t0 < 60
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert snapshot(journal) == before  # nothing committed, the files of this process's part deleted
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped
    # the lock is free: another append (by another journal object) goes through, with a new worker
    again = parallel(Journal.open(journal.path))
    assert again.append_batch(batch(2, 4_000, ["a", "b", "c", "d"])).appended == 4_000
    assert verify_journal(Journal.open(journal.path)).ok


def test_a_worker_says_it_is_alive_after_every_chunk_it_writes(journal: Journal) -> None:
    workers = AppendWorkers()
    layout = FileLayout(str(journal.path / "events"), ("stream_type", "day"), (), 8192)
    try:
        workers.start(1)
        actions, _ = workers.submit(0, journal_rows(journal, "s"), {}, layout).result(stall_s=30)
        assert workers._workers[0].beats == 1  # one chunk: one "alive" read and skipped
        layout.remove(actions)
    finally:
        workers.close()


def test_workers_keep_the_glibc_settings_when_dask_put_its_own_in_this_process(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask LocalCluster's nanny puts MALLOC_TRIM_THRESHOLD_=65536 in this process's environment
    (for its workers) when it starts one: append workers started after it inherited that, not the
    toolkit's setting (the allocator test failed when a dask test ran first in the same process)."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what distributed's Nanny.start does
    env = dict(os.environ)
    allocators.apply_worker(env)
    assert env["MALLOC_TRIM_THRESHOLD_"] == allocators.WORKER_ENV["MALLOC_TRIM_THRESHOLD_"]
    pool().close()
    parallel(journal)
    journal.append_batch(batch(1, 1_000, ["a", "b", "c", "d"]))
    (pid,) = pool().pids()
    worker_env = dict(
        line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line
    )
    assert worker_env["MALLOC_TRIM_THRESHOLD_"] == allocators.WORKER_ENV["MALLOC_TRIM_THRESHOLD_"]
    pool().close()  # the next test's workers start in its own environment
