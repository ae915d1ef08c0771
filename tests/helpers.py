"""Shared test helpers: event builders, journal snapshots, Parquet tampering, worker processes.

The workers at the bottom run in separate processes (``python tests/helpers.py WORKER ARGS``)
for the concurrency and crash tests; they print one line per step so the parent can follow.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from toolkit.journal import Journal

UTC = dt.UTC
HELPERS = Path(__file__).resolve()
REPO = HELPERS.parents[1]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def run_cli(capsys: Any, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``journal ARGV`` in-process with ``stdin``: (exit code, stdout, stderr)."""
    from toolkit.cli.main import main

    saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    code = 0
    try:
        main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return code, out, err


def ev(event_type: str = "custom", data: Any = None, **fields: Any) -> dict[str, Any]:
    """One caller event; ``data`` defaults to a small object."""
    return {"event_type": event_type, "data": {"n": 1} if data is None else data, **fields}


def at(day: int, hour: int = 12, minute: int = 0, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


# ---------------------------------------------------------------------- journal state


@dataclass(frozen=True)
class Snapshot:
    """What is on disk: nothing written means all three are unchanged."""

    delta_version: int
    rows: int
    parquet_files: frozenset[str]


def parquet_on_disk(journal: Journal) -> set[str]:
    return {str(p) for p in (journal.path / "events").rglob("*.parquet")}


def snapshot(journal: Journal) -> Snapshot:
    fresh = Journal.open(journal.path)  # another instance: nothing cached
    return Snapshot(fresh.delta_version, fresh.read_all(["event_id"]).num_rows, frozenset(parquet_on_disk(journal)))


def event_rows(journal: Journal, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """All events of a fresh view of the journal, in position order."""
    return Journal.open(journal.path).read_all(columns).to_pylist()  # type: ignore[no-any-return]


def versions_by_stream(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in sorted(rows, key=lambda r: (r["stream_id"], r["version"])):
        out.setdefault(r["stream_id"], []).append(r["version"])
    return out


def assert_stream_keys_sound(rows: list[dict[str, Any]]) -> None:
    """(stream_id, version) and position unique, versions 1..n per stream, event_id unique."""
    keys = [(r["stream_id"], r["version"]) for r in rows]
    assert len(set(keys)) == len(keys), "duplicate (stream_id, version)"
    positions = [r["position"] for r in rows]
    assert len(set(positions)) == len(positions), "duplicate position"
    ids = [r["event_id"] for r in rows]
    assert len(set(ids)) == len(ids), "duplicate event_id"
    for sid, versions in versions_by_stream(rows).items():
        assert versions == list(range(1, len(versions) + 1)), f"stream {sid}: versions {versions}"


# ---------------------------------------------------------------------- Parquet tampering


def locate(journal: Journal, stream_id: str, version: int) -> tuple[str, int]:
    """(data file, row index) of one event."""
    for f in journal.files():
        t = pq.read_table(f.path, columns=["stream_id", "version"])
        for i, (s, v) in enumerate(
            zip(t.column("stream_id").to_pylist(), t.column("version").to_pylist(), strict=True)
        ):
            if (s, v) == (stream_id, version):
                return f.path, i
    raise LookupError(f"{stream_id} v{version} not in the journal")


def rewrite_parquet(path: str, change: Callable[[pa.Table], pa.Table]) -> None:
    """Rewrite a data file in place with pyarrow, keeping its schema and every other value."""
    table = pq.read_table(path)
    changed = change(table)
    assert changed.schema.equals(table.schema, check_metadata=True)
    pq.write_table(changed, path, compression="zstd")


def set_cell(table: pa.Table, column: str, row: int, value: Any) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def drop_row(table: pa.Table, row: int) -> pa.Table:
    return pa.concat_tables([table.slice(0, row), table.slice(row + 1)])


# ---------------------------------------------------------------------- fixture journals


def build_tool_failure_loop(journal: Journal) -> None:
    """An agent run that calls the same failing tool again and again, with LLM calls between."""
    events: list[dict[str, Any]] = [ev("user_message", {"text": "deploy the service"}, occurred_at=at(2, 9))]
    for i in range(3):
        events += [
            ev("llm_request", {"turn": i}, model="gpt-test", occurred_at=at(2, 9, 1 + 3 * i)),
            ev(
                "llm_response",
                {"turn": i},
                model="gpt-test",
                tokens_in=1000 + i,
                tokens_out=50,
                tokens_cache_read=200,
                tokens_reasoning=10,
                cost_usd="0.012500000",
                duration_ms=850.5,
                occurred_at=at(2, 9, 2 + 3 * i),
                traceparent=TRACEPARENT,
            ),
            ev(
                "tool_called",
                {"cmd": "kubectl apply"},
                tool_name="shell",
                tool_call_id=f"call-{i}",
                occurred_at=at(2, 9, 3 + 3 * i),
            ),
            ev(
                "tool_result",
                {"exit": 1},
                tool_name="shell",
                tool_call_id=f"call-{i}",
                error="connection refused",
                occurred_at=at(2, 9, 3 + 3 * i),
            ),
        ]
    journal.append("tool_failure_loop", events, expected_version=0, stream_type="agent_run")


def build_budget_breach(journal: Journal) -> None:
    """A cheap run and an expensive one on another model, the day after, late in the evening."""
    journal.append(
        "budget_breach",
        [
            ev("user_message", {"text": "summarise"}, occurred_at="2026-03-03T23:30:00-05:00", agent="summariser"),
            ev(
                "llm_response",
                {"ok": True},
                model="big-model",
                tokens_in=120_000,
                tokens_out=4_000,
                cost_usd=3.25,
                occurred_at="2026-03-03T23:45:00-05:00",
                agent="summariser",
            ),
        ],
        expected_version=0,
        stream_type="agent_run",
    )


# ---------------------------------------------------------------------- worker processes


def spawn(worker: str, *args: Any, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``worker`` of this module in a new Python process (stdout piped, line-buffered)."""
    return subprocess.Popen(
        [sys.executable, str(HELPERS), worker, *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def run(worker: str, *args: Any, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
    proc = spawn(worker, *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{worker} failed ({proc.returncode}):\n{err}"
    return out


def wait_for_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.002)


def _append_loop(path: str, name: str, n: str, go: str) -> None:
    """n single-event appends to three shared streams, no expected version."""
    j = Journal.open(path)
    j.heads()
    print("ready", flush=True)
    wait_for_file(Path(go))
    for i in range(int(n)):
        j.append(f"shared-{i % 3}", [ev("tick", {"proc": name, "i": i}, event_id=f"{name}-{i}")])
    print("done", flush=True)


def _race_once(path: str, name: str, go: str) -> None:
    """One append to a new stream with expected_version=0; prints who won."""
    from toolkit.errors import ConcurrencyError

    j = Journal.open(path)
    j.heads()
    print("ready", flush=True)
    wait_for_file(Path(go))
    try:
        j.append("race", [ev("claim", {"by": name})], expected_version=0)
    except ConcurrencyError as e:
        print(json.dumps({"name": name, "conflict": e.context}), flush=True)
    else:
        print(json.dumps({"name": name, "won": True}), flush=True)


CRASH_STREAMS = 40


def crash_batch(commit: int, rows: int) -> pa.Table:
    """Commit ``commit`` of the crash test: ``rows`` events over 40 streams, 3 types, 4 days."""
    sids = [f"s{(commit * 7 + i) % CRASH_STREAMS:02d}" for i in range(rows)]
    return pa.table(
        {
            "stream_id": sids,
            "stream_type": [f"type{int(s[1:]) % 3}" for s in sids],
            "event_type": ["tick"] * rows,
            "event_id": [f"c{commit}-e{i}" for i in range(rows)],
            "data": [f'{{"c":{commit},"i":{i}}}' for i in range(rows)],
            "occurred_at": pa.array([at(1 + i % 4) for i in range(rows)], pa.timestamp("us", tz="UTC")),
        }
    )


def _crash_work(path: str, commits: str, rows: str, workers: str = "0") -> None:
    """The crash test's work: ``commits`` bulk appends with fixed event ids (rerunnable).

    ``workers`` > 0: every append is hashed and written in parts by that many worker processes
    too (their pids are printed first, as ``workers PID...``).
    """
    j = Journal.open(path)
    if int(workers):
        from toolkit.journal.appendworkers import pool

        j.append_workers, j.parallel_append_rows = int(workers), 1
        pool().start(int(workers))
        print("workers", *pool().pids(), flush=True)
    for c in range(int(commits)):
        r = j.append_batch(crash_batch(c, int(rows)))
        print(c, r.appended, r.skipped, flush=True)


def _tz_report(path: str) -> None:
    """Run in a process with a non-UTC TZ: what DuckDB and Polars make of the journal's days."""
    import duckdb
    import polars as pl

    from toolkit.engines.duckdb_engine import connect
    from toolkit.engines.polars_engine import scan_events

    j = Journal.open(path)
    session = connect(j)
    duck = session.query(
        "SELECT event_id, day, CAST(occurred_at AS DATE) AS cast_day, "
        "CAST(date_trunc('day', occurred_at) AS DATE) AS trunc_day, current_setting('TimeZone') AS tz "
        "FROM events ORDER BY position"
    ).to_pylist()
    daily = session.query(
        "SELECT CAST(occurred_at AS DATE) AS day, CAST(count(*) AS BIGINT) AS n FROM events GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    polars = (
        scan_events(j)
        .sort("position")
        .select(
            "event_id",
            "day",
            pl.col("occurred_at").dt.date().alias("date"),
            pl.col("occurred_at").dt.truncate("1d").dt.date().alias("trunc"),
        )
        .collect()
        .rows()
    )
    raw = duckdb.connect()
    machine_tz = raw.sql("SELECT current_setting('TimeZone')").fetchall()[0][0]
    raw_days = [
        r[0].isoformat()
        for r in raw.sql(
            "SELECT CAST(occurred_at AS DATE) FROM read_parquet($f) ORDER BY position", params={"f": j.file_paths()}
        ).fetchall()
    ]
    print(
        json.dumps(
            {
                "duck": [{k: str(v) for k, v in r.items()} for r in duck],
                "daily": [{k: str(v) for k, v in r.items()} for r in daily],
                "polars": [[str(x) for x in r] for r in polars],
                "machine_tz": machine_tz,
                "raw_days": raw_days,
                "python_local_offset": dt.datetime(2026, 3, 3, 12).astimezone().utcoffset().total_seconds(),  # type: ignore[union-attr]
            }
        )
    )


def _fork_after_append(path: str, then: str) -> None:
    """A large append with a worker process, then a fork (a child doing other work for a minute):
    ``then`` = ``exit`` (this process exits) or ``wait`` (it waits to be killed). Prints the worker's
    pid and the child's."""
    from toolkit.journal.appendworkers import pool

    j = Journal.open(path)
    j.append_workers, j.parallel_append_rows = 1, 1
    j.append_batch(crash_batch(0, 2_000))
    child = os.fork()
    if child == 0:
        quiet = os.open(os.devnull, os.O_WRONLY)  # the test reads this process's output to its end
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        time.sleep(60)
        os._exit(0)
    print(*pool().pids(), child, flush=True)
    if then == "wait":
        time.sleep(60)


def _killed_at(path: str, op: str, target: str, when: str, nth: str = "1", archive: str = "") -> None:
    """Run ``op`` (``redact``: subject ``alice``; ``compact``: spilling; ``purge``: before
    2025-01-05T00:00:30Z, to the file ``archive`` if given; ``archive``: stream ``alice-1`` to the
    file ``archive``, replacing one there) and SIGKILL this process at the ``nth`` call of ``target``
    (``module:attr`` or ``module:Class.attr``): ``before`` that call runs or ``after`` it
    returned. No cleanup runs (no ``finally``, no ``except``): what a power cut or the OOM
    killer leaves."""
    import importlib
    import signal

    module_name, _, attr = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *outer, name = attr.split(".")
    for part in outer:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    calls = [0]

    def killer(*a: Any, **k: Any) -> Any:
        calls[0] += 1
        if calls[0] == int(nth) and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(*a, **k)
        if calls[0] == int(nth) and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(owner, name, killer)
    j = Journal.open(path)
    if op == "redact":
        from toolkit.journal.redaction import redact_subject

        redact_subject(j, "alice")
    elif op == "compact":
        from toolkit.journal.maintenance import compact

        compact(j, full=True, chunk_rows=1)  # every partition of more than one row is spilled
    elif op == "archive":
        from toolkit.reports.archive import archive_stream

        archive_stream(j, "alice-1", archive, force=True)  # --force: a file of the user's may be there
    else:
        from toolkit.journal.retention import purge_before

        purge_before(
            j,
            dt.datetime(2025, 1, 5, 0, 0, 30, tzinfo=UTC),
            now=dt.datetime(2026, 1, 1, tzinfo=UTC),
            archive=archive or None,
        )
    print("finished", calls[0], flush=True)


WORKERS: dict[str, Callable[..., None]] = {
    "killed_at": _killed_at,
    "append_loop": _append_loop,
    "race_once": _race_once,
    "crash_work": _crash_work,
    "tz_report": _tz_report,
    "fork_after_append": _fork_after_append,
}

if __name__ == "__main__":
    WORKERS[sys.argv[1]](*sys.argv[2:])


@contextmanager
def lock_held_by_another_thread(path: Path, seconds: float = 30) -> Iterator[threading.Event]:
    """The journal's write lock held by another thread of this process from entry until the event
    yielded is set (or ``seconds`` pass); the block's end releases it and waits for that thread."""
    from toolkit.journal.lock import write_lock

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_lock(path, seconds):
            held.set()
            release.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(seconds)
    try:
        yield release
    finally:
        release.set()
        holder.join()


def build_cut_with_a_late_clock(journal: Journal) -> Callable[[int], dt.datetime]:
    """Stream ``cut``: five LLM responses (tokens_in = version) at 09:00, 09:10, 09:30 (a late
    clock on version 3), 09:20 and 09:40 of 2026-03-02, versions 1-3 then removed by an archive
    cut. Returns the time of a minute of that hour."""
    from toolkit.journal.retention import remove_stream_prefix

    def t(minute: int) -> dt.datetime:
        return dt.datetime(2026, 3, 2, 9, minute, tzinfo=UTC)

    minutes = (0, 10, 30, 20, 40)
    journal.append(
        "cut", [ev("llm_response", model="m", tokens_in=v, occurred_at=t(m)) for v, m in enumerate(minutes, 1)]
    )
    remove_stream_prefix(journal, "cut", 4, reason="archive")
    return t
