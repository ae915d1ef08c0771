"""``journal bisect``: the first version (or journal position) where a rule stops holding.

``P(v)`` is the rule's verdict on the stream as it stood after version ``v``, as if nothing
later existed: SQL and Polars rules are evaluated over the stream's events up to ``v`` (other
streams stay visible to SQL rules) and the verdict of the latest event they speak about counts;
Python rules judge ``state_at(version=v)`` (snapshots make that cheap).

Every bisection (SQL, Python and Polars rules, of a stream or ``--global``) reads the journal at
the Delta version current when it starts (``Journal.pinned``): the stream's head, every probe, a
linear scan and the event and states it reports all read that one version, so an import or append
committing meanwhile changes none of them (``BisectResult.journal_version`` says which version).

A Polars rule sees the whole journal, so each probe used to scan it again. A bisection now reads
the events the rule needs once (the columns it names, of its event types, at the pinned version)
and judges every probe, and a linear scan after a fallback, on that frame in memory. A frame larger
than ``HOLD_BYTES_MAX`` serves the first probe and is dropped; each later probe scans the pinned
version again, as before.

Binary search is valid only for monotone rules (once broken, stays broken): it takes
``1 + ceil(log2(n))`` evaluations (18 for a 100,000-event stream). A rule that does not declare
itself monotone gets a linear scan, and so does a bisection that sees evidence against
monotonicity (a verdict that holds after an earlier one failed); the result says which method ran
and why. A Python rule over the agent run is not bisected on a stream with a negative cost (a
refund): the run's cost falls there, so a rule monotone in it can hold again after failing, and no
probe of a state would show it (``state_rules.cost_falls``). The linear scan judges every event
once, exactly as ``journal regrade`` does.

The probes of a SQL rule run watched (``Session.watched``): Ctrl-C stops a running one, and each
is stopped after ``time_limit_s`` seconds (default ``sql_timeout_s`` of journal.toml) with
QueryTimeoutError, as ``journal sql`` and ``journal regrade`` stop theirs.

``bisect_global`` does the same over the whole journal in position (commit) order, for rules of
``scope`` global: a SQL or Polars rule over every event, or a Python rule whose aggregate folds
the journal-wide state (a user-supplied global reducer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
import pyarrow.compute as pc

from toolkit.analysis.rules import Rule, RuleSet
from toolkit.analysis.verdicts import (
    polars_global_verdicts,
    polars_verdicts,
    polars_verdicts_of,
    scan_rule_events,
    sql_global_verdicts,
    sql_prefix_verdicts,
)
from toolkit.engines import duckdb_engine
from toolkit.engines.polars_engine import scan_events
from toolkit.errors import (
    RuleDefinitionError,
    RuleEvaluationError,
    StreamNotFoundError,
    ToolkitError,
    VersionPurgedError,
)
from toolkit.journal.store import Journal

# a Polars rule's events (the columns it reads) held in memory for every probe up to this size
HOLD_BYTES_MAX: Final = 2 * 2**30


@dataclass
class BisectResult:
    rule: str
    stream_id: str | None  # None: a global bisection
    method: str  # "bisection" | "linear scan"
    evaluations: int
    events: int  # events in the stream (or journal) searched
    version: int | None = None  # first failing version (stream) or position (global); None: always holds
    note: str | None = None  # why the method was chosen / what was seen
    message: str | None = None
    event: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    state_before: Any = None
    state_after: Any = None
    probes: list[tuple[int, bool]] = field(default_factory=list)  # (version, holds) in the order evaluated
    journal_version: int | None = None  # the Delta version of the journal every probe read

    def summary(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "stream_id": self.stream_id,
            "journal_version": self.journal_version,
            "first_failing": self.version,
            "method": self.method,
            "evaluations": self.evaluations,
            "events": self.events,
            "note": self.note,
            "message": self.message,
        }


class _NotMonotone(Exception):
    """A probe saw a verdict that holds after an earlier failing one."""


@contextmanager
def _judging(rule: Rule, where: str) -> Iterator[None]:
    """Turn an exception of the rule's own code (or its reducer's) into a RuleEvaluationError naming where."""
    try:
        yield
    except (ToolkitError, _NotMonotone):
        raise
    except Exception as e:
        raise RuleEvaluationError(
            f"rule {rule.name} raised {type(e).__name__}: {e} judging {where}",
            hint=f"fix the rule ({rule.origin}); journal regrade {rule.name} records such an error as a "
            "finding of kind error and judges the other streams",
            rule=rule.name,
        ) from e


@contextmanager
def _sql_session(journal: Journal, rule: Rule, time_limit_s: float | None) -> Iterator[duckdb_engine.Session | None]:
    """A SQL rule's session for every probe, watched (Ctrl-C, the time limit; None: ``sql_timeout_s`` of
    journal.toml, 0: no limit); None for other rules."""
    if rule.kind != "sql":
        yield None
        return
    session = duckdb_engine.connect(journal)
    try:
        with session.watched(journal.config.sql_timeout_s if time_limit_s is None else time_limit_s):
            yield session
    finally:
        session.close()


def _bind(rule: Rule, params: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's parameters from ``-p name=value`` or, as ``journal regrade`` takes them, ``-p rule.name=value``."""
    from toolkit.analysis.regrade import split_params

    return rule.bind(split_params([rule], params)[rule.name])


