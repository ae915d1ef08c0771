"""Python rules over replayed aggregate state: the state after every event, judged by the rule.

A Python rule ``holds(state, params)`` answers ``True`` (holds), ``False`` or a message string
(does not). The answer a re-grade must give per stream is the plain fold's
(:func:`fold_failures`, kept as the reference): fold the stream's events in version order with the
rule's aggregate (the agent run unless the rule names another), ask the rule after every event,
and report the first failing version, its message, the failing versions and how many events fail.
A rule that raises at an event becomes a finding of kind ``error`` for that stream (carrying the
exception) and the stream's grading stops there; other streams go on.

:func:`python_failures` gives the same answer with much less Python per event:

- **Column-wise states** (the built-in agent-run aggregate): the state after every event is a set
  of per-stream running columns (sums, counts, last values, the trailing error run) computed by
  Polars, so no ``Event`` is built and no reducer runs. The rule reads them through a light view
  (:class:`RunStateView`). A rule that reads a part of the state the columns do not hold (the
  per-tool dicts, the plan, goals) raises :class:`NeedsFold` inside the view and the rule is
  graded by folding instead; streams holding assistant topics (goals, ticks, emergency stops)
  are always folded, as ``agent_run_states`` does.
- **Monotone rules** (``monotone=True``: once broken, stays broken) hold on every event of a
  stream iff they hold on its final state, so the final state is judged first — the last row of
  the columns, or (folding) the latest snapshot with the current fingerprint plus the events after
  it — and only streams failing there are walked from version 1, stopping at the first failure:
  the events from there to the end are the failing ones. The rule is trusted as bisection trusts
  it: a declared-monotone rule that holds again later, or raises only after failing, is graded as
  if it stayed failed (the plain fold would count fewer failing events, or report the error).
  One exception is checked in the data: the agent run's cost only grows unless an event carries a
  negative cost (a refund, a credit), and a rule monotone in it (``budget_state``) can hold again
  after such an event. Streams with one (:func:`cost_falls`) are judged at every event, without
  the shortcut.
- **Folding** (any aggregate): events are decoded column-wise per chunk (one ``to_list`` per
  column, timestamps as integers) and an ``Event`` is built only for the rows folded.
- Worker processes (all cores) each grade a contiguous id range and open the journal once, when
  a selection is large enough to pay for starting them: from ``MIN_STREAMS_PER_WORKER`` streams
  each when folding, from ``MIN_STREAMS_PER_COLUMN_WORKER`` for column-wise grading (Polars
  already spreads the column work over every core).

``LAST_STATS`` holds what the last :func:`python_failures` call did (events judged, events folded).
"""

from __future__ import annotations

import datetime as dt
import functools
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa

from toolkit.analysis.agent_run import TOOL_CALL_FINISH_REASONS
from toolkit.analysis.aggregates import EPOCH, EVENT_COLUMNS, Aggregate, Event
from toolkit.analysis.rules import Rule
from toolkit.analysis.verdicts import EVIDENCE_VERSIONS, FAILURE_SCHEMA, attach_event_info
from toolkit.engines.polars_engine import scan_events
from toolkit.journal.store import Journal

CHUNK_STREAMS: Final = 10_000  # streams decoded per batch when folding
CHUNK_STREAMS_COLUMNS: Final = 50_000  # streams per batch of column-wise states
MIN_STREAMS_PER_WORKER: Final = 50_000  # folding: below this a second process costs more than it saves
MIN_STREAMS_PER_COLUMN_WORKER: Final = 1_000_000  # column-wise: 2 processes were slower on the 10M journal (loaded)
DECISIVE_STATUS: Final = {  # agent_run._DECISIVE but for the assistant topics (their streams are folded)
    "user_message": "running",
    "plan_created": "running",
    "llm_request": "running",
    "tool_called": "running",
    "tool_result": "running",
    "llm_response": "answered",  # running when it asks for tool calls (column requests_tools)
    "error": "aborted",
}


