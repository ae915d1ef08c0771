"""Time travel: the state of a stream at any version or time, its timeline, and diffs.

"What did the agent know at step 23?" is one call:

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("run-1", [
...     {"event_type": "user_message", "data": {"text": "hi"}},
...     {"event_type": "tool_called", "tool_name": "search", "data": {}},
...     {"event_type": "llm_response", "model": "m", "tokens_in": 10, "data": {"text": "done"}},
... ])
>>> state_at(j, "run-1", version=2).status, state_at(j, "run-1").status
('running', 'answered')
>>> [c.path for c in diff_states(j, "run-1", 2, 3) if c.path != "last_at_us"]
['events', 'llm_calls.m', 'model', 'status', 'tokens_in', 'version']
>>> replay(j, "run-1", types=["tool_called"])["summary"].to_list()
['search()']
>>> j.close()

A time means a prefix of the stream: the state at ``at`` is the state after the last version
whose events *all* occurred at or before ``at`` (the longest such prefix). Sources can deliver
clocks out of version order; an event that occurred by ``at`` but follows a later one in the
stream is not folded (folding it without the events before it gives a state the run never had),
and ``fold_to`` says so in its note. ``state_at``, ``journal state --at``, ``replay(at=)``
(``journal replay --at``) and the run explorer's ``explore_step(at=)`` all resolve a time with
:func:`locate`; retention purges cut streams by the same rule.

Reads go through a per-process cache of decoded streams: a stream read once is kept (bounded,
least recently used first out) and only its new events are read when the journal has grown,
so repeated questions about the same run cost a fold, not a read. The cached events are shared by
every fold, so they are read-only (``SharedEvent``): a reducer that changes one is an error, and a
fold hands its reducer a copy of an event carrying its aggregate's payload rather than setting it
on the shared event (folds by other aggregates, in other threads, read the same events).
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, overload

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.analysis.agent_run import AGENT_RUN, AgentRunState
from toolkit.analysis.aggregates import (
    EVENT_COLUMNS,
    Aggregate,
    Event,
    ReplayProblem,
    SharedEvent,
    reducer_failed,
    to_us,
)
from toolkit.analysis.explain import explain_event
from toolkit.errors import ReplayError, StreamNotFoundError, ToolkitError, VersionNotFoundError, VersionPurgedError
from toolkit.journal.store import Journal

S = TypeVar("S")

CACHE_EVENTS: Final = 500_000  # decoded events kept per process (an event is a few hundred bytes)


# ---------------------------------------------------------------------------- reading streams


@dataclass
class _Cached:
    events: list[Event]
    delta_version: int
    files: frozenset[str]  # the data files that could hold the stream when it was read


def _stream_files(journal: Journal, stream_id: str) -> frozenset[str]:
    return frozenset(journal.file_paths(stream_ids=[stream_id]))


class _StreamCache:
    """Decoded streams per (journal, stream), refreshed incrementally when the journal grows.

    Every fold of a stream is handed the same events: they are :class:`SharedEvent`, which refuse
    changes (a reducer that appended to a list in ``e.data`` changed what the next fold read).

    Appends only add data files: the events after the cached head are read and added. When a
    file that could hold the stream is gone (a redaction, purge or compaction rewrote it) the
    stream is read again whole, so a rewritten payload is never served from the cache."""

    def __init__(self, limit: int = CACHE_EVENTS) -> None:
        self.limit = limit
        self._streams: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._size = 0

    def get(self, journal: Journal, stream_id: str, from_version: int = 1) -> list[Event]:
        """The stream's events from ``from_version`` on (or from earlier, when cached so)."""
        key = (str(journal.path), stream_id)
        version = journal.refresh()
        hit = self._streams.get(key)
        files = hit.files if hit is not None and hit.delta_version == version else _stream_files(journal, stream_id)
        if hit is not None and (not hit.events or hit.events[0].version <= from_version) and hit.files <= files:
            self._streams.move_to_end(key)
            if hit.delta_version == version:
                return hit.events
            head = hit.events[-1].version if hit.events else 0
            new = SharedEvent.share(read_events(journal, stream_id, from_version=head + 1))  # contiguous with the cache
            if new:
                hit.events = hit.events + new
                self._size += len(new)
            hit.delta_version, hit.files = version, files
            self._trim()
            return hit.events
        if hit is not None:
            self._size -= len(hit.events)
        events = SharedEvent.share(
            read_events(journal, stream_id, from_version=from_version if from_version > 1 else None)
        )
        self._streams[key] = _Cached(events, version, files)
        self._size += len(events)
        self._trim()
        return events

    def first_version(self, journal: Journal, stream_id: str) -> int | None:
        """The first version held for the stream (None: not cached)."""
        hit = self._streams.get((str(journal.path), stream_id))
        return hit.events[0].version if hit is not None and hit.events else None

    def _trim(self) -> None:
        while self._size > self.limit and len(self._streams) > 1:
            _, old = self._streams.popitem(last=False)
            self._size -= len(old.events)

    def clear(self) -> None:
        self._streams.clear()
        self._size = 0