def search_first_failure(n: int, probe: Callable[[int], bool]) -> tuple[int | None, int]:
    """Smallest v in 1..n with ``probe(v)`` False, assuming monotone; (None, evals) if P(n) holds.

    >>> search_first_failure(100_000, lambda v: v < 31_337)
    (31337, 18)
    >>> search_first_failure(10, lambda v: True)
    (None, 1)
    """
    evaluations = 1
    if n == 0 or probe(n):
        return None, evaluations
    lo, hi = 0, n  # P(lo) holds (the empty prefix), P(hi) fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        evaluations += 1
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return hi, evaluations


def max_evaluations(n: int) -> int:
    """Upper bound of ``search_first_failure`` on n events: 1 + ceil(log2 n)."""
    return 1 + (math.ceil(math.log2(n)) if n > 1 else 0)


def bisect_stream(
    journal: Journal,
    rule_name: str,
    stream_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    rule_files: tuple[str, ...] = (),
    force_linear: bool = False,
    hold_bytes_max: int = HOLD_BYTES_MAX,
    time_limit_s: float | None = None,
) -> BisectResult:
    """First version of ``stream_id`` where the rule stops holding (see the module docstring).

    Everything is read at the journal's Delta version when the call starts (``Journal.pinned``).
    A Polars rule's probes share one read of the journal, held in memory unless it takes more than
    ``hold_bytes_max`` bytes (then each later probe scans the same Delta version again). A SQL rule's
    query is stopped after ``time_limit_s`` seconds (None: ``sql_timeout_s`` of journal.toml; 0: no
    limit) with QueryTimeoutError.
    """
    rule = RuleSet.load(rule_files).get(rule_name)
    if rule.scope != "stream":
        raise RuleDefinitionError(
            f"rule {rule.name} judges the whole journal in time order", hint=f"use: journal bisect {rule.name} --global"
        )
    bound = _bind(rule, params or {})
    journal = journal.pinned()  # the head, every probe and the description read this one version
    n = journal.stream_version(stream_id)
    if n == 0:
        raise StreamNotFoundError(
            f"no stream {stream_id!r} in {journal.path}", hint="list streams with: journal streams", stream_id=stream_id
        )
    probes: list[tuple[int, bool]] = []
    messages: dict[int, str | None] = {}
    with _sql_session(journal, rule, time_limit_s) as session:
        source = _PolarsSource(journal, rule, hold_bytes_max) if rule.kind == "polars" else None

        def probe(v: int) -> bool:
            with _judging(rule, f"stream {stream_id} at version {v}"):
                ok, message = _probe_stream(journal, session, source, rule, bound, stream_id, v)
            probes.append((v, ok))
            messages[v] = message
            return ok

        note = None
        falling = rule.monotone and not force_linear and _cost_falls(journal, rule, stream_id)
        if rule.monotone and not force_linear and not falling:
            try:
                version, evaluations = search_first_failure(n, probe)
                result = BisectResult(rule.name, stream_id, "bisection", evaluations, n, version,
                                      f"binary search over {n} versions (rule declared monotone)", probes=probes,
                                      journal_version=journal.pinned_version)
                result.message = messages.get(version) if version else None
                return _describe(journal, rule, result)
            except _NotMonotone as e:
                note = f"bisection saw evidence against monotonicity ({e}); fell back to a linear scan"
        elif force_linear:
            note = "linear scan requested"
        elif falling:
            note = (
                f"stream {stream_id} has a negative cost (a refund?): the run's cost falls there, "
                f"so rule {rule.name} may hold again after failing; linear scan"
            )
        else:
            note = f"rule {rule.name} does not declare itself monotone: linear scan"
        with _judging(rule, f"stream {stream_id}"):
            version, message, evaluations = _linear_stream(journal, session, source, rule, bound, stream_id)
        result = BisectResult(rule.name, stream_id, "linear scan", evaluations, n, version, note, message, probes=probes,
                              journal_version=journal.pinned_version)
        return _describe(journal, rule, result)