def requests_tools() -> pl.Expr:
    """``agent_run.requests_tools`` of each ``llm_response``'s payload, False for other events, in
    Polars (the column ``requests_tools`` of :data:`STATE_COLUMNS`).

    Payloads that cannot ask for tools (they neither name ``tool_calls``/``tool_use`` nor escape a
    character) are not parsed. JSON paths give a value as text, a string without its quotes, an array
    as compact JSON: an array is told from a string by its first item (absent for a string), and a
    ``finish_reasons`` array holds a reason when the reason is one of its items, quoted, between
    ``[`` or ``,`` and ``,`` or ``]``. (A reason inside an array nested in ``finish_reasons``, or a
    string ``tool_calls`` starting with ``[null``, would count too, unlike in Python and SQL.)
    """
    data = pl.col("data")
    maybe = (pl.col("event_type") == "llm_response") & (
        data.str.contains("tool_", literal=True) | data.str.contains("\\", literal=True)
    )
    text = pl.when(maybe).then(data)  # null elsewhere: not parsed
    reasons = list(TOOL_CALL_FINISH_REASONS)

    def array(path: str) -> pl.Expr:  # the array at path as compact JSON (null when not a non-empty array)
        value = text.str.json_path_match(path)
        return pl.when(text.str.json_path_match(f"{path}[0]").is_not_null() | value.str.starts_with("[null")).then(value)

    listed = "|".join(re.escape(r) for r in TOOL_CALL_FINISH_REASONS)
    return (
        text.str.json_path_match("$.finish_reason").is_in(reasons)
        | text.str.json_path_match("$.stop_reason").is_in(reasons)
        | array("$.finish_reasons").str.contains(f'(?:^\\[|,)"(?:{listed})"(?:,|\\]$)')
        | array("$.tool_calls").is_not_null()
    ).fill_null(False).alias("requests_tools")


# what column-wise states read; ``status`` also needs :func:`requests_tools`, which reads the
# payloads of the LLM responses: read only when a rule reads the status (:func:`tools_of`)
STATE_COLUMNS: Final = (
    "stream_id", "version", "position", "event_type", "occurred_at", "model", "tool_name", "tokens_in", "tokens_out",
    "tokens_cache_read", "tokens_cache_write", "tokens_reasoning", "cost_usd", "is_error",
)


def tools_of(journal: Journal) -> Callable[[pl.DataFrame], pl.Series]:
    """For a frame of the journal's events (stream_id, position, event_type): its ``requests_tools``
    column, read from the payloads of its LLM responses only (the other payloads, most of the
    journal's bytes, stay unread), matched by position (a damaged stream may repeat a version)."""

    def column(frame: pl.DataFrame) -> pl.Series:
        asked = frame.filter(pl.col("event_type") == "llm_response").get_column("stream_id").unique().sort()
        if not asked.len():
            return pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True).alias("requests_tools")
        ids = asked.to_list()
        found = (
            scan_events(journal, stream_ids=ids)
            .filter(pl.col("stream_id").is_between(pl.lit(ids[0]), pl.lit(ids[-1])) & (pl.col("event_type") == "llm_response"))
            .select("position", requests_tools())
            .collect()
        )
        return (
            frame.select("position")
            .join(found, on="position", how="left", maintain_order="left")
            .get_column("requests_tools").fill_null(False)
        )

    return column


def cost_falls() -> pl.Expr:
    """True on an event with a negative cost (a refund, a credit): the agent run's cost goes down
    there, so a rule declared monotone in it may hold again later. (Token counts cannot fall: the
    journal refuses negative ones at import.)"""
    return (pl.col("cost_usd") < 0).fill_null(False)


def falling_streams(frame: pl.DataFrame, key: str = "stream_id") -> pl.Series:
    """The ``key`` values of the streams of ``frame`` holding an event whose cost falls."""
    return frame.filter(cost_falls()).get_column(key).unique()


class NeedsFold(BaseException):  # a signal: BaseException, so a rule's `except Exception` lets it through
    """A rule read a part of the agent-run state that column-wise states do not hold."""


@dataclass
class GradeStats:
    """What grading one rule did: streams, events, rule calls, events folded by the reducer."""

    streams: int = 0
    events: int = 0
    judged: int = 0  # rule evaluations
    folded: int = 0  # events turned into Event objects and folded by the reducer in Python
    columnwise_streams: int = 0  # streams whose states came from columns
    workers: int = 1

    def add(self, other: GradeStats) -> None:
        for f in fields(self):
            if f.name != "workers":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


