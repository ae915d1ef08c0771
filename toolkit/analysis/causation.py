"""Causation chains: the ancestors of an event back to its root input, its descendants down to
every effect, across streams; orphans (a cause that is not in the journal) and cycles.

The walk is vectorised. Events are loaded a whole stream at a time (one DuckDB query per set of
new streams, pruned by stream_id statistics), and breadth-first levels are computed in memory with one Polars
filter per level. The journal as a whole is queried once per *hop between streams*, never per
event: to find the streams holding causes that are not loaded yet (``--up``), and the streams
holding effects of what is loaded (``--down``).

Event ids should be unique, but imported data may give two events one id (``journal verify``
names them). A cause id several events carry is resolved for each effect: the copy in the
effect's stream, then one of its correlation, then the latest before it (:func:`choose_cause`,
which the compliance bundle's causation links use too); the chain names such ids
(``Chain.ambiguous``). Every copy of a chain event's id is known: a lookup by id finds them
all, the search for effects also finds other streams' copies of the ids it searches, and a walk
up checks the ids it resolved within a stream with one last lookup.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("a", [{"event_type": "user_message", "data": "hi", "event_id": "m1"},
...                    {"event_type": "llm_response", "data": "ok", "event_id": "r1", "causation_id": "m1"}])
>>> _ = j.append("b", [{"event_type": "tool_called", "data": {}, "event_id": "t1", "causation_id": "r1"}])
>>> chain = walk_chain(j, "t1", direction="up")
>>> chain.nodes.select("event_id", "depth").rows()
[('m1', -2), ('r1', -1), ('t1', 0)]
>>> walk_chain(j, "m1", direction="down").nodes.get_column("event_id").to_list()
['m1', 'r1', 't1']
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import polars as pl

from toolkit.analysis.titles import describe_event
from toolkit.engines import duckdb_engine
from toolkit.engines.polars_engine import scan_events
from toolkit.engines.queries import get_query
from toolkit.errors import EventNotFoundError
from toolkit.journal.retention import read_removals
from toolkit.journal.store import Journal

Direction = Literal["up", "down", "both"]
C = TypeVar("C", bound=Mapping[str, Any])

NODE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "stream_id",
    "stream_type",
    "version",
    "position",
    "event_type",
    "occurred_at",
    "causation_id",
    "correlation_id",
    "trace_id",
    "agent",
    "subject_id",
    "model",
    "tool_name",
    "tool_call_id",
    "is_error",
    "error",
    "data",
    "metadata",
)


AMBIGUOUS_SCHEMA = pl.Schema(
    {"event_id": pl.String(), "stream_id": pl.String(), "version": pl.Int64(), "event_type": pl.String(), "also_in": pl.List(pl.String())}
)
PURGED_SCHEMA = pl.Schema(
    {
        "event_id": pl.String(),
        "stream_id": pl.String(),
        "version": pl.Int64(),
        "event_type": pl.String(),
        "missing_cause": pl.String(),
        "removed_by": pl.String(),
    }
)


@dataclass
class Chain:
    """The result of a walk.

    ``nodes``: the events reached (``NODE_COLUMNS``), ``depth`` (negative: ancestors, 0: the
    focus, positive: descendants) and ``parent_id`` (the cause when it is in the chain).
    ``orphans``: events of the chain whose cause is not in the journal (``purged``: those whose
    cause a purge removed, with the purge, ``removed_by``: not orphans). ``cycles``: each a list
    of event ids that cause one another in a ring. ``truncated``: ``depth`` stopped the walk.
    ``ambiguous``: events of the chain whose event id other events carry too, and the streams
    of those (``also_in``); the chain has the copy its effect's stream, correlation and time
    point to (the focus: the first committed).
    """

    focus: str
    direction: Direction
    nodes: pl.DataFrame
    orphans: pl.DataFrame
    cycles: list[list[str]] = field(default_factory=list)
    truncated: bool = False
    journal_queries: int = 0
    ambiguous: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=AMBIGUOUS_SCHEMA))
    purged: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PURGED_SCHEMA))

    def graph(self) -> dict[str, Any]:
        """Nodes (with explainer title and summary, without payloads) and edges as plain
        JSON-ready data (notebooks, ``--format json``)."""
        texts = [describe_event(r) for r in self.nodes.to_dicts()]
        nodes = self.nodes.with_columns(
            pl.col("occurred_at").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"),
            title=pl.Series([t for t, _ in texts], dtype=pl.String),
            summary=pl.Series([x for _, x in texts], dtype=pl.String),
        )
        ids = set(self.nodes.get_column("event_id").to_list())
        edges = [
            {"cause": c, "effect": e}
            for e, c in self.nodes.select("event_id", "causation_id").iter_rows()
            if c is not None and c in ids
        ]
        return {
            "focus": self.focus,
            "direction": self.direction,
            "truncated": self.truncated,
            "nodes": nodes.drop("data", "metadata").to_dicts(),
            "edges": edges,
            "orphans": self.orphans.to_dicts(),
            "purged": self.purged.to_dicts(),
            "cycles": self.cycles,
            "ambiguous": self.ambiguous.to_dicts(),
        }


# Journal-wide lookup by a list of event ids (DuckDB uses the bloom filters of compacted files).
# Not a catalog query: its list parameter has no value the catalog's fixture test could bind
# and get rows from. Values are always bound.
_FIND_BY_ID = "SELECT event_id, stream_id FROM events WHERE list_contains($ids, event_id)"
# whole streams, only the columns a chain needs (DuckDB prunes row groups by stream_id statistics
# and reads just these columns; NODE_COLUMNS in order)
_READ_STREAMS = (
    "SELECT event_id, stream_id, stream_type, version, position, event_type, occurred_at, causation_id, "
    "correlation_id, trace_id, agent, subject_id, model, tool_name, tool_call_id, is_error, error, data, metadata "
    "FROM events WHERE list_contains($streams, stream_id)"
)


class _Loader:
    """Streams loaded whole, and the journal-wide lookups that find more of them.

    Lookups by event id and stream reads go through one sandboxed DuckDB session (bloom filters
    on event_id, row-group statistics on stream_id, only the needed columns); lookups by cause
    are a Polars scan.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.frame = pl.DataFrame(schema={c: _schema()[c] for c in NODE_COLUMNS})
        self.streams: set[str] = set()
        self.absent: set[str] = set()  # causes looked up and not found anywhere
        self.complete: set[str] = set()  # ids whose every copy (event with that id) is loaded
        self.queries = 0
        self._session: duckdb_engine.Session | None = None
        # the loaded events (``_CHOICE_COLUMNS``) by position, by event id and by cause id: a walk
        # takes one step per link, so each step looks its events up instead of filtering the frame
        # (a 6,000-link chain: 6 s of filters)
        self.by: dict[str, dict[Any, list[dict[str, Any]]]] = {"position": {}, "event_id": {}, "causation_id": {}}

    def _query(self, sql: str, params: dict[str, Any]) -> pl.DataFrame:
        if self._session is None:
            self._session = duckdb_engine.connect(self.journal)
        self.queries += 1
        return pl.DataFrame(self._session.query(sql, params))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def load_streams(self, stream_ids: Iterable[str]) -> None:
        new = sorted(set(stream_ids) - self.streams)
        if not new:
            return
        loaded = self._query(_READ_STREAMS, {"streams": new})
        self.queries -= 1  # reading whole streams is not a lookup
        self.frame = pl.concat([self.frame, loaded], how="vertical_relaxed")
        self.streams.update(new)
        for r in loaded.select(_CHOICE_COLUMNS).to_dicts():
            for column, index in self.by.items():
                if r[column] is not None:
                    index.setdefault(r[column], []).append(r)

    def find_by_id(self, event_ids: Sequence[str]) -> None:
        """Load every stream holding these events (all copies of an id); remember the ids that
        are nowhere."""
        wanted = sorted(set(event_ids) - self.complete)
        if not wanted:
            return
        hits = self._query(_FIND_BY_ID, {"ids": wanted})
        self.load_streams(hits.get_column("stream_id").to_list() if hits.height else [])
        found = set(hits.get_column("event_id").to_list()) if hits.height else set()
        self.absent.update(set(wanted) - found)
        self.complete.update(wanted)

    def find_effects(self, event_ids: Sequence[str]) -> bool:
        """Load streams (not loaded yet) holding events caused by these, or other events with
        these ids (copies); True when any were."""
        if not event_ids:
            return False
        # causation ids have no bloom filter or useful statistics: a Polars scan of three columns
        # is as fast as DuckDB here and needs no session
        self.queries += 1
        ids = list(event_ids)
        hits = (
            scan_events(self.journal)
            .filter(
                (pl.col("causation_id").is_in(ids) | pl.col("event_id").is_in(ids))
                & ~pl.col("stream_id").is_in(sorted(self.streams))
            )
            .select("stream_id")
            .unique()
            .collect()
        )
        before = len(self.streams)
        self.load_streams(hits.get_column("stream_id").to_list())
        self.complete.update(ids)
        return len(self.streams) > before