class _PolarsSource:
    """What a Polars rule's probes read: one frame of a pinned journal, held for all of them while it is
    small enough, else a scan each of that journal (still one Delta version)."""

    def __init__(self, journal: Journal, rule: Rule, hold_bytes_max: int) -> None:
        assert journal.pinned_version is not None  # bisect_stream pins it
        self.journal, self.rule, self.hold_bytes_max = journal, rule, hold_bytes_max
        self.held: pl.DataFrame | None = None
        self.too_large = False

    def _frame(self, one_pass: bool) -> pl.DataFrame | None:
        """The rule's events read once (held while small enough), or None: scan the pinned journal
        (too large, or ``one_pass``, a linear scan that reads them once anyway)."""
        if self.held is None and (self.too_large or one_pass):
            return None
        frame = self.held
        if frame is None:
            frame = scan_rule_events(self.journal, self.rule).sort("position").collect()
            self.too_large = frame.estimated_size() > self.hold_bytes_max
            self.held = None if self.too_large else frame  # too large: this probe's alone
        return frame

    def verdicts(self, bound: dict[str, Any], prefix: tuple[str, int] | None = None) -> pl.LazyFrame:
        frame = self._frame(one_pass=prefix is None)
        if frame is None:
            return polars_verdicts(self.journal, self.rule, bound, prefix=prefix)
        return polars_verdicts_of(frame.lazy(), self.rule, bound, prefix=prefix)

    def global_verdicts(self, bound: dict[str, Any], position: int, *, one_pass: bool) -> list[tuple[int, bool, str | None]]:
        """(position, holds, message) of a global rule over the journal up to ``position`` (time order)."""
        frame = self._frame(one_pass)
        if frame is None:
            return polars_global_verdicts(self.journal, self.rule, bound, position)
        events = frame.lazy()
        verdicts = polars_verdicts_of(events, self.rule, bound, up_to_position=position).filter(pl.col("holds").is_not_null())
        at = events.select("stream_id", "version", "position")
        out = verdicts.join(at, on=["stream_id", "version"]).sort("position").select("position", "holds", "message")
        return list(out.collect().iter_rows())


def _cost_falls(journal: Journal, rule: Rule, stream_id: str) -> bool:
    """Whether a Python rule over the agent run sees the run's cost fall in this stream."""
    if rule.kind != "python":
        return False  # SQL and Polars probes see every earlier verdict: evidence shows itself
    from toolkit.analysis.agent_run import AGENT_RUN
    from toolkit.analysis.state_rules import cost_falls, rule_aggregate

    if rule_aggregate(rule) is not AGENT_RUN:
        return False
    events = pl.from_arrow(journal.read_stream(stream_id, ["cost_usd"]))
    assert isinstance(events, pl.DataFrame)
    return bool(events.select(cost_falls().any()).item())


def _probe_stream(
    journal: Journal,
    session: duckdb_engine.Session | None,
    source: _PolarsSource | None,
    rule: Rule,
    bound: dict[str, Any],
    stream_id: str,
    v: int,
) -> tuple[bool, str | None]:
    if rule.kind == "python":
        from toolkit.analysis.replay import state_at
        from toolkit.analysis.state_rules import judge, rule_aggregate

        try:
            state = state_at(journal, stream_id, version=v, aggregate=rule_aggregate(rule))
        except VersionPurgedError:
            return True, None  # purged: nothing left to judge, as SQL and Polars probes see it
        return judge(rule, state, bound)
    if rule.kind == "sql":
        assert session is not None
        verdicts = sql_prefix_verdicts(session, rule, bound, stream_id, v)
    else:
        assert source is not None
        frame = source.verdicts(bound, prefix=(stream_id, v))  # other streams stay visible
        frame = frame.filter(pl.col("stream_id") == stream_id, pl.col("holds").is_not_null()).sort("version")
        verdicts = list(frame.select("version", "holds", "message").collect().iter_rows())
    if not verdicts:
        return True, None
    last_version, last_ok, last_message = verdicts[-1]
    if last_ok:
        broken = next((ver for ver, ok, _ in verdicts if not ok), None)
        if broken is not None:
            raise _NotMonotone(f"the verdict at version {last_version} holds after version {broken} failed")
    return bool(last_ok), last_message