LAST_STATS = GradeStats()

Row = dict[str, Any]


def rule_aggregate(rule: Rule) -> Aggregate[Any]:
    if rule.aggregate is not None:
        agg: Aggregate[Any] = rule.aggregate
        return agg
    from toolkit.analysis.agent_run import AGENT_RUN

    return AGENT_RUN


def judge(rule: Rule, state: Any, bound: dict[str, Any]) -> tuple[bool, str | None]:
    """(holds, message) of a Python rule on one state."""
    assert rule.python is not None
    return verdict_of(rule.python(state, bound))


def verdict_of(verdict: Any) -> tuple[bool, str | None]:
    """(holds, message) of what a rule returned: True or None hold, False or a message string fail.

    Anything else is a mistake in the rule (``return ok, message`` is a tuple, always truthy) and
    raises TypeError, which a re-grade records as a finding of kind error.

    >>> verdict_of("over budget"), verdict_of(None)
    ((False, 'over budget'), (True, None))
    >>> verdict_of((False, "over budget"))
    Traceback (most recent call last):
    ...
    TypeError: the rule returned a tuple ((False, 'over budget')); a rule returns True, False or a message string
    """
    if verdict is True or verdict is None:
        return True, None
    if verdict is False:
        return False, None
    if isinstance(verdict, str):
        return False, verdict
    if type(verdict).__name__ == "bool_":  # NumPy's bool
        return bool(verdict), None
    raise TypeError(
        f"the rule returned a {type(verdict).__name__} ({verdict!r:.80}); a rule returns True, False or a message string"
    )


def fold_event(aggregate: Aggregate[Any], state: Any, event: Event) -> Any:
    """Apply one event the way replay does (models validate payloads first; misfits are skipped)."""
    if aggregate.events and event.event_type in aggregate.events:
        if aggregate.prepare(event) is not None:
            return state
    return aggregate.reducer(state, event)


# ---------------------------------------------------------------------------- reading streams


def _chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    ordered = sorted(ids)
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def _read(journal: Journal, chunk: list[str], columns: Sequence[str]) -> pl.DataFrame:
    # a contiguous id range lets row-group statistics skip most of the journal (files are sorted
    # by stream_id); the membership test then drops streams not asked for
    return (
        scan_events(journal, stream_ids=chunk)
        .filter(pl.col("stream_id").is_between(pl.lit(chunk[0]), pl.lit(chunk[-1])))
        .select(list(columns))
        .sort("stream_id", "version")
        .collect()
    )