_CACHE = _StreamCache()


def clear_cache() -> None:
    """Forget every decoded stream (tests, memory)."""
    _CACHE.clear()


def events_from_table(table: pa.Table) -> list[Event]:
    """Events from a table with (at least) the :data:`EVENT_COLUMNS`, in row order."""
    cols = []
    for c in EVENT_COLUMNS:
        col = table.column(c)
        if c == "occurred_at":
            col = pc.cast(col.cast(pa.timestamp("us", tz="UTC")), pa.int64())
        cols.append(col.to_pylist())
    return [Event(row) for row in zip(*cols, strict=True)]


def read_events(journal: Journal, stream_id: str, *, from_version: int | None = None) -> list[Event]:
    """One stream's events in version order, straight from the journal (no cache)."""
    table = journal.read_stream(stream_id, list(EVENT_COLUMNS), from_version=from_version)
    return events_from_table(table)


def stream_events(journal: Journal, stream_id: str, from_version: int = 1) -> list[Event]:
    """One stream's events in version order (cached; raises when the stream does not exist).

    With ``from_version`` the list may start there (or earlier): ``state_at`` from a snapshot
    decodes only the events after it.
    """
    events = _CACHE.get(journal, stream_id, from_version)
    if not events:
        raise unknown_stream(journal, stream_id)
    return events


def iter_stream_events(journal: Journal, stream_id: str) -> Iterator[Event]:
    yield from stream_events(journal, stream_id)


def unknown_stream(journal: Journal, stream_id: str) -> StreamNotFoundError:
    """The error for a stream the journal does not hold, naming close stream ids."""
    known = list(journal.heads())
    close = difflib.get_close_matches(stream_id, known, n=3, cutoff=0.6)
    if not close:
        close = sorted(s for s in known if stream_id.lower() in s.lower())[:3]
    hint = f"did you mean {', '.join(close)}?" if close else "list streams with: journal streams"
    return StreamNotFoundError(
        f"no stream {stream_id!r} in {journal.path}", hint=hint, stream_id=stream_id, close_matches=close
    )


# ---------------------------------------------------------------------------- versions and times


@dataclass(frozen=True)
class Located:
    """Which version a question about a stream resolves to, and what to tell the user."""

    version: int  # 0: before the first event (the initial state)
    last_version: int
    note: str | None = None


def locate(journal: Journal, stream_id: str, *, version: int | None = None, at: dt.datetime | None = None) -> Located:
    """The version ``state_at`` folds to (errors name the stream's last version)."""
    events = stream_events(journal, stream_id)
    return _locate(events, stream_id, version, at)


def locate_at(journal: Journal, stream_id: str, at: dt.datetime) -> Located:
    """The version ``state_at(at=at)`` folds to, with its note, without folding: after a purge of the
    stream's first versions, a time inside them is the same ``VersionPurgedError`` and a later time
    the same note (``locate`` looks at the events left only)."""
    events = stream_events(journal, stream_id)
    where = _locate(events, stream_id, None, at)
    first = events[0].version if events else 1
    if first > 1:
        purged = _check_purged(journal, stream_id, where, 0, first, at)
        note = "; ".join(n for n in dict.fromkeys((purged, where.note)) if n) or None
        where = Located(where.version, where.last_version, note)
    return where


