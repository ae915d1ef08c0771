"""The DuckDB session reads the journal and nothing else; user SQL is SELECT or EXPLAIN only."""

from __future__ import annotations

import gc
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import build_tool_failure_loop, parquet_on_disk

from toolkit.engines.duckdb_engine import Session, connect
from toolkit.errors import QueryError
from toolkit.journal import Journal


@pytest.fixture(scope="module")
def loop_journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """One tool_failure_loop journal for the module; a test that changed it would fail itself."""
    j = Journal.create(tmp_path_factory.mktemp("sandbox") / "j")
    build_tool_failure_loop(j)
    yield j
    j.close()


@pytest.fixture
def session(loop_journal: Journal) -> Iterator[Session]:
    s = connect(loop_journal)
    yield s
    s.close()


@pytest.fixture
def outside(loop_journal: Journal) -> Path:
    """A Parquet file next to the journal, not inside it."""
    path = loop_journal.path.parent / "outside.parquet"
    pq.write_table(pa.table({"secret": ["s3cr3t"]}), path)
    return path


def test_outside_parquet_is_readable_without_the_sandbox(outside: Path) -> None:
    assert pq.read_table(outside).column("secret").to_pylist() == ["s3cr3t"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_parquet('{outside}')",
        "SELECT * FROM '{outside}'",
        "SELECT * FROM read_parquet('{journal}/../outside.parquet')",
        "SELECT * FROM glob('{tmp}/*')",
        "SELECT count(*) FROM events; SELECT * FROM read_parquet('{outside}')",
    ],
)
def test_reading_outside_the_journal_is_refused(session: Session, outside: Path, sql: str) -> None:
    text = sql.format(outside=outside, journal=session.journal.path, tmp=outside.parent)
    with pytest.raises(QueryError) as caught:
        session.user_query(text)
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT * FROM events) TO '{journal}/events/dump.parquet'",
        "COPY events TO '{tmp}/dump.csv'",
        "EXPORT DATABASE '{tmp}/db'",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "DETACH memory",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET TimeZone",
        "PRAGMA enable_profiling",
        "CREATE TABLE t AS SELECT * FROM events",
        "CREATE OR REPLACE VIEW events AS SELECT 1 AS x",
        "CREATE MACRO m() AS 1",
        "DROP VIEW events",
        "INSERT INTO events SELECT * FROM events",
        "DELETE FROM events",
        "UPDATE events SET data = '{{}}'",
        "CALL pragma_version()",
        "USE memory",
        "CHECKPOINT",
        "SELECT 1; DROP VIEW events",
        "EXPLAIN ANALYZE COPY (SELECT * FROM events) TO '{journal}/events/_delta_log/00000000000000000099.json'",
        "EXPLAIN ANALYZE CREATE OR REPLACE VIEW events AS SELECT 1 AS x",
        "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
        "EXPLAIN ANALYZE INSERT INTO events SELECT * FROM events",
        "explain analyze  (FORMAT json) COPY (SELECT 1) TO '{journal}/x.json'",
        "EXPLAIN /* hidden */ ANALYZE COPY (SELECT 1) TO '{journal}/x.csv'",
        # DuckDB 2 parses a COPY as a CTE body: the statement is a SELECT that writes
        "WITH x AS (COPY (SELECT * FROM events) TO '{journal}/events/dump.parquet') SELECT * FROM x",
        "WITH x AS (COPY (SELECT 'x' AS a) TO '{journal}/dump.csv') SELECT * FROM x UNION ALL SELECT 1",
        "with a AS (SELECT 1), x AS (copy events TO '{journal}/dump.csv') FROM x",
        "EXPLAIN ANALYZE WITH x AS (COPY events TO '{journal}/dump.csv') SELECT * FROM x",
        "SELECT * FROM json_execute_serialized_sql("
        "json_serialize_sql('WITH x AS (COPY (SELECT 1) TO ''{journal}/dump.csv'') SELECT * FROM x'))",
        "WITH x AS (DELETE FROM events RETURNING *) SELECT count(*) FROM x",
        # DuckDB 2's external resources change the session's state from a SELECT
        "SELECT * FROM register_external_resource_type('t', kind := 'k', create_function := 'read_text')",
        # query() runs a SELECT given as text (computed, so unseen by any check): in it the two above
        # ran, and a COPY wrote a Delta commit into the journal
        "SELECT * FROM query('SELECT * FROM json_execute_serialized_sql(json_serialize_sql(''WITH x AS "
        "(COPY (SELECT 1 AS a) TO ''''{journal}/events/_delta_log/00000000000000000099.json'''') "
        "SELECT * FROM x''))')",
        "SELECT * FROM query('SELECT * FROM json_execute_serialized_sql(' || 'json_serialize_sql(''SELECT 1''))')",
        "EXPLAIN ANALYZE SELECT * FROM main.query('SELECT * FROM register_external_resource_type(''t'', "
        "kind := ''k'', create_function := ''read_text'')')",
        # the CSV reader's rejects options create a temporary table that hid the events view
        "SELECT count(*) FROM read_csv('{journal}/journal.toml', store_rejects = true, rejects_table = 'events', "
        "ignore_errors = true)",
        "FROM read_csv_auto('{journal}/journal.toml', \"Rejects_Table\" := 'events', ignore_errors := true)",
    ],
)
@pytest.mark.parametrize("method", ["user_query", "query"])  # query: toolkit code and the SQL rules it wraps
def test_statements_other_than_select_are_refused(session: Session, tmp_path: Path, sql: str, method: str) -> None:
    journal = session.journal
    before = parquet_on_disk(journal)
    files_before = sorted(p.relative_to(journal.path) for p in journal.path.rglob("*"))
    with pytest.raises(QueryError):
        getattr(session, method)(sql.format(journal=journal.path, tmp=tmp_path))
    assert sorted(p.relative_to(journal.path) for p in journal.path.rglob("*")) == files_before
    assert parquet_on_disk(journal) == before
    # the session still works and still shows the journal
    assert session.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]
    assert session.user_query("SELECT current_setting('TimeZone') AS tz").to_pylist() == [{"tz": "UTC"}]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM events",
        "FROM events SELECT stream_id LIMIT 1",
        "WITH t AS (SELECT * FROM events) SELECT count(*) FROM t",
        "EXPLAIN SELECT * FROM events WHERE stream_id = 'tool_failure_loop'",
        "EXPLAIN ANALYZE SELECT count(*) FROM events",
        "-- a comment\nSELECT 1 AS one",
        "DESCRIBE events",
        "SUMMARIZE SELECT tokens_in FROM events",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        "WITH a AS (SELECT 1 AS n) SELECT n FROM a UNION ALL SELECT count(*) FROM events",
        "SELECT count(*) FROM read_parquet('{journal}/events/*/*/*.parquet')",
    ],
)
def test_select_and_explain_over_the_journal_are_allowed(session: Session, sql: str) -> None:
    assert session.user_query(sql.format(journal=session.journal.path)).num_rows >= 1


