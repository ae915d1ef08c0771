"""Projections: named read models kept in their own Delta tables, caught up incrementally.

A :class:`Projection` turns events into rows of its table ``projection_<name>`` (a view of
that name in ``journal sql``). Two kinds:

- a **handler** ``(event, emit)`` called for each new event in position order; ``emit(row)``
  adds a row. With ``key`` columns a row replaces the earlier row with the same key (upsert);
  without, rows are appended.
- a **per-stream** function computing the rows of whole streams at once (vectorised, the
  built-ins ``runs`` and ``tool_calls``): catching up recomputes the streams that got new events
  and replaces their rows.

The checkpoint (the last position read and the projection's fingerprint) is written in the
same Delta commit as the rows, so a crash never leaves rows and checkpoint disagreeing; the
``projection_checkpoints`` table keeps the history. A projection whose code changed since its
last catch-up is rebuilt.

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
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.analysis.agent_run import AGENT_RUN, agent_run_states, stream_session
from toolkit.analysis.aggregates import EVENT_COLUMNS, Event
from toolkit.engines.polars_engine import scan_events
from toolkit.engines.queries import get_query
from toolkit.errors import ReplayError
from toolkit.journal.schema import TIMESTAMP
from toolkit.journal.side_tables import (
    append_rows,
    projection_checkpoint,
    projection_table,
    read_projection,
    write_projection,
)
from toolkit.journal.store import Journal

Emit = Callable[[Mapping[str, Any]], None]
Handler = Callable[[Event, Emit], None]
PerStream = Callable[[Journal, Sequence[str] | None], pa.Table]


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

    def __post_init__(self) -> None:
        projection_table(self.name)  # validates the name
        if (self.handler is None) == (self.per_stream is None):
            raise ReplayError(
                f"projection {self.name!r}: give exactly one of handler or per_stream",
                hint="handler(event, emit) for row-at-a-time read models",
            )
        if self.per_stream is not None and "stream_id" not in self.schema.names:
            raise ReplayError(f"projection {self.name!r}: a per-stream projection needs a stream_id column")
        missing = [k for k in self.key if k not in self.schema.names]
        if missing:
            raise ReplayError(f"projection {self.name!r}: key column {missing[0]!r} is not in its schema")

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        h.update(str(self.schema).encode())
        h.update(repr((self.key, self.event_types, self.salt)).encode())
        for fn in (self.handler, self.per_stream):
            if fn is not None:
                try:
                    h.update(inspect.getsource(fn).encode())
                except (OSError, TypeError):
                    h.update(repr(fn).encode())
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
    """Bring a projection up to the journal's last position (``reset``: rebuild from the start)."""
    p = get_projection(projection) if isinstance(projection, str) else projection
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
    start = 0 if report.rebuilt or cp is None else cp.position
    report.from_position = start
    if not report.rebuilt and start >= target:
        report.reason = "up to date"
        report.seconds = time.perf_counter() - started
        return report
    if p.per_stream is not None:
        rows, n = _per_stream(journal, p, start, target, report)
    else:
        rows, n = _handled(journal, p, start, target, report, progress)
    report.events = n
    written = write_projection(
        journal,
        p.name,
        rows,
        overwrite=True if p.key or p.per_stream is not None or report.rebuilt else False,
        checkpoint={"position": target, "fingerprint": p.fingerprint},
    )
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


def _new_events(journal: Journal, start: int, target: int) -> tuple[list[str], int]:
    """The streams with events in positions (start, target], and how many events that is."""
    lf = scan_events(journal).select("stream_id", "position")
    lf = lf.filter((pl.col("position") > start) & (pl.col("position") <= target))
    per_stream = lf.group_by("stream_id").agg(pl.len().alias("n")).collect()
    return sorted(per_stream["stream_id"].to_list()), int(per_stream["n"].sum())


def _per_stream(
    journal: Journal, p: Projection, start: int, target: int, report: CatchUpReport
) -> tuple[pa.Table, int]:
    assert p.per_stream is not None
    if report.rebuilt:
        rows = conform(p.per_stream(journal, None), p.schema)
        report.streams = len(pc.unique(rows.column("stream_id"))) if rows.num_rows else 0
        return rows, journal_events(journal, target)
    streams, n = _new_events(journal, start, target)
    report.streams = len(streams)
    fresh = conform(p.per_stream(journal, streams), p.schema)
    old = read_projection(journal, p.name)
    if old is not None and old.num_rows:
        keep = pc.invert(pc.is_in(old.column("stream_id"), pa.array(streams, pa.string())))
        fresh = pa.concat_tables([conform(old.filter(keep), p.schema), fresh])
        fresh = fresh.sort_by([(c, "ascending") for c in ("stream_id",)])
    return fresh, n


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
    lf = lf.filter((pl.col("position") > start) & (pl.col("position") <= target)).select(
        [*EVENT_COLUMNS]
    ).sort("position")
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
        ("cost_usd", pa.decimal128(18, 9)),
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
    return agent_run_states(journal, stream_ids).to_arrow()


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



RUNS: Final = register_projection(
    Projection(
        "runs",
        RUNS_SCHEMA,
        per_stream=runs_rows,
        key=("stream_id",),
        salt=AGENT_RUN.fingerprint + get_query("replay/agent_runs_by_stream").sql,
        description="One row per stream with the built-in agent-run state.",
    )
)
TOOL_CALLS: Final = register_projection(
    Projection(
        "tool_calls",
        TOOL_CALLS_SCHEMA,
        per_stream=tool_calls_rows,
        key=("stream_id", "call_key"),
        salt=get_query("replay/tool_calls_by_call").sql,
        description="Each tool call paired with its result: latency and outcome (ok, error, pending).",
    )
)