def _locate(events: Sequence[Event], stream_id: str, version: int | None, at: dt.datetime | None) -> Located:
    last = events[-1].version if events else 0
    if version is not None and at is not None:
        raise VersionNotFoundError(
            "give either a version or a time, not both", hint="use --version N or --at TIME", stream_id=stream_id
        )
    if version is not None:
        if version < 0 or version > last:
            raise VersionNotFoundError(
                f"stream {stream_id!r} has versions 1..{last}; version {version} is outside it",
                hint=f"ask for a version between 0 (the initial state) and {last}",
                stream_id=stream_id,
                version=version,
                last_version=last,
            )
        return Located(version, last, "the initial state (version 0, before any event)" if version == 0 else None)
    if at is None:
        return Located(last, last)
    t = _us(at, "at")
    i = 0  # the events are in version order: the longest prefix that occurred by t
    while i < len(events) and events[i].occurred_us <= t:
        i += 1
    best = events[i - 1].version if i else 0
    note = None
    if i == 0:
        first = events[0].occurred_at.isoformat() if events else "-"
        note = f"{at.isoformat()} is before the stream's first event ({first}): the initial state"
    later = [e for e in events[i:] if e.occurred_us <= t]
    if later:
        after = f"version {best}" if best else "the initial state"
        note = (
            f"the stream's times are out of version order: version {events[i].version} occurred at "
            f"{events[i].occurred_at.isoformat()}, after {at.isoformat()}, so the state at that time is the state "
            f"after {after}; {len(later)} later event(s) occurred by then too (the first: version "
            f"{later[0].version} at {later[0].occurred_at.isoformat()}) and are not folded"
        )
    return Located(best, last, note)


def _us(t: dt.datetime, what: str) -> int:
    if t.tzinfo is None:
        raise ReplayError(
            f"{what}={t.isoformat()}: a time without a time zone is ambiguous",
            hint="give times in UTC with an offset, e.g. 2026-11-01T09:00:00Z",
        )
    return to_us(t)


# ---------------------------------------------------------------------------- folding


@dataclass
class FoldResult:
    """A state with how it was reached."""

    state: Any
    version: int
    last_version: int
    note: str | None = None
    snapshot_version: int | None = None  # the snapshot the fold started from, if any
    problems: list[ReplayProblem] = field(default_factory=list)


def _fold(aggregate: Aggregate[S], events: Sequence[Event], state: S, problems: list[ReplayProblem]) -> S:
    # the events may be the cache's, read by folds in other threads at once: never changed here; an
    # event with a model reaches the reducer as a copy carrying the payload (Event.with_payload)
    reducer = aggregate.reducer
    models = aggregate.events
    e = None
    try:
        if not models:
            for e in events:
                if e.payload is not None:
                    e = e.with_payload(None)  # an event the caller prepared for another aggregate
                state = reducer(state, e)
            return state
        parse = aggregate.parse
        for e in events:
            if e.event_type in models:
                payload, problem = parse(e)
                if problem is not None:
                    problems.append(problem)
                    continue
                e = e.with_payload(payload)
            elif e.payload is not None:
                e = e.with_payload(None)
            state = reducer(state, e)
    except ToolkitError:
        raise
    except Exception as err:
        if e is None:
            raise
        raise reducer_failed(aggregate, e, err) from err
    return state