def _linear_stream(
    journal: Journal,
    session: duckdb_engine.Session | None,
    source: _PolarsSource | None,
    rule: Rule,
    bound: dict[str, Any],
    stream_id: str,
) -> tuple[int | None, str | None, int]:
    """(first failing version, message, rule evaluations) judging every event once."""
    if rule.kind == "python":
        from toolkit.analysis.replay import fold_states
        from toolkit.analysis.state_rules import judge, rule_aggregate

        evaluations, version = 0, 0
        states = fold_states(journal, stream_id, rule_aggregate(rule))
        while True:
            with _judging(rule, f"stream {stream_id} at version {version + 1}"):
                step = next(states, None)
                if step is None:
                    return None, None, evaluations
                version, state = step
                evaluations += 1
                ok, message = judge(rule, state, bound)
            if not ok:
                return version, message, evaluations
    if rule.kind == "sql":
        assert session is not None
        n = journal.stream_version(stream_id)
        rows = sql_prefix_verdicts(session, rule, bound, stream_id, n)
    else:
        assert source is not None
        frame = source.verdicts(bound).filter(pl.col("stream_id") == stream_id)
        rows = list(frame.sort("version").select("version", "holds", "message").collect().iter_rows())
    first = next(((v, m) for v, ok, m in rows if ok is False), None)
    return (first[0], first[1], 1) if first else (None, None, 1)


def _describe(journal: Journal, rule: Rule, result: BisectResult) -> BisectResult:
    """Attach the failing event, its explanation and the agent-run state before and after it."""
    if result.version is None or result.stream_id is None:
        return result
    from toolkit.analysis.explain import explain_event
    from toolkit.analysis.replay import state_at
    from toolkit.analysis.state_rules import rule_aggregate

    table = journal.read_stream(result.stream_id)
    rows = table.filter(pc.equal(table.column("version"), result.version)).to_pylist()  # not the whole stream as rows
    if rows:
        result.event = rows[0]
        e = explain_event(rows[0])
        result.explanation = {"title": e.title, "summary": e.summary, "tags": list(e.tags)}
    aggregate = rule_aggregate(rule)
    try:
        before = state_at(journal, result.stream_id, version=result.version - 1, aggregate=aggregate)
        result.state_before = aggregate.to_dict(before)
    except VersionPurgedError:
        pass  # the failing event is the first one a purge kept: the state before it is gone
    after = state_at(journal, result.stream_id, version=result.version, aggregate=aggregate)
    result.state_after = aggregate.to_dict(after)
    return result


# ---------------------------------------------------------------------- global