def test_params_are_bound_not_spliced(session: Session) -> None:
    sql = "SELECT count(*) AS n FROM events WHERE stream_id = $sid"
    assert session.user_query(sql, {"sid": "tool_failure_loop"}).to_pylist() == [{"n": 13}]
    assert session.user_query(sql, {"sid": "x' OR '1'='1"}).to_pylist() == [{"n": 0}]
    assert session.user_query("SELECT $v AS v", {"v": "'); DROP VIEW events; --"}).to_pylist() == [
        {"v": "'); DROP VIEW events; --"}
    ]
    assert session.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]


def test_query_runs_one_statement_only(session: Session) -> None:
    with pytest.raises(QueryError, match="one statement expected, found 2"):
        session.query("SELECT 1; SELECT 2")
    assert session.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]


def test_last_statement_result_is_returned(session: Session) -> None:
    assert session.user_query("SELECT 1 AS a; SELECT 2 AS b").to_pylist() == [{"b": 2}]


@pytest.mark.parametrize("sql", ["", "  ;  ", "-- only a comment", "SELEC 1", "SELECT * FROM no_such_view"])
def test_empty_or_broken_sql_is_a_query_error(session: Session, sql: str) -> None:
    with pytest.raises(QueryError):
        session.user_query(sql)


def test_session_on_an_empty_journal_has_a_typed_events_view(journal: Journal) -> None:
    s = connect(journal)
    t = s.user_query("SELECT * FROM events")
    assert t.num_rows == 0 and "stream_id" in t.column_names
    s.close()


def test_session_sees_the_files_active_when_it_opened(journal: Journal) -> None:
    build_tool_failure_loop(journal)
    s = connect(journal)
    journal.append("later", [{"event_type": "x", "data": 1}])
    assert s.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]
    s.close()
    s = connect(journal)
    assert s.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 14}]
    s.close()


def test_a_session_leaves_half_the_memory_to_the_python_side(session: Session) -> None:
    from toolkit.engines.duckdb_engine import default_memory_limit

    limit = default_memory_limit()
    assert limit is not None
    value, unit = session.query("SELECT current_setting('memory_limit') AS m").column("m")[0].as_py().split()
    assert unit == "GiB" and abs(float(value) - limit / 2**30) <= 0.1  # not DuckDB's 80 % of the machine


def test_spilled_rows_stay_private_and_go_with_the_session(loop_journal: Journal) -> None:
    """Beyond its memory limit DuckDB spills rows (the journal's payloads) to the session's temporary
    directory, outside the journal: only its owner may enter it (DuckDB made it 0755, its files 0644,
    readable by every local user), and it goes with the session, closed or only dropped."""
    s = connect(loop_journal, memory_limit_bytes=64 << 20, threads=1)
    assert s.spill_dir is not None
    spill = Path(s.spill_dir)
    sql = "SELECT count(*) AS n FROM (SELECT md5(CAST(range AS VARCHAR)) AS m FROM range(4000000) ORDER BY m)"
    assert s.user_query(sql).to_pylist() == [{"n": 4_000_000}]
    assert spill.is_dir() and stat.S_IMODE(spill.stat().st_mode) & 0o077 == 0
    s.close()
    assert not spill.exists()
    s = connect(loop_journal)
    assert s.spill_dir is not None
    spill = Path(s.spill_dir)
    del s
    gc.collect()
    assert not spill.exists()