def _spans(frame: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(stream_id, first row, end row) of each stream in a frame sorted by stream_id."""
    counts = frame.get_column("stream_id").rle()
    out = []
    start = 0
    for sid, n in zip(counts.struct.field("value").to_list(), counts.struct.field("len").to_list(), strict=True):
        out.append((sid, start, start + n))
        start += n
    return out


class DecodedEvents:
    """A chunk's events as one Python list per column; ``events(a, b)`` builds Events for rows a..b."""

    def __init__(self, frame: pl.DataFrame) -> None:
        cols: list[list[Any]] = []
        for c in EVENT_COLUMNS:
            s = frame.get_column(c)
            if c == "occurred_at":
                s = s.dt.epoch("us")
            cols.append(s.to_list())
        self.columns = cols
        self.versions: list[int] = cols[EVENT_COLUMNS.index("version")]

    def events(self, a: int, b: int) -> list[Event]:
        return list(map(Event, zip(*(c[a:b] for c in self.columns), strict=True)))


def iter_stream_events(journal: Journal, stream_ids: Sequence[str]) -> Iterator[tuple[str, list[Event]]]:
    """(stream_id, events in version order) for the given streams, read in bulk chunks."""
    for chunk in _chunks(stream_ids, CHUNK_STREAMS):
        frame = _read(journal, chunk, EVENT_COLUMNS)
        decoded = DecodedEvents(frame)
        for sid, a, b in _spans(frame):
            yield sid, decoded.events(a, b)


# ---------------------------------------------------------------------------- findings rows


def _violation(sid: str, failing: Sequence[int], message: str | None, *, count: int | None = None) -> Row:
    """A violation row; ``count`` (monotone walks): the failing versions are ``failing`` and the
    ``count - len(failing)`` events after them, up to the stream's last version ``failing[-1]``."""
    return {"stream_id": sid, "version": failing[0], "kind": "violation", "message": message,
            "failing_events": len(failing) if count is None else count,
            "failing_versions": list(failing[:EVIDENCE_VERSIONS]), "last_failing_version": failing[-1]}


def _monotone_violation(sid: str, versions: Sequence[int], i: int, message: str | None) -> Row:
    """Failing from ``versions[i]`` to the end (a monotone rule stays broken)."""
    row = _violation(sid, versions[i : i + EVIDENCE_VERSIONS], message, count=len(versions) - i)
    row["last_failing_version"] = versions[-1]
    return row


def _error(sid: str, version: int, exc: Exception) -> Row:
    error = f"{type(exc).__name__}: {exc}"
    return {"stream_id": sid, "version": version, "kind": "error", "message": error,
            "failing_events": 1, "failing_versions": [version], "last_failing_version": version}


def _fold_walk(sid: str, aggregate: Aggregate[Any], holds: Callable[[Any, dict[str, Any]], Any],
               bound: dict[str, Any], events: list[Event], *, monotone: bool) -> tuple[Row | None, int]:
    """Fold ``events`` from the initial state and judge after each, by the plain fold's rules; a
    monotone rule's first failure ends the walk (every later event fails too). Also returns how
    many events were folded and judged."""
    state = aggregate.initial()
    models, reducer = aggregate.events, aggregate.reducer
    failing: list[int] = []
    message: str | None = None
    for i, e in enumerate(events):
        try:
            if not (models and e.event_type in models and aggregate.prepare(e) is not None):
                state = reducer(state, e)  # events that do not fit their model are skipped, as replay does
            verdict = holds(state, bound)
            if verdict is True or verdict is None:
                continue
            ok, msg = verdict_of(verdict)
        except Exception as exc:  # a rule (or reducer) that raises is a finding of kind error
            return _error(sid, e.version, exc), i + 1
        if not ok:
            if monotone:
                return _monotone_violation(sid, [x.version for x in events], i, msg), i + 1
            if not failing:
                message = msg
            failing.append(e.version)
    return (_violation(sid, failing, message) if failing else None), len(events)


# ---------------------------------------------------------------------------- folding (any aggregate)


def fold_failures(journal: Journal, rule: Rule, bound: dict[str, Any], stream_ids: Sequence[str]) -> list[Row]:
    """The reference: fold every stream from version 1 and judge after every event (no shortcuts)."""
    aggregate = rule_aggregate(rule)
    assert rule.python is not None
    holds = rule.python
    out: list[Row] = []
    for sid, events in iter_stream_events(journal, stream_ids):
        state = aggregate.initial()
        failing: list[int] = []
        message: str | None = None
        error: Row | None = None
        for e in events:
            try:
                state = fold_event(aggregate, state, e)
                ok, msg = verdict_of(holds(state, bound))
            except Exception as exc:
                error = _error(sid, e.version, exc)
                break
            if not ok:
                if not failing:
                    message = msg
                failing.append(e.version)
        if error is not None:
            out.append(error)
        elif failing:
            out.append(_violation(sid, failing, message))
    return out


def _grade_folding(journal: Journal, rule: Rule, bound: dict[str, Any], stream_ids: Sequence[str],
                   stats: GradeStats) -> list[Row]:
    aggregate = rule_aggregate(rule)
    assert rule.python is not None
    holds = rule.python
    use_snapshots = rule.monotone and aggregate.from_dict is not None
    if use_snapshots:
        from toolkit.analysis.snapshots import nearest_snapshot
    from toolkit.analysis.agent_run import AGENT_RUN

    out: list[Row] = []
    for chunk in _chunks(stream_ids, CHUNK_STREAMS):
        frame = _read(journal, chunk, EVENT_COLUMNS)
        decoded = DecodedEvents(frame)
        falling = set(falling_streams(frame).to_list()) if rule.monotone and aggregate is AGENT_RUN else set()
        for sid, a, b in _spans(frame):
            stats.streams += 1
            stats.events += b - a
            versions = decoded.versions[a:b]
            monotone = rule.monotone and sid not in falling
            if monotone:  # the final state decides whether the stream is walked at all
                start, state = a, aggregate.initial()
                if use_snapshots:
                    snap = nearest_snapshot(journal, sid, aggregate, versions[-1], first_version=versions[0])
                    if snap is not None:
                        start += sum(1 for v in versions if v <= snap[0])
                        state = snap[1]
                try:
                    for e in decoded.events(start, b):
                        state = fold_event(aggregate, state, e)
                    stats.folded += b - start
                    stats.judged += 1
                    if verdict_of(holds(state, bound))[0]:
                        continue
                except Exception:  # walked below, where the error is reported at its event
                    pass
            row, judged = _fold_walk(sid, aggregate, holds, bound, decoded.events(a, b), monotone=monotone)
            stats.folded += judged
            stats.judged += judged
            if row is not None:
                out.append(row)
    return out


# ---------------------------------------------------------------------------- column-wise agent-run states


def assistant_types() -> frozenset[str]:
    """Event types the agent-run reducer reads from payloads: streams holding them are folded."""
    from toolkit.analysis.agent_run import _ASSISTANT, EVENT_MODELS

    return frozenset(_ASSISTANT) | frozenset(EVENT_MODELS)


def run_state_exprs() -> dict[str, pl.Expr]:
    """The agent-run state after every event of a frame sorted by (stream_id, version) without
    assistant topics: what ``agent_run.apply_event`` computes, one expression per field, over the
    integer stream key ``g`` (see :func:`with_stream_key`).

    ``cost_nano`` is the cumulative cost in 1e-9 USD; ``cost_seen`` whether any cost was recorded
    yet (the fold's sum is ``Decimal(0)`` until then, and carries 9 decimals after).
    """
    g = "g"
    idx = pl.int_range(pl.len()).over(g)
    is_error = pl.col("is_error").fill_null(False)
    et = pl.col("event_type")
    tokens = ["tokens_in", "tokens_out", "tokens_cache_read", "tokens_cache_write", "tokens_reasoning"]
    exprs = {
        "version": pl.col("version"),
        "events": idx + 1,
        **{t: pl.col(t).fill_null(0).cum_sum().over(g) for t in tokens},
        # i128: an i64 sum wraps (silently, in Polars) past 9.2e9 USD
        "cost_nano": pl.col("cost_usd").to_physical().cast(pl.Int128).fill_null(0)
        .cum_sum().over(g),
        "cost_seen": pl.col("cost_usd").is_not_null().cum_sum().over(g) > 0,
        "model": pl.when(pl.col("model") != "").then(pl.col("model")).forward_fill().over(g),
        "last_tool": pl.when(et.is_in(["tool_called", "tool_result"]) & (pl.col("tool_name") != ""))
        .then(pl.col("tool_name")).forward_fill().over(g),
        "plans": (et == "plan_created").cum_sum().over(g).cast(pl.Int64),
        "llm_calls_total": (et == "llm_response").cum_sum().over(g).cast(pl.Int64),
        "tool_failures_total": (((et == "tool_result") & is_error) | ((et == "error") & (pl.col("tool_name") != "")))
        .fill_null(False).cum_sum().over(g).cast(pl.Int64),
        "errors": is_error.cum_sum().over(g).cast(pl.Int64),
        "consecutive_errors": (idx - pl.when(~is_error).then(idx).forward_fill().over(g).fill_null(-1)).cast(pl.Int64),
        "status": pl.when(pl.col("requests_tools")).then(pl.lit("running"))  # an llm_response asking for tools
        .otherwise(et.replace_strict(DECISIVE_STATUS, default=None, return_dtype=pl.String))
        .forward_fill().over(g).fill_null("running"),
        "first_at_us": pl.col("occurred_at").dt.epoch("us").cum_min().over(g),
        "last_at_us": pl.col("occurred_at").dt.epoch("us").cum_max().over(g),
    }
    return {name: e.alias(name) for name, e in exprs.items()}


def with_stream_key(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (sorted by stream_id) plus ``g``: the stream's ordinal, an integer window key."""
    sid = pl.col("stream_id")
    return frame.with_columns(g=(sid != sid.shift()).fill_null(True).cum_sum().cast(pl.Int64))


class RunStateView:
    """The agent-run state at one event (row ``at``) of a stream without assistant topics.

    Reads what an ``AgentRunState`` of such a stream holds: the scalar fields, ``first_at``,
    ``last_at``, ``llm_calls_total``, ``tool_failures_total`` and the fixed ones (no goals, ticks or
    emergency stop). Each field's column is computed and converted to Python the first time a rule
    reads it. Anything else (the per-tool and per-model dicts, ``tool_calls_total``, the plan,
    methods) raises :class:`NeedsFold`.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0

    goals_completed = 0
    ticks = 0
    emergency_stop = False
    emergency_stop_reason = None

    @property
    def goals(self) -> dict[str, Any]:
        return {}

    @property
    def first_at(self) -> dt.datetime:
        first: int = getattr(self, "first_at_us")  # noqa: B009 (a property of the generated subclass)
        return EPOCH + dt.timedelta(microseconds=first)

    @property
    def last_at(self) -> dt.datetime:
        last: int = getattr(self, "last_at_us")  # noqa: B009
        return EPOCH + dt.timedelta(microseconds=last)

    def __getattr__(self, name: str) -> Any:
        raise NeedsFold(name)

    @classmethod
    def over(
        cls, keyed: pl.DataFrame, rows: pl.Series | None = None, tools: Callable[[pl.DataFrame], pl.Series] | None = None
    ) -> type[RunStateView]:
        """A view class over ``keyed`` (a frame from :func:`with_stream_key`), or over some of its
        rows (``at`` then indexes ``rows``: e.g. the last row of each stream). ``status`` needs a
        ``requests_tools`` column: ``keyed``'s own, or ``tools`` (:func:`tools_of`) gives it on the
        first read of the status."""
        exprs = run_state_exprs()
        view: type[RunStateView] = type("RunStateAt", (cls,), {"__slots__": ()})

        def column(name: str) -> list[Any]:
            nonlocal keyed
            if name == "status" and "requests_tools" not in keyed.columns:
                if tools is None:
                    raise ValueError("the status needs the requests_tools column, or tools= to read it")
                keyed = keyed.with_columns(requests_tools=tools(keyed))
            values = keyed.select(exprs[name]).to_series()
            return (values if rows is None else values.gather(rows)).to_list()

        def lazy(name: str) -> property:
            def first_read(self: RunStateView) -> Any:
                values = column(name)
                setattr(view, name, property(lambda s: values[s.at]))  # later reads: a list lookup
                return values[self.at]

            return property(first_read)

        def lazy_cost(self: RunStateView) -> Decimal:
            nano, seen, zero = column("cost_nano"), column("cost_seen"), Decimal(0)

            def cost_usd(s: RunStateView) -> Decimal:
                i = s.at
                return Decimal(nano[i]).scaleb(-9) if seen[i] else zero

            view.cost_usd = property(cost_usd)  # type: ignore[attr-defined]
            return cost_usd(self)

        for name in exprs:
            if name not in {"cost_nano", "cost_seen"}:
                setattr(view, name, lazy(name))
        view.cost_usd = property(lazy_cost)  # type: ignore[attr-defined]
        return view


def _walk_rows(sid: str, view: RunStateView, holds: Callable[[Any, dict[str, Any]], Any], bound: dict[str, Any],
               versions: list[int], a: int, b: int, *, monotone: bool) -> tuple[Row | None, int]:
    """:func:`_fold_walk` over rows a..b of column-wise states (inlined: this loop is the hot one);
    also returns how many states were judged."""
    failing: list[int] = []
    message: str | None = None
    for i in range(a, b):
        view.at = i
        try:
            verdict = holds(view, bound)
            if verdict is True or verdict is None:
                continue
            ok, msg = verdict_of(verdict)
        except Exception as exc:  # a rule that raises (or returns something else) is a finding of kind error
            return _error(sid, versions[i], exc), i - a + 1
        if not ok:
            if monotone:
                return _monotone_violation(sid, versions[a:b], i - a, msg), i - a + 1
            if not failing:
                message = msg
            failing.append(versions[i])
    return (_violation(sid, failing, message) if failing else None), b - a


def _grade_columns(journal: Journal, rule: Rule, bound: dict[str, Any], stream_ids: Sequence[str],
                   stats: GradeStats) -> list[Row]:
    """Column-wise states for streams without assistant topics, folding for the rest (NeedsFold
    escapes to the caller, which then folds every stream)."""
    assert rule.python is not None
    holds = rule.python
    special_types = list(assistant_types())
    out: list[Row] = []
    folded_ids: list[str] = []
    tools = tools_of(journal)
    for chunk in _chunks(stream_ids, CHUNK_STREAMS_COLUMNS):
        frame = _read(journal, chunk, STATE_COLUMNS)
        special = frame.filter(pl.col("event_type").is_in(special_types)).get_column("stream_id").unique()
        if special.len():
            folded_ids += special.to_list()
            frame = frame.filter(~pl.col("stream_id").is_in(special.implode()))
        if frame.height == 0:
            continue
        keyed = with_stream_key(frame)
        stats.events += keyed.height
        if rule.monotone:  # final states decide which streams are walked at all
            lasts = keyed.select(pl.arg_where(pl.col("g").diff().shift(-1).fill_null(1) != 0)).to_series()
            stats.streams += len(lasts)
            stats.columnwise_streams += len(lasts)
            falling = set(falling_streams(keyed, "g").to_list())  # judged at every event instead
            final = RunStateView.over(keyed, lasts, tools)()
            failing: list[int] = []
            for k in range(len(lasts)):
                if k + 1 in falling:  # g counts streams from 1
                    continue
                final.at = k
                stats.judged += 1
                try:
                    if verdict_of(holds(final, bound))[0]:
                        continue
                except Exception:  # walked below, where the error is reported at its event
                    pass
                failing.append(k + 1)
            if falling:
                out += _walk_streams(keyed.filter(pl.col("g").is_in(list(falling))), holds, bound, False, stats, tools)
            if not failing:
                continue
            keyed = keyed.filter(pl.col("g").is_in(failing))
        else:
            n = int(keyed.select(pl.col("g").n_unique()).item())
            stats.streams += n
            stats.columnwise_streams += n
        out += _walk_streams(keyed, holds, bound, rule.monotone, stats, tools)
    if folded_ids:
        out += _grade_folding(journal, rule, bound, folded_ids, stats)
    return out


def _walk_streams(keyed: pl.DataFrame, holds: Callable[[Any, dict[str, Any]], Any], bound: dict[str, Any],
                  monotone: bool, stats: GradeStats, tools: Callable[[pl.DataFrame], pl.Series]) -> list[Row]:
    """Every stream of ``keyed`` walked event by event on column-wise states."""
    view = RunStateView.over(keyed, tools=tools)()
    versions: list[int] = keyed.get_column("version").to_list()
    starts = keyed.select(pl.arg_where(pl.col("g").diff().fill_null(1) != 0)).to_series()
    sids = keyed.get_column("stream_id").gather(starts).to_list()
    bounds = [*starts.to_list(), keyed.height]
    out: list[Row] = []
    for k, sid in enumerate(sids):
        row, judged = _walk_rows(sid, view, holds, bound, versions, bounds[k], bounds[k + 1], monotone=monotone)
        stats.judged += judged
        if row is not None:
            out.append(row)
    return out


# ---------------------------------------------------------------------------- workers


def find_rule(name: str, origin: str) -> Rule:
    """A rule again, by name and the file it came from (worker processes cannot unpickle functions
    that a decorator replaced by a Rule)."""
    from toolkit.analysis.rules import builtin_rules, load_rule_file

    if origin.endswith(".py") and Path(origin).is_file():
        return next(r for r in load_rule_file(origin) if r.name == name)
    return builtin_rules()[name]


def grade_streams(
    journal_path: str, rule: Rule | tuple[str, str], bound: dict[str, Any], stream_ids: list[str], *,
    columnwise: bool = False, delta_version: int | None = None,
) -> tuple[list[Row], GradeStats]:
    """Failing streams among ``stream_ids`` (a worker's share) and what grading them took, reading
    the journal at ``delta_version`` (None: the current one).

    ``columnwise``: agent-run states from columns (raises :class:`NeedsFold` when the rule reads
    what they do not hold); otherwise fold.
    """
    if isinstance(rule, tuple):
        rule = find_rule(*rule)
    journal = Journal.open(journal_path, delta_version=delta_version)
    stats = GradeStats()
    try:
        if columnwise:
            return _grade_columns(journal, rule, bound, stream_ids, stats), stats
        return _grade_folding(journal, rule, bound, stream_ids, stats), stats
    finally:
        journal.close()


def all_stream_ids(journal: Journal) -> list[str]:
    return sorted(scan_events(journal).select("stream_id").unique().collect().get_column("stream_id").to_list())


def python_failures(
    journal: Journal, rule: Rule, bound: dict[str, Any], stream_ids: Sequence[str] | None, *, workers: int | None = None
) -> pa.Table:
    """Per failing stream, as ``verdicts.FAILURE_SCHEMA`` plus ``kind`` (violation or error).

    ``workers`` processes each grade a contiguous id range (default: one per core once there are
    enough streams to pay for starting them — column-wise grading needs far more streams per
    process than folding, as Polars already spreads its column work over every core).
    """
    global LAST_STATS
    from toolkit.analysis.agent_run import AGENT_RUN

    ids = sorted(stream_ids) if stream_ids is not None else all_stream_ids(journal)
    cores = os.cpu_count() or 1
    result: tuple[list[Row], GradeStats] | None = None
    if rule_aggregate(rule) is AGENT_RUN and _may_read_columns(journal, rule, bound):
        n = workers if workers is not None else min(cores, len(ids) // MIN_STREAMS_PER_COLUMN_WORKER or 1)
        try:
            result = _in_workers(journal, rule, bound, ids, n, columnwise=True)
        except NeedsFold:
            result = None
    if result is None:
        n = workers if workers is not None else min(cores, len(ids) // MIN_STREAMS_PER_WORKER or 1)
        result = _in_workers(journal, rule, bound, ids, n, columnwise=False)
    rows, LAST_STATS = result
    if not rows:
        return FAILURE_SCHEMA.append(pa.field("kind", pa.string())).empty_table()
    return rows_to_failures(journal, rows)


def _may_read_columns(journal: Journal, rule: Rule, bound: dict[str, Any]) -> bool:
    """False when the rule, judging the state after one event of the journal, already reads what
    column-wise states do not hold (saves reading the columns for nothing)."""
    assert rule.python is not None
    first = scan_events(journal).select(list(STATE_COLUMNS)).head(1).collect()
    if first.height == 0:
        return True
    try:
        rule.python(RunStateView.over(with_stream_key(first), tools=tools_of(journal))(), bound)
    except NeedsFold:
        return False
    except Exception:  # the real run reports it, at its event
        return True
    return True


def _in_workers(
    journal: Journal, rule: Rule, bound: dict[str, Any], ids: list[str], workers: int, *, columnwise: bool
) -> tuple[list[Row], GradeStats]:
    n = max(1, min(workers, len(ids)))
    if n == 1:
        return grade_streams(str(journal.path), rule, bound, ids, columnwise=columnwise, delta_version=journal.pinned_version)
    shares = [ids[len(ids) * i // n : len(ids) * (i + 1) // n] for i in range(n)]  # contiguous id ranges
    key = (rule.name, rule.origin)
    grade = functools.partial(grade_streams, columnwise=columnwise, delta_version=journal.pinned_version)
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(grade, [str(journal.path)] * n, [key] * n, [bound] * n, shares))
    stats = GradeStats(workers=n)
    for _, s in parts:
        stats.add(s)
    return [r for part, _ in parts for r in part], stats


def rows_to_failures(journal: Journal, rows: list[Row]) -> pa.Table:
    failing = pl.DataFrame(
        rows,
        schema={"stream_id": pl.String, "version": pl.Int64, "kind": pl.String, "message": pl.String,
                "failing_events": pl.Int64, "failing_versions": pl.List(pl.Int64), "last_failing_version": pl.Int64},
    )
    info = attach_event_info(journal, failing.drop("kind"))
    joined = pl.DataFrame(info).join(failing.select("stream_id", "kind"), on="stream_id", how="left")
    return joined.sort("stream_id").to_arrow()