def bisect_global(
    journal: Journal,
    rule_name: str,
    *,
    params: Mapping[str, Any] | None = None,
    rule_files: tuple[str, ...] = (),
    force_linear: bool = False,
    time_limit_s: float | None = None,
) -> BisectResult:
    """First journal position where a global rule stops holding (events in position order), read at
    the journal's Delta version when the call starts (``Journal.pinned``); ``time_limit_s`` as for
    :func:`bisect_stream`."""
    rule = RuleSet.load(rule_files).get(rule_name)
    if rule.scope != "global":
        raise RuleDefinitionError(
            f"rule {rule.name} judges each stream, not the journal as a whole",
            hint=f"bisect one stream with: journal bisect {rule.name} STREAM",
        )
    bound = _bind(rule, params or {})
    journal = journal.pinned()  # the positions, every probe and the description read this one version
    positions = scan_events(journal).select("position").sort("position").collect().get_column("position").to_list()
    n = len(positions)
    probes: list[tuple[int, bool]] = []
    messages: dict[int, str | None] = {}
    folder = _GlobalFolder(journal, rule, bound) if rule.kind == "python" else None
    # a Polars rule's events are read once for all probes (as for a stream), not twice a probe
    source = _PolarsSource(journal, rule, HOLD_BYTES_MAX) if rule.kind == "polars" else None

    with _sql_session(journal, rule, time_limit_s) as session:

        def verdicts_up_to(position: int, *, one_pass: bool = False) -> list[tuple[int, bool, str | None]]:
            """(position, holds, message) of a SQL or Polars rule over the journal up to ``position``."""
            if source is not None:
                return source.global_verdicts(bound, position, one_pass=one_pass)
            assert session is not None
            return sql_global_verdicts(session, rule, bound, position)

        def probe(k: int) -> bool:
            with _judging(rule, f"the journal up to position {positions[k - 1]}"):
                if folder is not None:
                    ok, message = folder.holds_after(k)
                else:
                    verdicts = verdicts_up_to(positions[k - 1])
                    ok, message = (verdicts[-1][1], verdicts[-1][2]) if verdicts else (True, None)
                    if ok and any(not v for _, v, _ in verdicts):
                        raise _NotMonotone(f"holds at position {positions[k - 1]} after an earlier failure")
            probes.append((positions[k - 1], ok))
            messages[k] = message
            return ok

        note = None
        if rule.monotone and not force_linear:
            try:
                k, evaluations = search_first_failure(n, probe)
                result = BisectResult(rule.name, None, "bisection", evaluations, n,
                                      positions[k - 1] if k else None, "binary search over the journal in position order",
                                      messages.get(k) if k else None, probes=probes,
                                      journal_version=journal.pinned_version)
                return _describe_global(journal, result, folder, k)
            except _NotMonotone as e:
                note = f"bisection saw evidence against monotonicity ({e}); fell back to a linear scan"
        else:
            note = "linear scan requested" if force_linear else f"rule {rule.name} is not declared monotone: linear scan"
        first_k: int | None = None
        first_message: str | None = None
        if folder is not None:
            folder = _GlobalFolder(journal, rule, bound)
            evaluations = 0
            for k in range(1, n + 1):
                evaluations += 1
                with _judging(rule, f"the journal at position {positions[k - 1]}"):
                    ok, message = folder.holds_after(k)
                if not ok:
                    first_k, first_message = k, message
                    break
        else:
            with _judging(rule, "the journal"):
                verdicts = verdicts_up_to(positions[-1] if positions else 0, one_pass=not probes)
            failed = next(((p, m) for p, ok, m in verdicts if not ok), None)
            if failed is not None:
                first_k, first_message = positions.index(failed[0]) + 1, failed[1]
            evaluations = 1
        first = positions[first_k - 1] if first_k else None
        result = BisectResult(rule.name, None, "linear scan", evaluations, n, first, note, first_message, probes=probes,
                              journal_version=journal.pinned_version)
        return _describe_global(journal, result, folder, first_k)


class _GlobalFolder:
    """Folds the journal-wide state forward; probes at lower positions restart from a kept copy."""

    def __init__(self, journal: Journal, rule: Rule, bound: dict[str, Any]) -> None:
        from toolkit.analysis.aggregates import EVENT_COLUMNS, Event

        self.rule, self.bound, self.aggregate = rule, bound, rule.aggregate
        frame = (
            scan_events(journal).select(list(EVENT_COLUMNS)).with_columns(pl.col("occurred_at").dt.epoch("us"))
            .sort("position").collect()
        )
        self.events = [Event(r) for r in frame.iter_rows()]
        self.kept: dict[int, Any] = {0: self.aggregate.initial()}

    def state_after(self, k: int) -> Any:
        """The journal-wide state after the first ``k`` events (folded on from the nearest kept one)."""
        from toolkit.analysis.state_rules import fold_event

        start = max(i for i in self.kept if i <= k)
        state = self.aggregate.copy(self.kept[start])
        for e in self.events[start:k]:
            state = fold_event(self.aggregate, state, e)
        self.kept[k] = self.aggregate.copy(state)
        return state

    def holds_after(self, k: int) -> tuple[bool, str | None]:
        from toolkit.analysis.state_rules import judge

        return judge(self.rule, self.state_after(k), self.bound)


def _describe_global(journal: Journal, result: BisectResult, folder: _GlobalFolder | None, k: int | None) -> BisectResult:
    """Attach the failing event, its explanation and (Python rules) the journal-wide state before and after it."""
    if result.version is None:
        return result
    from toolkit.analysis.explain import explain_event

    rows = scan_events(journal).filter(pl.col("position") == result.version).collect().to_dicts()
    if rows:
        result.event = rows[0]
        result.stream_id = None
        e = explain_event(rows[0])
        result.explanation = {"title": e.title, "summary": e.summary, "tags": list(e.tags)}
    if folder is not None and k:
        to_dict = folder.aggregate.to_dict
        result.state_before, result.state_after = to_dict(folder.state_after(k - 1)), to_dict(folder.state_after(k))
    return result


__all__ = ["HOLD_BYTES_MAX", "BisectResult", "bisect_global", "bisect_stream", "max_evaluations", "search_first_failure"]