def _schema() -> pl.Schema:
    from toolkit.journal.schema import POLARS_SCHEMA

    return POLARS_SCHEMA


def walk_chain(
    journal: Journal,
    event_id: str,
    *,
    direction: Direction = "both",
    depth: int | None = None,
) -> Chain:
    """Walk causation from ``event_id``: ``up`` to the root input, ``down`` to every effect.

    ``depth`` limits the number of causation links followed each way (``None``: no limit).
    Raises ``EventNotFoundError`` (with near matches) when the event is not in the journal.
    """
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be up, down or both, not {direction!r}")
    loader = _Loader(journal)
    try:
        return _walk(journal, loader, event_id, direction, depth)
    finally:
        loader.close()


def _walk(journal: Journal, loader: _Loader, event_id: str, direction: Direction, depth: int | None) -> Chain:
    loader.find_by_id([event_id])
    if event_id in loader.absent:
        raise EventNotFoundError.near(event_id, near_event_ids(journal, event_id))
    limit = depth if depth is not None else 1 << 30
    depths: dict[str, int] = {event_id: 0}
    # the event of each id in the chain (its position): the focus's first committed copy
    taken: dict[str, int] = {event_id: min(c["position"] for c in _copies(loader, [event_id])[event_id])}
    truncated = False
    cycles: list[list[str]] = []

    if direction in ("up", "both"):
        frontier = [taken[event_id]]
        level = 0
        while frontier:
            if level >= limit:
                truncated = truncated or _has_causes(loader, frontier)
                break
            caused = [r for r in _rows(loader, frontier) if r["causation_id"] is not None]
            copies = _copies(loader, [r["causation_id"] for r in caused])
            # a cause without a copy in its effect's stream: every copy in the journal is looked up
            elsewhere = [r["causation_id"] for r in caused if not _in_stream(copies, r)]
            if elsewhere:
                loader.find_by_id(elsewhere)
                copies = _copies(loader, [r["causation_id"] for r in caused])
            level += 1
            frontier = []
            for r in caused:
                c = r["causation_id"]
                if c in depths:
                    continue  # a cycle: reported below
                if c not in copies:
                    continue  # an orphan
                depths[c] = -level
                taken[c] = choose_cause(r, copies[c])["position"]
                frontier.append(taken[c])

    if direction in ("down", "both"):
        frontier = [taken[event_id]]
        level = 0
        searched: set[str] = set()
        while frontier:
            # effects in streams not loaded yet: one journal query for every event of the
            # streams loaded since the last one (so one query per hop between streams)
            pending = loader.streams - searched
            if pending:
                searched.update(pending)
                loader.find_effects(
                    loader.frame.filter(pl.col("stream_id").is_in(sorted(pending))).get_column("event_id").to_list()
                )
            if level >= limit:
                truncated = truncated or bool(_effects_of(loader, frontier))
                break
            level += 1
            effects = _effects_of(loader, frontier)
            frontier = []
            for e in effects:
                if e["event_id"] in depths:
                    continue
                depths[e["event_id"]] = level
                taken[e["event_id"]] = e["position"]
                frontier.append(e["position"])

    # causes resolved within their effect's stream: one lookup finds their copies elsewhere
    loader.find_by_id(sorted(depths))
    nodes = (
        loader.frame.filter(pl.col("position").is_in(list(taken.values())))
        .with_columns(depth=pl.col("event_id").replace_strict(depths, return_dtype=pl.Int64))
    )
    ids = set(depths)
    nodes = nodes.with_columns(
        parent_id=pl.when(pl.col("causation_id").is_in(list(ids))).then(pl.col("causation_id"))
    ).sort(["depth", "occurred_at", "position"])
    cycles = _cycles(loader, nodes, ids)
    orphans = nodes.filter(pl.col("causation_id").is_in(sorted(loader.absent))).select(
        "event_id", "stream_id", "version", "event_type", pl.col("causation_id").alias("missing_cause")
    )
    purged = pl.DataFrame(schema=PURGED_SCHEMA)
    if orphans.height:  # a cause a purge removed is not an orphan
        removals = read_removals(journal)
        if not removals.empty:
            marked = orphans.with_columns(removals.removed_by(orphans, "missing_cause").alias("removed_by"))
            purged = marked.filter(pl.col("removed_by").is_not_null())
            orphans = marked.filter(pl.col("removed_by").is_null()).drop("removed_by")
    return Chain(
        event_id, direction, nodes, orphans, cycles, truncated, loader.queries, _ambiguous(loader, nodes), purged
    )