def fold_to(
    journal: Journal,
    stream_id: str,
    *,
    version: int | None = None,
    at: dt.datetime | None = None,
    aggregate: Aggregate[Any] = AGENT_RUN,
    use_snapshots: bool = True,
) -> FoldResult:
    """``state_at`` with its details: the version reached, a note, the snapshot used, problems."""
    from toolkit.analysis.snapshots import nearest_snapshot

    snap = None
    wanted = version if version is not None else 1 << 62
    # the snapshots table is not pinned: on a pinned journal (Journal.pinned) a snapshot taken since
    # may lie past the stream's head there, or fold without events a purge removed since, so the
    # whole stream is read first and the snapshot is one valid for its first version
    pinned = journal.pinned_version is not None
    if use_snapshots and at is None and aggregate.from_dict is not None and wanted > 0 and not pinned:
        snap = nearest_snapshot(journal, stream_id, aggregate, wanted)
    # from a snapshot, only the events from its version on are needed (its own proves the stream)
    events = stream_events(journal, stream_id, from_version=snap[0] if snap is not None else 1)
    where = _locate(events, stream_id, version, at)
    # versions are contiguous from 1: event i holds version i + 1
    first = events[0].version if events else 1
    start, state = 0, None
    if use_snapshots and where.version > 0 and aggregate.from_dict is not None:
        if snap is None or snap[0] > where.version:
            snap = nearest_snapshot(
                journal, stream_id, aggregate, where.version, first_version=first if pinned else None
            )
        if snap is not None:
            start, state = snap
    if state is None:
        state = aggregate.initial()
    problems: list[ReplayProblem] = []
    note = where.note
    # a time is checked against the purges whatever snapshot the fold starts from (the events are
    # read from version 1 then): a snapshot taken after a purge must not change the answer
    checked = 0 if at is not None else start
    if first > checked + 1 and (where.version > checked or at is not None):
        purged = _check_purged(journal, stream_id, where, checked, first, at)
        note = "; ".join(n for n in dict.fromkeys((purged, where.note)) if n) or None
    lo = max(0, start + 1 - first)
    hi = max(0, where.version + 1 - first)
    state = _fold(aggregate, events[lo:hi], state, problems)
    return FoldResult(state, where.version, where.last_version, note, start or None, problems)


_PURGED_BY: Final = {"retention": "by retention", "archive": "by journal archive --delete"}


def _check_purged(
    journal: Journal, stream_id: str, where: Located, start: int, first: int, at: dt.datetime | None
) -> str | None:
    """Versions ``start + 1 .. first - 1`` are needed for the fold but gone from the journal.

    A state asked for inside them (a version, or a time after the first removed event) is an
    error naming the purge and the versions that remain; a later state gets a note that it is
    folded without them. A time before every removed event is the initial state, as before.
    """
    records = _purge_records(journal, stream_id)
    covering = _covering(records)
    gone, remain = f"{start + 1}..{first - 1}", f"versions {first}..{where.last_version} remain"
    # a purge that removed an event occurring after `at`: the events that occurred by then end in it
    late = (
        None if at is None else next((r for r in records if (t := r["last_removed_at"]) is not None and t > at), None)
    )
    r: Mapping[str, Any] | None
    if where.version >= first and late is not None and at is not None:
        r = late
        asked = f"{at.isoformat()} falls in versions 1..{first - 1} (one occurred at {r['last_removed_at'].isoformat()}), which were"
    elif where.version >= first:
        r = covering(first - 1)
        why = _purged(r) if r is not None else "removed with no purge record naming them (run journal verify)"
        return f"versions {gone} were {why}: this state is folded without them"
    elif where.version == 0:  # a time before the first kept event
        r = covering(1)
        if r is None or at is None or r["first_removed_at"] is None:
            return where.note
        if at < r["first_removed_at"]:  # before the stream's first event ever
            return f"{at.isoformat()} is before the stream's first event ({r['first_removed_at'].isoformat()}): the initial state"
        asked = f"{at.isoformat()} falls in versions 1..{first - 1}, which were"
    else:
        r = covering(where.version)
        asked = f"version {where.version} was"
    if r is None:
        raise VersionNotFoundError(
            f"stream {stream_id!r}: versions {gone} are not in the journal and no purge record names them; {remain}",
            hint="journal verify names what happened to the stream",
            stream_id=stream_id,
            version=where.version,
            last_version=where.last_version,
        )
    kept = f"in the purge's archive {r['archive_path']}" if r["archive_path"] else "in the stream's archive file"
    raise VersionPurgedError(
        f"stream {stream_id!r}: {asked} {_purged(r)}; {remain}",
        hint=f"ask for a version between {first} and {where.last_version} (or 0, the initial state); "
        f"the purged events are kept {kept}",
        stream_id=stream_id,
        version=where.version,
        purge_id=r["purge_id"],
        purged_at=r["purged_at"],
        first_kept_version=first,
        last_version=where.last_version,
    )


