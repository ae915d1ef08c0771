"""Projections: named read models kept in their own Delta tables, caught up incrementally.

A :class:`Projection` turns events into rows of its table ``projection_<name>`` (a view of
that name in ``journal sql``). Two kinds:

- a **handler** ``(event, emit)`` called for each new event in position order; ``emit(row)``
  adds a row. With ``key`` columns a row replaces the earlier row with the same key (upsert);
  without, rows are appended.
- a **per-stream** function computing the rows of whole streams at once (vectorised, the
  built-ins ``runs`` and ``tool_calls``). Catching up reads only the events after the checkpoint
  (the data files written since), hands them with the projection's current rows of the streams
  that already had events to the projection's ``incremental`` function (by default: recompute
  those streams), and replaces the rows of those streams; rows of streams that got nothing new
  stay in their files untouched, and rows of new streams are added in a new file.

The checkpoint (the last position read and the projection's fingerprint) is written in the
same Delta commit as the rows, so a crash never leaves rows and checkpoint disagreeing; the
``projection_checkpoints`` table keeps the history. A projection whose code (or the file
defining it: constants, helpers) changed since its last catch-up is rebuilt, and so is one built
before a purge removed events (its rows would still hold them).

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "tool_called", "tool_name": "t", "tool_call_id": "c1", "data": {}},
...                    {"event_type": "tool_result", "tool_name": "t", "tool_call_id": "c1", "data": {}}])
>>> catch_up(j, "tool_calls").events
2
>>> read_projection(j, "tool_calls").column("outcome").to_pylist()
['ok']
>>> j.close()
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.analysis.agent_run import AGENT_RUN, agent_run_states, merge_states, stream_session
from toolkit.analysis.aggregates import EVENT_COLUMNS, Event, code_of
from toolkit.engines.duckdb_engine import MACROS
from toolkit.engines.polars_engine import scan_events
from toolkit.engines.queries import get_query
from toolkit.errors import ReplayError
from toolkit.journal.lock import write_lock
from toolkit.journal.schema import ARROW_SCHEMA, TIMESTAMP
from toolkit.journal.side_tables import (
    ProjectionFile,
    append_rows,
    projection_checkpoint,
    projection_files,
    projection_table,
    read_projection,
    read_projection_files,
    read_table,
    replace_projection_files,
    write_projection,
)
from toolkit.journal.store import Journal

Emit = Callable[[Mapping[str, Any]], None]
Handler = Callable[[Event, Emit], None]
PerStream = Callable[[Journal, Sequence[str] | None], pa.Table]

#: a per-stream projection's table holds at most this many files after a catch-up: past it,
#: the smallest files are rewritten together with the new rows
MAX_FILES: Final = 16


@dataclass(frozen=True)
class NewEvents:
    """What an incremental catch-up hands a per-stream projection's ``incremental`` function."""

    events: pa.Table  # the events at positions (start, target]: stream_id, version, position + the projection's columns
    files: list[str]  # the data files holding them (all events of ``new_streams`` are in these)
    new_streams: list[str]  # streams whose first event (version 1) is among them
    continuing: list[str]  # streams that had events before: their rows are replaced
    old_rows: pa.Table  # the projection's current rows of ``continuing``
    after: int = 0  # the position the projection was caught up to: ``events`` are the ones after it


#: ``(journal, new) -> rows`` of every stream in ``new.new_streams`` and ``new.continuing``
Incremental = Callable[[Journal, NewEvents], pa.Table]


@dataclass(frozen=True)
class Projection:
    """A named read model (see the module docstring)."""

    name: str
    schema: pa.Schema
    handler: Handler | None = None
    key: tuple[str, ...] = ()
    event_types: tuple[str, ...] | None = None
    per_stream: PerStream | None = None
    description: str = ""
    salt: str = ""  # whatever else the rows depend on (e.g. the SQL a per-stream function runs)
    incremental: Incremental | None = None  # per-stream only: rows from the new events and the old rows
    incremental_columns: tuple[str, ...] = ()  # event columns ``incremental`` reads

    def __post_init__(self) -> None:
        projection_table(self.name)  # validates the name
        if (self.handler is None) == (self.per_stream is None):
            raise ReplayError(
                f"projection {self.name!r}: give exactly one of handler or per_stream",
                hint="handler(event, emit) for row-at-a-time read models",
            )
        if self.per_stream is not None and "stream_id" not in self.schema.names:
            raise ReplayError(f"projection {self.name!r}: a per-stream projection needs a stream_id column")
        if self.incremental is not None and self.per_stream is None:
            raise ReplayError(f"projection {self.name!r}: incremental needs a per_stream function for rebuilds")
        missing = [k for k in self.key if k not in self.schema.names]
        if missing:
            raise ReplayError(f"projection {self.name!r}: key column {missing[0]!r} is not in its schema")

    @cached_property
    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        h.update(str(self.schema).encode())
        h.update(repr((self.key, self.event_types, self.salt, self.incremental_columns)).encode())
        for fn in (self.handler, self.per_stream, self.incremental):
            if fn is not None:
                h.update(code_of(fn).encode())  # with the file defining it: its constants and helpers
        return h.hexdigest()[:16]