def _rows(loader: _Loader, values: Sequence[Any], column: str = "position") -> list[dict[str, Any]]:
    """The loaded events whose ``column`` is one of ``values`` (by default: at these positions;
    ``causation_id``: caused by these ids), in time order, with what choosing among copies of a
    cause needs."""
    index = loader.by[column]
    rows = [r for v in set(values) for r in index.get(v, ())]
    return sorted(rows, key=lambda r: (r["occurred_at"], r["position"]))


_CHOICE_COLUMNS = ("event_id", "stream_id", "correlation_id", "causation_id", "occurred_at", "position")


def _copies(loader: _Loader, event_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The loaded events carrying each of these ids (usually one each; none: not loaded)."""
    index = loader.by["event_id"]
    return {e: list(index[e]) for e in set(event_ids) if e in index}


def _in_stream(copies: dict[str, list[dict[str, Any]]], effect: dict[str, Any]) -> bool:
    return any(c["stream_id"] == effect["stream_id"] for c in copies.get(effect["causation_id"], ()))


def cause_rank(effect: Mapping[str, Any], copy: Mapping[str, Any]) -> tuple[bool, bool, bool, dt.timedelta, int]:
    """How well ``copy`` (one of the events carrying ``effect``'s cause id) fits as its cause,
    lowest best: the copy in the effect's stream, then one of its correlation, then the latest
    before it (else the earliest after it), then the first committed. Both are mappings with
    ``stream_id``, ``correlation_id``, ``occurred_at``; the copy also ``position``. The one rule
    for a duplicated cause id: ``journal chain`` and the compliance bundle's causation links."""
    same_correlation = effect["correlation_id"] is not None and copy["correlation_id"] == effect["correlation_id"]
    gap = effect["occurred_at"] - copy["occurred_at"]  # >= 0: before the effect
    before = gap >= dt.timedelta(0)
    return (
        copy["stream_id"] != effect["stream_id"],
        not same_correlation,
        not before,
        gap if before else -gap,
        copy["position"],
    )


def choose_cause(effect: Mapping[str, Any], copies: Sequence[C]) -> C:
    """The copy of ``effect``'s cause id that caused it (:func:`cause_rank`).

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> e = {"stream_id": "b", "correlation_id": "s1", "occurred_at": t}
    >>> copies = [{"stream_id": s, "correlation_id": c, "occurred_at": t + dt.timedelta(seconds=d), "position": p}
    ...           for s, c, d, p in [("a", None, -2, 1), ("c", "s1", 5, 2), ("d", "s1", -9, 3), ("e", "s1", -1, 4)]]
    >>> choose_cause(e, copies)["stream_id"], choose_cause({**e, "stream_id": "a"}, copies)["stream_id"]
    ('e', 'a')
    """
    if len(copies) == 1:
        return copies[0]
    return min(copies, key=lambda c: cause_rank(effect, c))


def _has_causes(loader: _Loader, positions: Sequence[int]) -> bool:
    return any(r["causation_id"] is not None for r in _rows(loader, positions))


def _effects_of(loader: _Loader, positions: Sequence[int]) -> list[dict[str, Any]]:
    """The loaded events caused by the events at these positions (in time order): those whose
    cause id, resolved among its copies (:func:`choose_cause`), is one of these events."""
    causes = {r["event_id"]: r["position"] for r in _rows(loader, positions)}
    effects = _rows(loader, list(causes), "causation_id")
    copies = _copies(loader, causes) if effects else {}
    return [e for e in effects if choose_cause(e, copies[e["causation_id"]])["position"] == causes[e["causation_id"]]]


def _cycles(loader: _Loader, nodes: pl.DataFrame, ids: set[str]) -> list[list[str]]:
    """Rings of causation among the loaded events that touch the chain (each reported once)."""
    parent = dict(loader.frame.select("event_id", "causation_id").iter_rows())
    parent.update(nodes.select("event_id", "causation_id").iter_rows())  # an id's copy in the chain
    found: list[list[str]] = []
    done: set[str] = set()
    for start in sorted(ids):
        path: list[str] = []
        on_path: dict[str, int] = {}
        node: str | None = start
        while node is not None and node in parent and node not in done and node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = parent[node]
        if node is not None and node in on_path:
            found.append(path[on_path[node] :])
        done.update(path)
    return found


def _ambiguous(loader: _Loader, nodes: pl.DataFrame) -> pl.DataFrame:
    """Events of the chain whose id other loaded events carry too (every copy is loaded)."""
    taken = nodes.select("event_id", pl.col("position").alias("taken"))
    others = (
        loader.frame.select("event_id", "stream_id", "position")
        .join(taken, on="event_id")
        .filter(pl.col("position") != pl.col("taken"))
        .group_by("event_id")
        .agg(also_in=pl.col("stream_id").unique().sort())
    )
    return (
        nodes.join(others, on="event_id")
        .sort("depth", "occurred_at", "position")
        .select(list(AMBIGUOUS_SCHEMA))
    )


def near_event_ids(journal: Journal, event_id: str, limit: int = 3) -> list[str]:
    """Event ids most like ``event_id`` (for the error's hint)."""
    return near_values(journal, "causation/near_event_ids", {"event_id": event_id, "limit": limit}, "event_id")


def near_values(journal: Journal, query: str, params: dict[str, Any], column: str) -> list[str]:
    """Values of ``column`` from a ``near_*`` catalog query that are plausibly what was meant."""
    q = get_query(query)
    session = duckdb_engine.connect(journal)
    try:
        rows = session.query(q.sql, q.bind(params)).to_pylist()
    finally:
        session.close()
    wanted = str(next(iter(params.values())))
    return [
        r[column]
        for r in rows
        if r[column] is not None and (r["similarity"] >= 0.8 or _edit_distance(wanted, r[column]) <= 2)
    ]


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (for a handful of candidates).

    >>> _edit_distance("a9", "a1"), _edit_distance("kitten", "sitting")
    (1, 3)
    """
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def find_missing_causes(journal: Journal) -> pl.DataFrame:
    """Every event whose cause is not in the journal (one anti-join over two columns), with the
    purge that removed that cause (``removed_by``; null: an orphan, none did as far as the purges
    record): the orphans and the purged causes of one scan."""
    events = scan_events(journal)
    missing = (
        events.filter(pl.col("causation_id").is_not_null())
        .select("stream_id", "version", "event_id", "event_type", "occurred_at", pl.col("causation_id").alias("missing_cause"))
        .join(events.select("event_id"), left_on="missing_cause", right_on="event_id", how="anti")
        .sort("occurred_at", "stream_id", "version")
        .collect()
    )
    removals = read_removals(journal)
    removed_by = pl.Series("removed_by", [None] * missing.height, dtype=pl.String)
    if missing.height and not removals.empty:
        removed_by = removals.removed_by(missing, "missing_cause").alias("removed_by")
    return missing.with_columns(removed_by)


def find_orphans(journal: Journal) -> pl.DataFrame:
    """Every event of the journal whose cause is not in it, and was not removed by a purge
    (retention, ``journal archive --delete``: :func:`find_purged_causes`)."""
    return find_missing_causes(journal).filter(pl.col("removed_by").is_null()).drop("removed_by")


def find_purged_causes(journal: Journal) -> pl.DataFrame:
    """Every event whose cause a purge removed, with that purge (``removed_by``): not orphans."""
    return find_missing_causes(journal).filter(pl.col("removed_by").is_not_null())


__all__ = [
    "NODE_COLUMNS",
    "Chain",
    "Direction",
    "cause_rank",
    "choose_cause",
    "find_missing_causes",
    "find_orphans",
    "find_purged_causes",
    "near_event_ids",
    "near_values",
    "walk_chain",
]