def _purge_records(journal: Journal, stream_id: str) -> list[dict[str, Any]]:
    """The purge records (``purges`` table) of the stream."""
    from toolkit.journal.side_tables import read_table

    purges = read_table(journal, "purges")
    records: list[dict[str, Any]] = purges.filter(pc.equal(purges.column("stream_id"), stream_id)).to_pylist()
    return records


def _covering(records: Sequence[Mapping[str, Any]]) -> Callable[[int], Mapping[str, Any] | None]:
    """The record that removed a version of the stream, by version."""

    def covering(v: int) -> Mapping[str, Any] | None:
        return next(
            (r for r in records if r["first_kept_version"] - r["removed_events"] <= v < r["first_kept_version"]), None
        )

    return covering


def purged_start(journal: Journal, stream_id: str) -> str | None:
    """Why the stream's timeline starts after version 1 (a purge removed its first events), or None."""
    first = stream_events(journal, stream_id)[0].version
    if first <= 1:
        return None
    record = _covering(_purge_records(journal, stream_id))(first - 1)
    why = _purged(record) if record is not None else "removed with no purge record naming them (run journal verify)"
    return f"versions 1..{first - 1} were {why}: the timeline starts at version {first}"


def _purged(record: Mapping[str, Any]) -> str:
    how = _PURGED_BY.get(record["reason"], f"by {record['reason']}")
    return f"purged on {record['purged_at']:%Y-%m-%d} {how} ({record['purge_id']})"


@overload
def state_at(
    journal: Journal, stream_id: str, *, version: int | None = None, at: dt.datetime | None = None
) -> AgentRunState: ...


@overload
def state_at(
    journal: Journal,
    stream_id: str,
    *,
    version: int | None = None,
    at: dt.datetime | None = None,
    aggregate: Aggregate[S],
) -> S: ...


def state_at(
    journal: Journal,
    stream_id: str,
    *,
    version: int | None = None,
    at: dt.datetime | None = None,
    aggregate: Aggregate[Any] = AGENT_RUN,
) -> Any:
    """The aggregate's state after ``version`` (or after the last event at or before ``at``).

    No version and no time: the head. Version 0, or a time before the first event: the initial
    state. Uses the nearest snapshot with the aggregate's current fingerprint at or below the
    version. Events whose data does not fit the model are skipped (see ``fold_to`` for the list).
    """
    return fold_to(journal, stream_id, version=version, at=at, aggregate=aggregate).state


@overload
def fold_states(journal: Journal, stream_id: str) -> Iterator[tuple[int, AgentRunState]]: ...


@overload
def fold_states(journal: Journal, stream_id: str, aggregate: Aggregate[S]) -> Iterator[tuple[int, S]]: ...


def fold_states(journal: Journal, stream_id: str, aggregate: Aggregate[Any] = AGENT_RUN) -> Iterator[tuple[int, Any]]:
    """Every (version, state) of a stream, from version 1 to the head (each state a copy)."""
    state = aggregate.initial()
    problems: list[ReplayProblem] = []
    copy = aggregate.copy
    for e in stream_events(journal, stream_id):
        state = _fold(aggregate, (e,), state, problems)
        yield e.version, copy(state)


def replay_problems(journal: Journal, stream_id: str, aggregate: Aggregate[Any] = AGENT_RUN) -> list[ReplayProblem]:
    """Events whose stored data no longer fits the aggregate's models (stream, version, errors)."""
    return fold_to(journal, stream_id, aggregate=aggregate, use_snapshots=False).problems


# ---------------------------------------------------------------------------- timeline

TIMELINE_SCHEMA: Final = pl.Schema(
    {
        "version": pl.Int64(),
        "occurred_at": pl.Datetime("us", "UTC"),
        "event_type": pl.String(),
        "title": pl.String(),
        "summary": pl.String(),
        "tags": pl.List(pl.String()),
        "tool_name": pl.String(),
        "model": pl.String(),
        "tokens_in": pl.Int64(),
        "tokens_out": pl.Int64(),
        "cost_usd": pl.Decimal(18, 9),
        "is_error": pl.Boolean(),
        "event_id": pl.String(),
    }
)