_REGISTRY: dict[str, Projection] = {}


def register_projection(projection: Projection) -> Projection:
    """Make a projection available by name (``journal project NAME``); replaces one of that name."""
    _REGISTRY[projection.name] = projection
    return projection


def get_projection(name: str) -> Projection:
    found = _REGISTRY.get(name)
    if found is None:
        raise ReplayError(
            f"no projection {name!r}",
            hint=f"known: {', '.join(sorted(_REGISTRY))}; load your own with --plugins FILE.py",
            name=name,
        )
    return found


def projections() -> dict[str, Projection]:
    return dict(sorted(_REGISTRY.items()))


@dataclass
class CatchUpReport:
    projection: str
    events: int = 0
    rows: int = 0
    from_position: int = 0
    to_position: int = 0
    rebuilt: bool = False
    reason: str = ""
    seconds: float = 0.0
    streams: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def catch_up(
    journal: Journal,
    projection: str | Projection,
    *,
    reset: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CatchUpReport:
    """Bring a projection up to the journal's last position (``reset``: rebuild from the start).

    Checkpoint, read, fold and write happen under one hold of the write lock: two catch-ups at
    once would otherwise both add the rows after the same checkpoint. A journal on object
    storage is refused: no SQL session, notebook or redaction sees its projection tables."""
    p = get_projection(projection) if isinstance(projection, str) else projection
    if journal.remote:  # the table was written, never read, and kept the payloads a redaction removed
        raise ReplayError(
            f"{journal.path}: projections are kept for local journals only",
            hint="query the events of a journal on object storage directly: journal sql, journal state",
            journal=str(journal.path),
        )
    with write_lock(journal.path, journal.config.lock_timeout_s, nested=True):
        journal.refresh()
        return _catch_up(journal, p, reset=reset, progress=progress)


def _catch_up(
    journal: Journal, p: Projection, *, reset: bool, progress: Callable[[int, int], None] | None
) -> CatchUpReport:
    started = time.perf_counter()
    target = journal.max_position()
    cp = projection_checkpoint(journal, p.name)
    report = CatchUpReport(p.name, to_position=target)
    if reset:
        report.rebuilt, report.reason = True, "--reset"
    elif cp is None:
        report.rebuilt, report.reason = True, "first build"
    elif cp.fingerprint != p.fingerprint:
        report.rebuilt, report.reason = True, "the projection's code or schema changed since its last build"
    removals = journal_removals(journal)
    if not report.rebuilt and cp is not None and cp.removals != removals:
        report.rebuilt, report.reason = True, "events were purged since its last build"
    start = 0 if report.rebuilt or cp is None else cp.position
    report.from_position = start
    if not report.rebuilt and start >= target:
        report.reason = "up to date"
        report.seconds = time.perf_counter() - started
        return report
    checkpoint = {"position": target, "fingerprint": p.fingerprint, "removals": removals}
    if p.per_stream is not None and not report.rebuilt:
        rows, n, replaced = _per_stream_incremental(journal, p, start, target, report)
        written = replace_projection_files(journal, p.name, rows, remove=replaced, checkpoint=checkpoint)
    else:
        if p.per_stream is not None:
            rows, n = _per_stream_rebuild(journal, p, target, report)
        else:
            rows, n = _handled(journal, p, start, target, report, progress)
        written = write_projection(
            journal,
            p.name,
            rows,
            overwrite=True if p.key or p.per_stream is not None or report.rebuilt else False,
            checkpoint=checkpoint,
        )
    report.events = n
    report.rows = written
    append_rows(
        journal,
        "projection_checkpoints",
        [
            {
                "projection": p.name,
                "fingerprint": p.fingerprint,
                "position": target,
                "events": n,
                "rows": written,
                "reset": report.rebuilt,
            }
        ],
    )
    report.seconds = time.perf_counter() - started
    return report


def journal_removals(journal: Journal) -> str:
    """The purges the journal records (retention, ``journal archive --delete``) as one digest ("": none).

    Rows built before a purge hold events that are gone (a rebuild has none of them), and the
    positions of removed last events are given again to later appends: a checkpoint written
    under other removals is no place to catch up from."""
    ids = sorted(str(i) for i in read_table(journal, "purges").column("purge_id").to_pylist())
    return hashlib.sha256("\0".join(ids).encode()).hexdigest()[:16] if ids else ""


def _per_stream_rebuild(journal: Journal, p: Projection, target: int, report: CatchUpReport) -> tuple[pa.Table, int]:
    assert p.per_stream is not None
    rows = conform(p.per_stream(journal, None), p.schema)
    report.streams = len(pc.unique(rows.column("stream_id"))) if rows.num_rows else 0
    return rows, journal_events(journal, target)


def _per_stream_incremental(
    journal: Journal, p: Projection, start: int, target: int, report: CatchUpReport
) -> tuple[pa.Table, int, list[ProjectionFile]]:
    """The rows to add, the events read and the table files they replace (see the module docstring)."""
    assert p.per_stream is not None
    new = read_new_events(journal, start, target, p.incremental_columns)
    touched = new.events.group_by("stream_id").aggregate([("version", "min")])
    first = touched.column("version_min")
    new_streams = sorted(touched.filter(pc.equal(first, 1)).column("stream_id").to_pylist())
    continuing = sorted(touched.filter(pc.not_equal(first, 1)).column("stream_id").to_pylist())
    report.streams = touched.num_rows
    files = projection_files(journal, p.name)
    replaced: list[ProjectionFile] = []
    old = p.schema.empty_table()
    if continuing:
        wanted = pa.array(continuing, pa.string())
        for f in files:
            ids = read_projection_files([f], p.schema, ["stream_id"]).column("stream_id")
            if pc.any(pc.is_in(ids, wanted)).as_py():
                replaced.append(f)
        old = read_projection_files(replaced, p.schema)
    mine = pc.is_in(old.column("stream_id"), pa.array(continuing, pa.string()))
    batch = NewEvents(new.events, new.files, new_streams, continuing, old.filter(mine), start)
    if p.incremental is not None:
        rows = p.incremental(journal, batch)
    else:
        rows = p.per_stream(journal, sorted([*new_streams, *continuing]))
    parts = [old.filter(pc.invert(mine)), conform(rows, p.schema)]
    # keep the table to a few files: past MAX_FILES, the smallest go into the new file too
    left = sorted((f for f in files if f not in replaced), key=lambda f: f.rows)
    extra = left[: len(left) - MAX_FILES // 2] if len(left) + 1 > MAX_FILES else []
    if extra:
        parts.append(read_projection_files(extra, p.schema))
        replaced += extra
    out = pa.concat_tables(parts)
    return out.sort_by([("stream_id", "ascending")]) if out.num_rows else out, new.events.num_rows, replaced


@dataclass(frozen=True)
class _Read:
    events: pa.Table
    files: list[str]


def read_new_events(journal: Journal, start: int, target: int, columns: Sequence[str]) -> _Read:
    """Events at positions (start, target], read only from the data files that can hold them."""
    cols = list(dict.fromkeys(["stream_id", "version", "position", *columns]))
    infos = [f for f in journal.files() if f.max_position is None or f.max_position > start]
    if not infos:
        return _Read(pa.schema([ARROW_SCHEMA.field(c) for c in cols]).empty_table(), [])
    table = pa.concat_tables([journal.read_file(f, cols) for f in infos])
    pos = table.column("position")
    bounds = pc.min_max(pos).as_py()
    if table.num_rows and not (bounds["min"] > start and bounds["max"] <= target):
        table = table.filter(pc.and_(pc.greater(pos, start), pc.less_equal(pos, target)))
    return _Read(table, [f.path for f in infos])


def journal_events(journal: Journal, target: int) -> int:
    """Events at positions up to ``target`` (the Delta log's row counts when that is all of them)."""
    if target >= journal.max_position():
        return sum(f.rows for f in journal.files())
    lf = scan_events(journal).select("position").filter(pl.col("position") <= target)
    return int(lf.select(pl.len()).collect().item())


def _handled(
    journal: Journal,
    p: Projection,
    start: int,
    target: int,
    report: CatchUpReport,
    progress: Callable[[int, int], None] | None,
) -> tuple[pa.Table, int]:
    from toolkit.analysis.replay import events_from_table

    assert p.handler is not None
    lf = scan_events(journal, event_types=list(p.event_types) if p.event_types else None)
    lf = (
        lf.filter((pl.col("position") > start) & (pl.col("position") <= target))
        .select([*EVENT_COLUMNS])
        .sort("position")
    )
    frame = lf.collect()
    out: list[Mapping[str, Any]] = []
    names = frozenset(p.schema.names)

    def emit(row: Mapping[str, Any]) -> None:
        if not names.issuperset(row):
            extra = sorted(set(row) - names)
            raise ReplayError(
                f"projection {p.name!r}: an emitted row does not fit its schema: no column(s) {', '.join(extra)}",
                hint=f"emit dicts with the columns {', '.join(p.schema.names)}",
            )
        out.append(row)

    handler = p.handler
    n = 0
    total = frame.height
    for batch in frame.to_arrow().to_batches(max_chunksize=65_536):
        for e in events_from_table(pa.Table.from_batches([batch])):
            try:
                handler(e, emit)
            except ReplayError:
                raise
            except Exception as err:
                raise ReplayError(
                    f"projection {p.name!r}: its handler failed on stream {e.stream_id!r} version {e.version}: "
                    f"{type(err).__name__}: {err}",
                    hint="fix the handler in your plugin file; nothing was written",
                    stream_id=e.stream_id,
                    version=e.version,
                ) from err
            n += 1
        if progress is not None:
            progress(n, total)
    try:
        new = pa.Table.from_pylist(list(out), schema=p.schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
        raise ReplayError(
            f"projection {p.name!r}: an emitted row does not fit its schema: {err}",
            hint=f"emit dicts with the columns {', '.join(p.schema.names)}",
        ) from err
    if not p.key:
        return new, n
    old = None if report.rebuilt else read_projection(journal, p.name)
    return upsert(old, new, p.key, p.schema), n


def upsert(old: pa.Table | None, new: pa.Table, key: Sequence[str], schema: pa.Schema) -> pa.Table:
    """Rows of ``old`` whose key is not in ``new``, then ``new`` keeping the last row per key."""
    new_df = pl.from_arrow(new)
    assert isinstance(new_df, pl.DataFrame)
    new_df = new_df.unique(subset=list(key), keep="last", maintain_order=True)
    if old is not None and old.num_rows:
        old_df = pl.from_arrow(conform(old, schema))
        assert isinstance(old_df, pl.DataFrame)
        kept = old_df.join(new_df.select(list(key)), on=list(key), how="anti", nulls_equal=True)
        new_df = pl.concat([kept, new_df])
    return conform(new_df.to_arrow(), schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (large types cast down)."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ReplayError(f"projection rows lack column(s) {', '.join(missing)}")
    return table.select(schema.names).cast(schema)


# ---------------------------------------------------------------------------- built-ins

_PAIR = pa.struct([pa.field("name", pa.string()), pa.field("n", pa.int64())])
_COUNTS = pa.struct(
    [pa.field(n, pa.string() if n == "name" else pa.int64()) for n in ("name", "called", "results", "failed")]
)

RUNS_SCHEMA: Final = pa.schema(
    [
        ("stream_id", pa.string()),
        ("version", pa.int64()),
        ("events", pa.int64()),
        ("status", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("tokens_cache_read", pa.int64()),
        ("tokens_cache_write", pa.int64()),
        ("tokens_reasoning", pa.int64()),
        ("cost_usd", pa.decimal128(38, 9)),  # a run's sum: past an event's decimal128(18, 9) (1e9 USD)
        ("llm_calls", pa.int64()),
        ("tool_calls", pa.int64()),
        ("tool_failures", pa.int64()),
        ("last_tool", pa.string()),
        ("model", pa.string()),
        ("plans", pa.int64()),
        ("goals", pa.int64()),
        ("goals_completed", pa.int64()),
        ("errors", pa.int64()),
        ("consecutive_errors", pa.int64()),
        ("emergency_stop", pa.bool_()),
        ("ticks", pa.int64()),
        ("first_at", TIMESTAMP),
        ("last_at", TIMESTAMP),
        ("tools", pa.list_(_PAIR)),
        ("tools_failed", pa.list_(_PAIR)),
        ("models", pa.list_(_PAIR)),
        # for merging later events into the row (agent_run.merge_states): per-tool calls, results
        # and failures; whether the state was folded in Python (assistant topics)
        ("tool_counts", pa.list_(_COUNTS)),
        ("folded", pa.bool_()),
    ]
)

TOOL_CALLS_SCHEMA: Final = pa.schema(
    [
        ("stream_id", pa.string()),
        ("call_key", pa.string()),
        ("tool_name", pa.string()),
        ("tool_call_id", pa.string()),
        ("called_version", pa.int64()),
        ("result_version", pa.int64()),
        ("called_at", TIMESTAMP),
        ("result_at", TIMESTAMP),
        ("latency_ms", pa.float64()),
        ("outcome", pa.string()),
        ("error", pa.string()),
    ]
)


def runs_rows(journal: Journal, stream_ids: Sequence[str] | None) -> pa.Table:
    """One row per stream with its agent-run state (built-in projection ``runs``)."""
    if stream_ids is not None and not stream_ids:
        return RUNS_SCHEMA.empty_table()
    return agent_run_states(journal, stream_ids, mergeable=True).to_arrow()


def runs_incremental(journal: Journal, new: NewEvents) -> pa.Table:
    """Rows of ``runs`` for the streams that got events: new streams from the new files alone,
    continuing ones by merging the state of their new events into their old rows."""
    old = pl.from_arrow(new.old_rows)
    assert isinstance(old, pl.DataFrame)
    return conform(merge_states(journal, old, new.new_streams, new.after, new.files).to_arrow(), RUNS_SCHEMA)


def tool_calls_rows(journal: Journal, stream_ids: Sequence[str] | None) -> pa.Table:
    """Each tool call paired with its result (built-in projection ``tool_calls``)."""
    if stream_ids is not None and not stream_ids:
        return TOOL_CALLS_SCHEMA.empty_table()
    q = get_query("replay/tool_calls_by_call")
    session = stream_session(journal, stream_ids)
    try:
        return session.query(q.sql, q.bind({"stream_ids": list(stream_ids) if stream_ids is not None else None}))
    finally:
        session.close()


_TOOL_EVENT_COLUMNS: Final = (
    "event_type",
    "occurred_at",
    "tool_name",
    "tool_call_id",
    "is_error",
    "error",
    "duration_ms",
)
_PAIR_KEYS: Final = ["stream_id", "no_id", "pkey", "k"]


def tool_calls_incremental(journal: Journal, new: NewEvents) -> pa.Table:
    """Rows of ``tool_calls`` for the streams that got events, from the new events and the old rows.

    The same pairing as ``queries/replay/tool_calls_by_call.sql``: the k-th call with an id pairs
    with the k-th event ending a call with that id (a result, or an error event naming the id);
    without ids, the k-th call of a tool with its k-th result. A pair once complete never changes,
    so only the old rows still open (a call without result, a result or error without call) are
    taken apart and paired again with the new events, after the complete pairs of their key
    (their count is where k goes on).
    """
    frame = pl.from_arrow(new.events.select(["stream_id", "version", *_TOOL_EVENT_COLUMNS]))
    assert isinstance(frame, pl.DataFrame)
    kind = pl.col("event_type")
    ends_call = (kind == "error") & pl.col("tool_call_id").is_not_null()  # a timeout, say
    fresh = frame.filter(kind.is_in(["tool_called", "tool_result"]) | ends_call).select(
        "stream_id",
        "version",
        (kind == "tool_called").alias("is_call"),
        "occurred_at",
        _tool_name(pl.col("tool_name")).alias("tool"),
        "tool_call_id",
        (pl.col("is_error") | (kind == "error")).alias("is_error"),
        "error",
        "duration_ms",
    )
    old = pl.from_arrow(new.old_rows)
    assert isinstance(old, pl.DataFrame)
    complete = old.filter(pl.col("called_version").is_not_null() & pl.col("result_version").is_not_null())
    open_ = old.filter(pl.col("called_version").is_null() | pl.col("result_version").is_null())
    reopened = open_.select(
        "stream_id",
        pl.coalesce("called_version", "result_version").alias("version"),
        pl.col("called_version").is_not_null().alias("is_call"),
        pl.coalesce("called_at", "result_at").alias("occurred_at"),
        pl.col("tool_name").alias("tool"),
        "tool_call_id",
        pl.when(pl.col("called_version").is_null()).then(pl.col("outcome") == "error").alias("is_error"),
        "error",
        # a row without call has latency_ms = the result's own duration_ms
        pl.when(pl.col("called_version").is_null()).then(pl.col("latency_ms")).alias("duration_ms"),
    )
    offsets = (
        complete.select("stream_id", *_pair_key(pl.col("tool_call_id"), pl.col("tool_name")))
        .group_by("stream_id", "no_id", "pkey")
        .agg(pl.len().cast(pl.Int64).alias("base"))
    )
    events = pl.concat([reopened, fresh.cast(reopened.schema)]).with_columns(
        *_pair_key(pl.col("tool_call_id"), pl.col("tool"))
    )
    events = (
        events.join(offsets, on=["stream_id", "no_id", "pkey"], how="left")
        .with_columns(
            (
                pl.col("version").rank("ordinal").over("stream_id", "no_id", "pkey", "is_call").cast(pl.Int64)
                + pl.col("base").fill_null(0)
            ).alias("k")
        )
        .drop("base")
    )
    calls = events.filter(pl.col("is_call"))
    results = events.filter(~pl.col("is_call"))
    j = calls.join(results, on=_PAIR_KEYS, how="full", suffix="_r", nulls_equal=False)
    c = pl.col

    def r(name: str) -> pl.Expr:
        return pl.col(f"{name}_r")

    paired = j.select(
        pl.coalesce(c("stream_id"), r("stream_id")).alias("stream_id"),
        pl.when(pl.coalesce(c("tool_call_id"), r("tool_call_id")).is_not_null())
        .then(pl.coalesce(c("tool_call_id"), r("tool_call_id")))
        .otherwise(pl.coalesce(c("tool"), r("tool")) + "#" + pl.coalesce(c("k"), r("k")).cast(pl.String))
        .alias("call_key"),
        pl.coalesce(c("tool"), r("tool")).alias("tool_name"),
        pl.coalesce(c("tool_call_id"), r("tool_call_id")).alias("tool_call_id"),
        c("version").alias("called_version"),
        r("version").alias("result_version"),
        c("occurred_at").alias("called_at"),
        r("occurred_at").alias("result_at"),
        r("duration_ms").alias("latency_ms"),  # filled below where null
        (r("occurred_at") - c("occurred_at")).dt.total_microseconds().alias("gap_us"),
        pl.when(r("version").is_null())
        .then(pl.lit("pending"))
        .when(r("is_error"))
        .then(pl.lit("error"))
        .otherwise(pl.lit("ok"))
        .alias("outcome"),
        r("error").alias("error"),
    )
    # µs / 1000 as a true division, like the SQL (Polars divides by a literal via its reciprocal)
    table = paired.to_arrow()
    gap_ms = pc.divide(pc.cast(table.column("gap_us"), pa.float64()), 1000.0)
    table = table.set_column(
        table.schema.get_field_index("latency_ms"), "latency_ms", pc.coalesce(table.column("latency_ms"), gap_ms)
    ).drop_columns(["gap_us"])
    return pa.concat_tables([conform(complete.to_arrow(), TOOL_CALLS_SCHEMA), conform(table, TOOL_CALLS_SCHEMA)])


def _tool_name(name: pl.Expr) -> pl.Expr:
    return pl.when(name.is_null() | (name == "")).then(pl.lit("unknown")).otherwise(name)


def _pair_key(call_id: pl.Expr, tool: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Calls and results pair within (stream, has no id, id or else tool name)."""
    return call_id.is_null().alias("no_id"), pl.coalesce(call_id, tool).alias("pkey")


RUNS: Final = register_projection(
    Projection(
        "runs",
        RUNS_SCHEMA,
        per_stream=runs_rows,
        incremental=runs_incremental,
        key=("stream_id",),
        salt=AGENT_RUN.fingerprint
        + "".join(MACROS)
        + get_query("replay/agent_runs_by_stream").sql
        + get_query("replay/agent_run_names_by_stream").sql,
        description="One row per stream with the built-in agent-run state.",
    )
)
TOOL_CALLS: Final = register_projection(
    Projection(
        "tool_calls",
        TOOL_CALLS_SCHEMA,
        per_stream=tool_calls_rows,
        incremental=tool_calls_incremental,
        incremental_columns=_TOOL_EVENT_COLUMNS,
        key=("stream_id", "called_version", "result_version"),
        salt=get_query("replay/tool_calls_by_call").sql,
        description="Each tool call paired with its result (or an error event naming it): latency and outcome.",
    )
)