def test_a_session_spills_at_most_half_the_free_disk_space(loop_journal: Journal) -> None:
    """DuckDB's own bound on what a session spills, taken when it first spilled, was larger than the
    disk's free space (176 GiB with 45 GiB free): one query could fill the disk everything shares."""
    s = connect(loop_journal)
    assert s.spill_dir is not None
    value, unit = s.query("SELECT current_setting('max_temp_directory_size') AS m").column("m")[0].as_py().split()
    limit = float(value) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert abs(limit - shutil.disk_usage(s.spill_dir).free / 2) <= 0.1 * limit
    s.close()
    s = connect(loop_journal, memory_limit_bytes=64 << 20, threads=1, spill_limit_bytes=8 << 20)
    sql = "SELECT count(*) AS n FROM (SELECT md5(CAST(range AS VARCHAR)) AS m FROM range(4000000) ORDER BY m)"
    with pytest.raises(QueryError, match="spilled more to disk than this session may") as caught:
        s.user_query(sql)
    assert "/8.0 MiB used)" in str(caught.value) and "Hint: a session spills at most half" in str(caught.value)
    assert s.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]
    s.close()


def test_a_session_opens_without_spilling_when_no_spill_directory_can_be_made(
    loop_journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session made its spill directory when it opened: with the temporary directory unusable
    (full, or not a directory) every session failed with a raw OSError, also for a query that never
    spills (before, DuckDB made it only when it first spilled). It now opens without spilling, and
    a query that would need to spill says why it could not, with a Hint."""
    not_a_dir = tmp_path / "tmp-is-a-file"
    not_a_dir.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_dir))  # what TMPDIR pointing at a file gives
    s = connect(loop_journal, memory_limit_bytes=64 << 20, threads=1)
    try:
        assert s.spill_dir is None
        assert s.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]
        sql = "SELECT count(*) AS n FROM (SELECT md5(CAST(range AS VARCHAR)) AS m FROM range(4000000) ORDER BY m)"
        with pytest.raises(QueryError) as caught:
            s.user_query(sql)
        assert f"cannot spill to disk: no spill directory could be made in {not_a_dir}" in str(caught.value)
        assert "Hint: set TMPDIR to a directory with free space" in str(caught.value)
    finally:
        s.close()


def test_the_merge_of_a_distributed_run_spills_to_a_private_bounded_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """query_tables (the merge step of a Dask run) set no temporary directory: beyond its memory it
    spilled the journal's rows into ./.tmp of the working directory (readable by all), with no bound
    but 90 % of the disk. It now spills as a session does: to a directory of its own in the system's
    temporary directory, at most half the free space of its disk, removed when it returns."""
    from toolkit.engines.duckdb_engine import query_tables

    root, work = tmp_path / "tmp", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.chdir(work)
    sql = (
        "SELECT current_setting('temp_directory') AS d, current_setting('max_temp_directory_size') AS m, "
        "count(*) AS n FROM t"
    )
    (row,) = query_tables({"t": pa.table({"x": [1, 2, 3]})}, sql).to_pylist()
    assert Path(row["d"]).parent == root and Path(row["d"]).name.startswith("journal-duckdb-") and row["n"] == 3
    value, unit = row["m"].split()
    limit = float(value) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert abs(limit - shutil.disk_usage(root).free / 2) <= 0.1 * limit
    assert not any(root.iterdir()) and not any(work.iterdir())  # removed; nothing in the working directory


def test_the_merge_of_a_distributed_run_holds_what_a_session_holds_in_memory(session: Session) -> None:
    """query_tables set no memory limit: the merge of a Dask run took DuckDB's own 80 % of the machine
    while a session (and so each worker) keeps to half. It now takes the same limit as a session."""
    from toolkit.engines.duckdb_engine import query_tables

    sql = "SELECT current_setting('memory_limit') AS m FROM t"
    (row,) = query_tables({"t": pa.table({"x": [1]})}, sql).to_pylist()
    expected = session.query("SELECT current_setting('memory_limit') AS m").column("m")[0].as_py()
    assert row["m"] == expected


def test_a_watched_query_past_its_time_limit_is_stopped_and_the_session_goes_on(session: Session) -> None:
    from toolkit.errors import QueryTimeoutError

    runaway = "SELECT count(*) AS n FROM range(3000000) AS a, range(3000000) AS b WHERE hash(a.range, b.range) = 0"
    started = time.monotonic()
    with session.watched(0.5), pytest.raises(QueryTimeoutError, match=r"time limit of 0\.5 s") as caught:
        session.query(runaway)
    assert time.monotonic() - started < 5 and caught.value.exit_code == 4
    assert session.user_query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]
    with session.watched(30):
        assert session.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 13}]