def select_events(
    events: Sequence[Event],
    *,
    types: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    to_version: int | None = None,
) -> list[Event]:
    """Events filtered by type (event_type or source_type), time window [since, until) and version."""
    wanted = set(types) if types else None
    lo = _us(since, "since") if since is not None else None
    hi = _us(until, "until") if until is not None else None
    out = []
    for e in events:
        if to_version is not None and e.version > to_version:
            break
        if wanted is not None and e.event_type not in wanted and (e.source_type not in wanted):
            continue
        if lo is not None and e.occurred_us < lo:
            continue
        if hi is not None and e.occurred_us >= hi:
            continue
        out.append(e)
    return out


def replay(
    journal: Journal,
    stream_id: str,
    *,
    types: Sequence[str] | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    to_version: int | None = None,
    at: dt.datetime | None = None,
) -> pl.DataFrame:
    """A stream's readable timeline: one row per event with its explanation (title, summary, tags).

    ``since``/``until`` keep the events whose own time is in the window; ``to_version`` or ``at``
    stop the timeline where ``state_at`` with that version or time stops (see the module docstring).
    """
    events = stream_events(journal, stream_id)
    if to_version is not None or at is not None:
        where = _locate(events, stream_id, to_version, at)
        if at is not None and events[0].version > 1:  # as fold_to: a time inside purged versions is an error
            _check_purged(journal, stream_id, where, 0, events[0].version, at)
        to_version = where.version
    return timeline(select_events(events, types=types, since=since, until=until, to_version=to_version))


def timeline(events: Sequence[Event]) -> pl.DataFrame:
    """The timeline rows of given events (also used for counterfactual histories)."""
    rows = []
    for e in events:
        x = explain_event(e.row())
        rows.append(
            {
                "version": e.version,
                "occurred_at": e.occurred_at,
                "event_type": e.event_type,
                "title": x.title,
                "summary": x.summary,
                "tags": list(x.tags),
                "tool_name": e.tool_name,
                "model": e.model,
                "tokens_in": e.tokens_in,
                "tokens_out": e.tokens_out,
                "cost_usd": e.cost_usd,
                "is_error": e.is_error,
                "event_id": e.event_id,
            }
        )
    return pl.DataFrame(rows, schema=TIMELINE_SCHEMA)


# ---------------------------------------------------------------------------- diffs


@dataclass(frozen=True)
class StateChange:
    """One field that differs between two states (``path`` joins nested keys with dots)."""

    path: str
    before: Any
    after: Any


_ABSENT: Final[Any] = None


def diff_values(before: Any, after: Any, prefix: str = "") -> list[StateChange]:
    """Field-by-field differences of two JSON-like values (dicts recursed, the rest compared whole).

    >>> [(c.path, c.before, c.after) for c in diff_values({"a": 1, "b": {"x": 1}}, {"a": 1, "b": {"x": 2, "y": 3}})]
    [('b.x', 1, 2), ('b.y', None, 3)]
    """
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[StateChange] = []
        for k in sorted(set(before) | set(after), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            out.extend(diff_values(before.get(k, _ABSENT), after.get(k, _ABSENT), path))
        return out
    if before == after:
        return []
    return [StateChange(prefix or "<state>", before, after)]


def diff_states(
    journal: Journal,
    stream_id: str,
    v1: int,
    v2: int,
    *,
    aggregate: Aggregate[Any] = AGENT_RUN,
) -> list[StateChange]:
    """What changed in the aggregate's state between version ``v1`` and version ``v2``."""
    a = aggregate.to_dict(fold_to(journal, stream_id, version=v1, aggregate=aggregate).state)
    b = aggregate.to_dict(fold_to(journal, stream_id, version=v2, aggregate=aggregate).state)
    return diff_values(a, b)


def changes_frame(changes: Sequence[StateChange]) -> pl.DataFrame:
    """Changes as a table (before/after rendered as text)."""
    from toolkit.analysis.explain import short

    return pl.DataFrame(
        {
            "field": [c.path for c in changes],
            "before": [short(c.before, 80) for c in changes],
            "after": [short(c.after, 80) for c in changes],
        },
        schema={"field": pl.String(), "before": pl.String(), "after": pl.String()},
    )
