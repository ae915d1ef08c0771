"""The only module that talks to DuckDB: sandboxed, UTC sessions over a journal.

A session has a view ``events`` (and one view per extra table registered by later stages)
over exactly the Parquet files the Delta log lists as active — never a glob, which would read
files that compaction replaced or that a killed writer left behind. After the views are set
up the session is locked: it can read inside the journal directory and nothing else, its
configuration cannot be changed back, and every statement it runs — user SQL, SQL rules, the
toolkit's own queries — must be a SELECT or an EXPLAIN of one, with no ``COPY`` as a CTE body
and no call of ``query('...')``, which runs SQL given as text (DuckDB's sandbox would let a
``COPY`` write inside the journal directory).

A journal at an ``s3://`` URL is read through an fsspec s3fs filesystem registered on the
connection (DuckDB's httpfs extension cannot be installed offline); the sandbox then allows
the journal's own prefix and nothing else.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "user_message", "data": "hi"}])
>>> s = connect(j)
>>> s.query("SELECT count(*) AS n FROM events").to_pylist()
[{'n': 1}]
>>> s.close(); j.close()
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl
import pyarrow as pa

from toolkit.errors import QueryError, QueryTimeoutError
from toolkit.journal.location import filesystem
from toolkit.journal.schema import ARROW_SCHEMA, COLUMN_NAMES, DUCKDB_TYPES, HIVE_TYPES, PARTITION_COLUMNS
from toolkit.journal.side_tables import side_views
from toolkit.journal.store import Journal

_ALLOWED_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_SANDBOX_HINT = "the SQL session reads the journal and nothing else; use SELECT over the views (events, ...)"
# EXPLAIN ANALYZE runs the statement it explains: that one must be a SELECT too
_EXPLAIN_PREFIX = re.compile(r"\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^()]*\)\s*)?", re.IGNORECASE)
# A SELECT statement may still write: DuckDB 2 parses COPY/INSERT/UPDATE/DELETE as CTE bodies
# ("WITH x AS (COPY ... TO 'file') SELECT * FROM x" is a SELECT), and json_execute_serialized_sql
# runs a statement given as a value. Query nodes other than these (fails closed) are refused.
_READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
# functions refused in a query: two run a statement given as a value, which no check of the text can
# see (query('...') runs a SELECT whose text may be computed, and in it json_execute_serialized_sql
# runs a COPY); the external-resource ones change the session's state from a SELECT (a resource at
# a uri outside the journal)
_SQL_RUNNING_FUNCTIONS = frozenset({
    "query", "json_execute_serialized_sql", "register_external_resource", "register_external_resource_type",
    "create_external_resource", "deregister_external_resource", "destroy_external_resource",
})
# options of the CSV readers refused: they create temporary tables from a SELECT, and one named
# like a view (rejects_table = 'events') hides that view from the statements after it
_CSV_REJECTS_OPTIONS = frozenset({"store_rejects", "rejects_table", "rejects_scan", "rejects_limit"})


# functions of every session (and of query_tables): the catalog's queries call them, users may too
MACROS: Final = (
    # agent_run.requests_tools in SQL: whether an llm_response payload asks for tool calls
    # (finish_reason or stop_reason tool_calls/tool_use, a finish_reasons list holding one, a
    # non-empty tool_calls list); the run then waits for its tools (status running, not answered)
    """CREATE MACRO requests_tools(data) AS (
        CASE WHEN json_valid(data) THEN coalesce(
            data ->> '$.finish_reason' IN ('tool_calls', 'tool_use')
            OR data ->> '$.stop_reason' IN ('tool_calls', 'tool_use')
            OR (json_type(data, '$.finish_reasons') = 'ARRAY'
                AND list_has_any(data ->> '$.finish_reasons[*]', ['tool_calls', 'tool_use']))
            OR (json_type(data, '$.tool_calls') = 'ARRAY' AND json_array_length(data, '$.tool_calls') > 0),
            false) ELSE false END
    )""",
)


def _define_macros(con: duckdb.DuckDBPyConnection) -> None:
    for statement in MACROS:
        con.execute(statement)


_POLL_S: Final = 0.1  # how often a thread waiting for a watched query looks for Ctrl-C
# what DuckDB raises (a RuntimeError) when it looks at signals itself (at times of its choosing, often
# only as a query ends) and finds Ctrl-C: a traceback instead of Aborted. unless made a KeyboardInterrupt again
_DUCKDB_SAW_CTRL_C: Final = "Query interrupted"


class _CtrlC:
    """Ctrl-C for the queries the main thread runs itself (the toolkit's own: rollups, reports, the
    wrappers of rules): DuckDB does not stop a query for Ctrl-C (it looks at signals at times of its
    choosing, often only when the query ends), so Ctrl-C waited for the whole query (minutes on a large
    journal). While one runs, Python's signal handler also writes the
    signal's number to a pipe (``signal.set_wakeup_fd``; from whichever thread the signal reached),
    and one thread for the whole process reads it and interrupts the running query; the handler's
    KeyboardInterrupt then goes on up. Per query that costs two calls that store a number, not the
    thread a watched query runs on (:meth:`Session.watched`).
    """

    def __init__(self) -> None:
        self._read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # the signal handler must never block
        # the connection of the query running now: set and cleared by the main thread only; a race with
        # the reader matters only when Ctrl-C came, and then everything stops anyway
        self.running: duckdb.DuckDBPyConnection | None = None
        threading.Thread(target=self._watch, name="journal-ctrl-c", daemon=True).start()

    def _watch(self) -> None:
        while True:
            signals = os.read(self._read_fd, 64)
            con = self.running
            if signal.SIGINT in signals and con is not None:  # else it came between queries: the handler raises there
                try:
                    con.interrupt()
                except duckdb.Error:  # closed meanwhile: nothing runs on it
                    pass

    def run(self, con: duckdb.DuckDBPyConnection, run: Callable[[], pa.Table]) -> pa.Table:
        """``run()`` (a query on ``con``; the caller is the main thread) with Ctrl-C stopping it, unless
        another wakeup pipe (an event loop's) is set: then as before."""
        previous = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        if previous == self.write_fd:  # left set by a call cut short by Ctrl-C
            previous = -1
        elif previous != -1:
            signal.set_wakeup_fd(previous)
            return run()
        self.running = con
        try:
            return run()
        finally:  # a pending KeyboardInterrupt is raised as a call returns: the one call here comes last
            self.running = None
            signal.set_wakeup_fd(previous)


_CTRL_C: list[_CtrlC] = []  # made on first use: a pipe and its reader thread for the process


def _interruptible(con: duckdb.DuckDBPyConnection, run: Callable[[], pa.Table]) -> pa.Table:
    """``run()``, a query on ``con`` this thread runs, stopped by Ctrl-C (:class:`_CtrlC`): on the main
    thread (the one Python lets set the wakeup pipe, and that Ctrl-C's KeyboardInterrupt reaches) with
    Python's own Ctrl-C handler in place; elsewhere, or with a handler of the program's own, as is."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        return run()
    if not _CTRL_C:
        _CTRL_C.append(_CtrlC())
    return _CTRL_C[0].run(con, run)


def _events_select(present: Sequence[str]) -> str:
    """SELECT of every schema column in schema order (identifiers and types from the fixed schema).

    Columns the table does not have yet (a journal of an older minor schema) read as typed nulls.
    """
    cols = ", ".join(f'"{c}"' if c in present else f'CAST(NULL AS {DUCKDB_TYPES[c]}) AS "{c}"' for c in COLUMN_NAMES)
    hive = "{" + ", ".join(f"'{k}': '{v}'" for k, v in HIVE_TYPES.items()) + "}"
    return (
        f"SELECT {cols} FROM read_parquet($files, hive_partitioning = true, hive_types = {hive}, union_by_name = true)"  # noqa: S608
    )


class Session:
    """A DuckDB connection confined to one journal."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        journal: Journal,
        spill_dir: str | None = None,
        spill_problem: str | None = None,
    ) -> None:
        self.con = con
        self.journal = journal
        self.spill_dir = spill_dir  # removed on close, or when the session is collected or Python exits
        self.spill_problem = spill_problem  # why there is no spill directory (the session does not spill)
        self._remove_spill = weakref.finalize(self, shutil.rmtree, spill_dir, True) if spill_dir else None
        self._reads: set[str] = set()  # SELECT texts found to only read (loops run the same text)
        self._watched = False  # inside watched(): queries run on a worker thread
        self._time_limit_s: float | None = None

    @contextmanager
    def watched(self, time_limit_s: float | None = None) -> Iterator[Session]:
        """Run the queries inside (SQL a user wrote: ``journal sql``, SQL rules) on a worker thread while
        this one waits: Ctrl-C stops the query (DuckDB looks at signals only when a query ends, so a
        runaway query ran on for minutes after it), and each call of :meth:`query`/:meth:`user_query`
        is stopped after ``time_limit_s`` seconds (None or 0: no limit) with QueryTimeoutError. Only
        there: a thread per query costs about a millisecond, which toolkit loops of small queries
        would feel."""
        saved = self._watched, self._time_limit_s
        self._watched, self._time_limit_s = True, time_limit_s or saved[1]
        try:
            yield self
        finally:
            self._watched, self._time_limit_s = saved

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run one SELECT (or EXPLAIN of one) with bound parameters: toolkit code, queries/ files and
        the SQL rules it wraps. The sandbox lets DuckDB write inside the journal directory, so a
        statement that writes (``COPY``, hidden after a ``;`` in a rule's text) must never run."""
        (statement,) = self._checked(sql, single=True)
        return self._run(statement.query, params, self._deadline())

    def user_query(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run SQL a user typed: only SELECT/EXPLAIN statements, the last one's result returned; watched
        (:meth:`watched`: Ctrl-C stops it, and the time limit, if one is set, applies to them all)."""
        with self.watched():
            statements = self._checked(sql)
            deadline = self._deadline()
            for st in statements[:-1]:
                self._run(st.query, params, deadline)
            return self._run(statements[-1].query, params, deadline)

    def _deadline(self) -> float | None:
        """When (``time.monotonic``) the call starting now must end, or None."""
        return time.monotonic() + self._time_limit_s if self._watched and self._time_limit_s else None

    def _checked(self, sql: str, *, single: bool = False) -> list[duckdb.Statement]:
        """The statements of ``sql``, each a SELECT or an EXPLAIN of one (else QueryError)."""
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as e:
            raise QueryError(f"cannot parse SQL: {e}", hint="check the SQL (one SELECT statement)") from e
        if not statements:
            raise QueryError("no SQL statement given", hint="e.g. journal sql 'SELECT count(*) FROM events'")
        for st in statements:
            if st.type not in _ALLOWED_STATEMENTS or not self._explains_select(st):
                raise QueryError(
                    f"{st.type.name} statements are not allowed: {st.query.strip()[:60]}", hint=_SANDBOX_HINT
                )
            if st.type == duckdb.StatementType.SELECT and st.query not in self._reads:
                writes = _writing_part(self.con, st.query)
                if writes:
                    raise QueryError(f"{writes} is not allowed: {st.query.strip()[:60]}", hint=_SANDBOX_HINT)
                self._reads.add(st.query)
        if single and len(statements) > 1:
            raise QueryError(
                f"one statement expected, found {len(statements)}: {statements[1].query.strip()[:60]}",
                hint=_SANDBOX_HINT,
            )
        return statements

    def _explains_select(self, st: duckdb.Statement) -> bool:
        """True unless ``st`` is an EXPLAIN of something other than one SELECT (fails closed)."""
        if st.type != duckdb.StatementType.EXPLAIN:
            return True
        m = _EXPLAIN_PREFIX.match(st.query)
        if m is None:
            return False
        try:
            inner = self.con.extract_statements(st.query[m.end() :])
        except duckdb.Error:
            return False
        return (
            len(inner) == 1
            and inner[0].type == duckdb.StatementType.SELECT
            and _writing_part(self.con, inner[0].query) is None
        )

    def _run(self, sql: str, params: Mapping[str, Any] | None, deadline: float | None = None) -> pa.Table:
        def run() -> pa.Table:
            return self.con.sql(sql, params=dict(params) if params else None).to_arrow_table()

        try:
            return self._wait_for(run, deadline) if self._watched else _interruptible(self.con, run)
        except duckdb.InterruptException as e:  # Ctrl-C (_CtrlC), if Python's handler has not raised it already
            raise KeyboardInterrupt from e
        except duckdb.PermissionException as e:
            raise QueryError(f"refused: {e}", hint=_SANDBOX_HINT) from e
        except duckdb.Error as e:
            if "max_temp_directory_size" in str(e):
                raise QueryError(
                    f"query failed: it spilled more to disk than this session may ({self.spill_dir}): "
                    + str(e).splitlines()[0],
                    hint="a session spills at most half the disk's free space: select fewer rows or columns, "
                    "or free disk space",
                ) from e
            if self.spill_problem is not None and isinstance(e, duckdb.OutOfMemoryException):
                raise QueryError(
                    f"query failed: it needs more memory than this session has and cannot spill to disk: "
                    f"{self.spill_problem}: " + str(e).splitlines()[0],
                    hint="set TMPDIR to a directory with free space (the session spills there), or select fewer "
                    "rows or columns",
                ) from e
            raise QueryError(f"query failed: {e}", hint="check the SQL and its parameters (-p name=value)") from e
        except RuntimeError as e:
            if str(e) == _DUCKDB_SAW_CTRL_C:  # it ran Python's handler and dropped its KeyboardInterrupt
                raise KeyboardInterrupt from e
            raise

    def _wait_for(self, run: Callable[[], pa.Table], deadline: float | None) -> pa.Table:
        """``run()`` on a worker thread; this thread waits until it ends, Ctrl-C comes (the query is
        interrupted, KeyboardInterrupt goes on up) or ``deadline`` passes (QueryTimeoutError)."""
        done = threading.Event()
        outcome: list[Any] = []  # [table] or [None, the exception]

        def work() -> None:
            try:
                outcome.append(run())
            except BaseException as e:  # handed to the waiting thread
                outcome.extend((None, e))
            finally:
                done.set()

        threading.Thread(target=work, name="journal-query", daemon=True).start()
        ended = False
        try:
            # in short waits: Ctrl-C may reach one of DuckDB's threads, which does not wake this one, and
            # Python runs the handler (KeyboardInterrupt) only when this thread runs again
            while not ended and (deadline is None or time.monotonic() < deadline):
                ended = done.wait(_POLL_S if deadline is None else min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
        except KeyboardInterrupt:
            self.con.interrupt()
            done.wait()
            raise
        if not ended:
            self.con.interrupt()  # harmless if it ended meanwhile: the next query runs as usual
            done.wait()
            if len(outcome) == 2 and isinstance(outcome[1], duckdb.InterruptException):
                raise QueryTimeoutError.after(self._time_limit_s or 0.0) from outcome[1]
        if len(outcome) == 2:
            raise outcome[1]
        table: pa.Table = outcome[0]
        return table

    def parameters(self, sql: str) -> list[str]:
        """Names of the ``$name`` parameters DuckDB parses out of ``sql``."""
        try:
            stmt = self.con.extract_statements(sql)[-1]
            return sorted(stmt.named_parameters)
        except duckdb.Error as e:
            raise QueryError(f"cannot parse SQL: {e}") from e

    def close(self) -> None:
        self.con.close()
        if self._remove_spill is not None:
            self._remove_spill()


def _writing_part(con: duckdb.DuckDBPyConnection, select: str) -> str | None:
    """What in the SELECT statement ``select`` is not a read (a ``COPY`` as a CTE body, a call of
    ``json_execute_serialized_sql``), or None; only parsed (DuckDB's JSON form of the statement).

    >>> con = duckdb.connect(":memory:")
    >>> _writing_part(con, "WITH x AS (COPY (SELECT 1) TO 'f.csv') SELECT * FROM x"), _writing_part(con, "SELECT 1")
    ('COPY in a WITH clause', None)
    >>> con.close()
    """
    try:
        text = con.execute("SELECT json_serialize_sql($s)", {"s": select}).fetchall()[0][0]
    except duckdb.Error as e:
        return f"unreadable SQL ({e})"
    tree = json.loads(text)
    if tree.get("error"):
        return f"a statement DuckDB cannot show as a query ({tree.get('error_message', '')})"
    todo: list[Any] = [tree["statements"]]
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            kind, function = item.get("type"), item.get("function_name")
            if isinstance(kind, str) and (kind.endswith("_NODE") or "cte_map" in item) and kind not in _READ_NODES:
                return f"{kind.removesuffix('_NODE').removesuffix('_QUERY')} in a WITH clause"
            if isinstance(function, str) and function.lower() in _SQL_RUNNING_FUNCTIONS:
                return f"{function.lower()}()"
            if isinstance(function, str) and "csv" in function.lower():
                for argument in map(_argument_name, item.get("arguments") or ()):
                    if argument in _CSV_REJECTS_OPTIONS:
                        return f"{function.lower()}(..., {argument})"
            todo.extend(item.values())
    return None


def _argument_name(argument: Any) -> str | None:
    """The name of a call's argument in DuckDB's JSON form of a query (``name := v`` or ``name = v``), else None."""
    if not isinstance(argument, dict):
        return None
    if argument.get("name"):
        return str(argument["name"]).lower()
    expression = argument.get("expression")
    if not isinstance(expression, dict):
        return None
    left = expression.get("left") if expression.get("type") == "COMPARE_EQUAL" else None
    names = left.get("column_names") if isinstance(left, dict) and left.get("type") == "COLUMN_REF" else None
    return str(names[-1]).lower() if isinstance(names, list) and len(names) == 1 else None


def register_parquet_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    files: Sequence[str],
    empty: pa.Schema,
    present: Sequence[str] | None = None,
    stream_range: tuple[str, str] | None = None,
) -> None:
    """A view over given Parquet files (or an empty, typed view when there are none).

    ``stream_range`` (events only): just the streams whose ids lie in [first, last] — one shard
    of a distributed run.
    """
    if files:
        sql = _events_select(present or empty.names) if name == "events" else "SELECT * FROM read_parquet($files, union_by_name = true)"
        params: dict[str, Any] = {"files": list(files)}
        if stream_range is not None:
            sql += " WHERE stream_id >= $first_stream AND stream_id <= $last_stream"
            params.update(first_stream=stream_range[0], last_stream=stream_range[1])
        rel = con.sql(sql, params=params)
    else:
        rel = con.from_arrow(empty.empty_table())
    rel.create_view(name)


def connect(
    journal: Journal,
    *,
    extra_views: Mapping[str, tuple[Sequence[str], pa.Schema]] | None = None,
    threads: int | None = None,
    stream_range: tuple[str, str] | None = None,
    side_tables: bool = True,
    memory_limit_bytes: int | None = None,
    spill_limit_bytes: int | None = None,
) -> Session:
    """Open a sandboxed session: UTC, views over active files, no access outside the journal.

    ``stream_range=(first, last)``: ``events`` holds only the streams with ids in that range.
    ``extra_views`` add views or replace the default ones (``events`` included);
    ``side_tables=False`` leaves out the views of the side tables (quicker for one internal query).
    ``memory_limit_bytes``: DuckDB spills to a temporary directory beyond it; by default half the
    machine's memory (:func:`default_memory_limit`; DuckDB's own default of 80 % left too little
    for the Python side: a re-grade of 100M events peaked at 22 GB of 24), and a Dask worker
    passes half its own limit. The spill directory (``Session.spill_dir``, in the system's temporary
    directory) is private to this user and removed with the session; ``spill_limit_bytes`` bounds
    what it holds, by default half the free space of its disk (:func:`default_spill_limit`). When
    none can be made there (the disk full, ``TMPDIR`` unusable) the session opens without spilling
    (``Session.spill_problem`` says why; a query that would spill fails saying so).
    """
    con = duckdb.connect(":memory:")
    spill_dir: str | None = None
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET parquet_metadata_cache = true")
        if threads:
            con.execute("SET threads = $n", {"n": threads})
        _limit_memory(con, memory_limit_bytes)
        spill_dir, spill_problem = _spill_to_private_dir(con, spill_limit_bytes)
        if journal.remote:
            con.register_filesystem(filesystem())
        files = [
            f.path
            for f in journal.files()
            if stream_range is None
            or f.min_stream_id is None
            or f.max_stream_id is None
            or (f.min_stream_id <= stream_range[1] and f.max_stream_id >= stream_range[0])
        ]
        extra = dict(extra_views or {})
        if "events" not in extra:
            register_parquet_view(con, "events", files, ARROW_SCHEMA, journal.table_columns(), stream_range)
        views = {**(side_views(journal) if side_tables else {}), **extra}
        for name, (vfiles, schema) in views.items():
            register_parquet_view(con, name, vfiles, schema)
        _define_macros(con)
        root = str(journal.path if journal.remote else Path(str(journal.path)).resolve()) + "/"
        con.execute("SET allowed_directories = $dirs", {"dirs": [root, str(journal.path) + "/"]})
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
    except BaseException as e:
        con.close()
        if spill_dir:
            shutil.rmtree(spill_dir, ignore_errors=True)
        if isinstance(e, duckdb.Error):
            unreadable = isinstance(e, duckdb.IOException | duckdb.InvalidInputException)  # a file missing or damaged
            raise QueryError(
                f"cannot open a SQL session on {journal.path}: {e}",
                hint="a data file the journal lists is missing or damaged: journal verify names the streams it "
                "breaks; restore that file from a backup"
                if unreadable
                else "run the command again with --debug to see where it failed",
            ) from e
        raise
    return Session(con, journal, spill_dir, spill_problem)


def _limit_memory(con: duckdb.DuckDBPyConnection, limit_bytes: int | None) -> None:
    """Cap what ``con`` holds in memory at ``limit_bytes`` (by default :func:`default_memory_limit`):
    beyond it DuckDB spills to disk."""
    limit_bytes = limit_bytes or default_memory_limit()
    if limit_bytes:
        con.execute("SET memory_limit = $m", {"m": f"{max(limit_bytes >> 20, 64)}MiB"})


def _spill_to_private_dir(con: duckdb.DuckDBPyConnection, limit_bytes: int | None) -> tuple[str | None, str | None]:
    """Point ``con``'s spilling at a new directory of the system's temporary directory, holding at
    most ``limit_bytes`` (by default :func:`default_spill_limit`): (that directory, which the caller
    removes, None) or, when none can be made, (None, why: ``con`` does not spill)."""
    # spilled rows are the journal's (payloads): made here private to this user (0700), as DuckDB
    # would make it readable by all (0755, its files 0644), in ./.tmp of the working directory
    try:
        spill_dir = tempfile.mkdtemp(prefix="journal-duckdb-")
    except OSError as e:  # a full or unusable temporary directory: the session reads, but does not spill
        con.execute("SET temp_directory = ''")
        return None, f"no spill directory could be made in {tempfile.gettempdir()} ({e.strerror or e})"
    con.execute("SET temp_directory = $d", {"d": spill_dir})
    limit_bytes = limit_bytes or default_spill_limit(spill_dir)
    con.execute("SET max_temp_directory_size = $m", {"m": f"{max(limit_bytes >> 20, 1)}MiB"})
    return spill_dir, None


def default_memory_limit() -> int | None:
    """Half the machine's physical memory (bytes), None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return None


def default_spill_limit(directory: str) -> int:
    """Half the free space of the disk of ``directory`` (bytes): what a session may spill there.

    DuckDB's own bound, taken when it first spills, was larger than the disk's free space (176 GiB
    with 45 GiB free): one query (``SELECT ... FROM range(10000000000) ORDER BY random()``) could
    fill the disk that the journal's writers and every other program share.
    """
    return shutil.disk_usage(directory).free // 2


def query_tables(tables: Mapping[str, pa.Table], sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
    """Trusted SQL over in-memory Arrow tables only (the merge step of a distributed run): UTC, no file
    access; it holds in memory what a session does (:func:`default_memory_limit`) and beyond that spills,
    as a session does, to a private directory of bounded size removed after it."""
    con = duckdb.connect(":memory:")
    spill_dir: str | None = None
    try:
        con.execute("SET TimeZone = 'UTC'")
        _limit_memory(con, None)
        spill_dir, _ = _spill_to_private_dir(con, None)
        for name, table in tables.items():
            con.from_arrow(table).create_view(name)
        _define_macros(con)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con.sql(sql, params=dict(params) if params else None).to_arrow_table()
    except duckdb.Error as e:
        raise QueryError(f"query failed: {e}") from e
    finally:
        con.close()
        if spill_dir:
            shutil.rmtree(spill_dir, ignore_errors=True)


_SHA1_SQL: Final = "SELECT sha1($prefix || encode(name)) AS h FROM sha1_names"
_HASHERS = threading.local()  # one in-memory connection per thread, reused block after block


def sha1_hexes(prefix: bytes, names: pl.Series) -> pl.Series:
    """``sha1(prefix + name.encode()).hexdigest()`` for each name (text), on DuckDB's threads without
    the GIL; null names give null digests, in the order given (``polars_engine.uuid5_texts``' fallback).

    >>> import hashlib
    >>> sha1_hexes(b"\\xff", pl.Series(["é", None])).to_list() == [hashlib.sha1(b"\\xff" + "é".encode()).hexdigest(), None]
    True
    """
    con = getattr(_HASHERS, "con", None)
    if con is None:
        con = duckdb.connect(":memory:")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        _HASHERS.con = con
    try:
        con.register("sha1_names", pl.DataFrame({"name": names}))
        try:
            hexes = con.sql(_SHA1_SQL, params={"prefix": prefix}).pl()
        finally:
            con.unregister("sha1_names")
    except duckdb.Error as e:
        raise QueryError(f"hashing event ids failed: {e}") from e
    digests: pl.Series = hexes.to_series().alias(names.name)
    return digests


def check_one_select(sql: str) -> None:
    """QueryError unless ``sql`` is exactly one SELECT statement (only parsed: nothing runs)."""
    con = duckdb.connect(":memory:")
    try:
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as e:
            raise QueryError(f"cannot parse SQL: {e}") from e
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            found = ", ".join(st.type.name for st in statements) or "no statement"
            raise QueryError(f"one SELECT statement expected, found {found}")
        writes = _writing_part(con, statements[0].query)
        if writes:
            raise QueryError(f"one SELECT statement expected, found {writes} in it")
    finally:
        con.close()


def regex_problem(pattern: str) -> str | None:
    """Why DuckDB's regex engine (RE2) refuses ``pattern`` — look-arounds, back-references — or None.

    >>> regex_problem("gpt-4o.*") is None, regex_problem("gpt-4o(?!-mini)") is not None
    (True, True)
    """
    con = duckdb.connect(":memory:")
    try:
        con.execute("SELECT regexp_full_match('', $p)", {"p": pattern})
    except duckdb.Error as e:
        return str(e).removeprefix("Invalid Input Error: ")
    finally:
        con.close()
    return None


def raw_connection() -> duckdb.DuckDBPyConnection:
    """An unsandboxed in-memory connection (benchmarks' raw-DuckDB baseline only)."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


__all__ = [
    "PARTITION_COLUMNS",
    "Session",
    "check_one_select",
    "connect",
    "default_spill_limit",
    "query_tables",
    "raw_connection",
    "regex_problem",
    "register_parquet_view",
    "sha1_hexes",
]
