"""Find a run among thousands and scrub through it: the run explorer's analysis.

:func:`find_runs` filters runs in SQL (``queries/explorer/runs.sql``; every picker value is a
bound parameter). :func:`explore_step` answers the slider: the event at a version with its
explanation, the agent-run state after it, and what changed from the version before — built on
the replay API (``state_at``, ``diff_states``, ``explain_event``). :func:`run_steps` gives every
step of a run at once (one fold), for the static run report.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r-1", [{"event_type": "user_message", "data": {"text": "hi"}, "agent": "a"},
...                      {"event_type": "llm_response", "model": "m", "tokens_in": 5, "data": {"text": "yo"}}])
>>> find_runs(j).column("status").to_pylist()
['answered']
>>> step = explore_step(j, "r-1", 2)
>>> step.state["status"], [c.path for c in step.changes if c.path in ("status", "tokens_in")]
('answered', ['status', 'tokens_in'])
>>> j.close()
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from toolkit.analysis.agent_run import AGENT_RUN, AgentRunState
from toolkit.analysis.explain import Explanation, explain_event
from toolkit.analysis.overview import run_catalog_queries
from toolkit.analysis.replay import (
    StateChange,
    diff_values,
    fold_states,
    fold_to,
    locate_at,
    replay,
    state_at,
    stream_events,
)
from toolkit.errors import ReplayError, VersionPurgedError
from toolkit.journal.store import Journal

RUN_STATUSES = ("running", "answered", "aborted", "archived")


def find_runs(
    journal: Journal,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    agent: str | None = None,
    min_cost_usd: Decimal | float | None = None,
    status: str | None = None,
    rule: str | None = None,
    search: str | None = None,
    stream_id: str | None = None,
    limit: int = 200,
) -> pa.Table:
    """Runs matching every given filter, most recent first (at most ``limit``), with the rules each fails.

    ``since``/``until`` keep runs active in ``[since, until)``; ``rule`` keeps runs the latest
    re-grade found failing that rule; ``search`` is a substring of the stream id; ``stream_id``
    keeps the one run of that id.
    """
    failing = failing_rules_by_run(journal)
    params = {
        "since": since,
        "until": until,
        "agent": agent or None,
        "min_cost_usd": None if min_cost_usd is None else Decimal(str(min_cost_usd)),
        "status": status or None,
        "search": search or None,
        "run_id": stream_id,
        "limit": limit if not rule else 2**62,  # the rule filter runs after the SQL: limit after it
    }
    runs = run_catalog_queries(journal, {"runs": "explorer/runs"}, params)["runs"]
    rules = [", ".join(failing.get(s, ())) or None for s in runs.column("stream_id").to_pylist()]
    runs = runs.append_column("failing_rules", pa.array(rules, pa.string()))
    if rule:
        keep = pa.array([rule in failing.get(s, ()) for s in runs.column("stream_id").to_pylist()], pa.bool_())
        runs = runs.filter(keep).slice(0, limit)
    return runs


def _violations(journal: Journal) -> list[dict[str, Any]]:
    """Each stream's violation findings of each rule from the latest batch that judged the rule on
    that stream: a later re-grade that checked the stream supersedes an earlier one, whether it found
    the stream failing or not (the rule held there: no violation now); one whose selection left the
    stream out, or in which the rule raised (on that stream, or outright), leaves the earlier finding.

    The ``regrades`` table records each batch's selection. A batch recorded before it did (or before
    that table existed: known by its findings only) counts as having checked every stream.
    """
    from toolkit.journal.side_tables import read_table

    findings = read_table(journal, "findings")
    if findings.num_rows == 0:
        return []
    rows = findings.to_pylist()
    checked: dict[tuple[str, str], frozenset[str] | None] = {}  # (rule, batch) -> streams (None: every stream)
    batches: dict[str, dict[str, Any]] = {}  # rule -> batch -> (graded_at, batch_id)
    regrades = read_table(journal, "regrades").select(["graded_at", "batch_id", "rule", "selection", "stream_ids"])
    for g in regrades.to_pylist():
        ids = g["stream_ids"]
        checked[(g["rule"], g["batch_id"])] = None if g["selection"] is None or ids is None else frozenset(ids)
        batches.setdefault(g["rule"], {})[g["batch_id"]] = (g["graded_at"], g["batch_id"])
    raised: dict[tuple[str, str], set[str | None]] = {}  # (rule, batch) -> streams it raised on (None: all)
    for r in rows:
        batches.setdefault(r["rule"], {})[r["batch_id"]] = (r["graded_at"], r["batch_id"])
        if r["kind"] == "error":
            raised.setdefault((r["rule"], r["batch_id"]), set()).add(r["stream_id"])
    latest_first = {rule: sorted(b, key=b.__getitem__, reverse=True) for rule, b in batches.items()}

    def judged(rule: str, batch: str, stream: str) -> bool:
        streams = checked.get((rule, batch))
        errors = raised.get((rule, batch), set())
        return (streams is None or stream in streams) and None not in errors and stream not in errors

    latest: dict[tuple[str, str], str | None] = {}  # (rule, stream) -> the batch that judged it last
    out = []
    for r in rows:
        if r["kind"] != "violation" or not r["stream_id"]:
            continue
        key = (r["rule"], r["stream_id"])
        if key not in latest:
            latest[key] = next((b for b in latest_first[r["rule"]] if judged(r["rule"], b, r["stream_id"])), None)
        if latest[key] == r["batch_id"]:
            out.append(r)
    return out


def failing_rules_by_run(journal: Journal) -> dict[str, tuple[str, ...]]:
    """stream id → the rules its latest re-grade found failing (empty before any ``journal regrade``)."""
    out: dict[str, set[str]] = {}
    for r in _violations(journal):
        out.setdefault(r["stream_id"], set()).add(r["rule"])
    return {k: tuple(sorted(v)) for k, v in out.items()}


def list_failing_rules(journal: Journal) -> list[str]:
    """Rules with at least one violation in the latest findings."""
    return sorted({r["rule"] for r in _violations(journal)})


def run_failures(journal: Journal, stream_id: str) -> pa.Table:
    """The rules this run fails (latest findings) with the first failing version, time and message."""
    rows = sorted(
        (r for r in _violations(journal) if r["stream_id"] == stream_id),
        key=lambda r: (r["first_failing_version"] or 0, r["rule"]),
    )
    schema = pa.schema(
        [
            ("rule", pa.string()),
            ("first_failing_version", pa.int64()),
            ("occurred_at", pa.timestamp("us", tz="UTC")),
            ("message", pa.string()),
            ("failing_events", pa.int64()),
        ]
    )
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def run_timeline(journal: Journal, stream_id: str) -> pa.Table:
    """One row per event of the run with its explanation (``replay``'s timeline) as Arrow."""
    return replay(journal, stream_id).to_arrow()


TIMELINE_POINTS = 1_000  # above this many events a run's timeline chart shows version ranges (a redraw: ~0.3 s)


def timeline_points(timeline: pa.Table, *, max_points: int = TIMELINE_POINTS) -> pa.Table:
    """The points of a run's timeline chart: ``version, event_type, occurred_at, is_error, title, events``.

    Up to ``max_points`` events, one point per event. A longer run gets one point per range of
    versions and event type (at its first version and time; ``is_error`` if any event of it failed;
    ``title`` says how many events and which versions), so the chart stays small and quick to
    redraw whatever the run's length.

    >>> import datetime as dt
    >>> t = pa.table({"version": list(range(1, 11)), "event_type": ["a", "b"] * 5,
    ...               "occurred_at": [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * 10, "is_error": [False] * 10,
    ...               "title": ["x"] * 10})
    >>> p = timeline_points(t, max_points=4)
    >>> p.num_rows, p.column("title").to_pylist()[:2]
    (4, ['3 events, v1–v5', '2 events, v2–v4'])
    """
    cols = ["version", "event_type", "occurred_at", "is_error", "title"]
    if timeline.num_rows <= max_points:
        return timeline.select(cols).append_column("events", pa.array([1] * timeline.num_rows, pa.int64()))
    frame = pl.DataFrame(timeline.select(cols))
    types = frame.get_column("event_type").n_unique()
    if types > max_points // 2:  # too many kinds to keep apart: ranges of versions only
        frame = frame.with_columns(event_type=pl.lit("(many types)"))
        types = 1
    versions = pc.min_max(timeline.column("version")).as_py()
    first, span = versions["min"], versions["max"] - versions["min"] + 1
    width = -(-span // max(1, max_points // types))  # versions per range, rounded up
    points = (
        frame.group_by(((pl.col("version") - first) // width).alias("range"), "event_type")
        .agg(
            pl.col("version").min(),
            pl.col("version").max().alias("last_version"),
            pl.col("occurred_at").min(),
            pl.col("is_error").any(),
            pl.len().cast(pl.Int64).alias("events"),
        )
        .sort("version", "event_type")
        .with_columns(title=pl.format("{} events, v{}–v{}", "events", "version", "last_version"))
    )
    return points.select(*cols, "events").to_arrow()


@dataclass(frozen=True)
class RunStep:
    """One version of a run: the event there, what it means, the state after it and the changes it made."""

    stream_id: str
    version: int
    last_version: int
    event: dict[str, Any]
    explanation: Explanation
    state: dict[str, Any]
    changes: list[StateChange]

    def state_json(self) -> str:
        return json.dumps(self.state, indent=2, sort_keys=True, default=str)

    def event_fields(self) -> dict[str, Any]:
        """The event's non-empty columns, payloads parsed (for display)."""
        out: dict[str, Any] = {}
        for k, v in self.event.items():
            if v is None or k in ("payload",):
                continue
            if k in ("data", "metadata") and isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    pass
                if v in ({}, None):
                    continue
            out[k] = v
        return out


def _event_row(e: Any) -> dict[str, Any]:
    row: dict[str, Any] = e.row()
    return row


def explore_step(
    journal: Journal, stream_id: str, version: int | None = None, *, at: dt.datetime | None = None
) -> RunStep:
    """The run at ``version`` (1..last): event, explanation, state after it, changes from ``version - 1``.

    With ``at`` instead: the version ``state_at`` and ``journal state --at`` resolve the time to
    (``toolkit.analysis.replay.locate``: the last version whose events all occurred by then).
    A version a purge removed is a ``VersionPurgedError``; a state after it is folded without the
    purged events (the run's timeline starts at the first one left)."""
    events = stream_events(journal, stream_id)
    last = events[-1].version
    if at is not None or version is None:
        version = fold_to(journal, stream_id, version=version, at=at).version
    state: AgentRunState = state_at(journal, stream_id, version=version)  # outside 0..last: error naming last
    after = AGENT_RUN.to_dict(state)
    try:
        before = AGENT_RUN.to_dict(state_at(journal, stream_id, version=version - 1)) if version > 0 else after
    except VersionPurgedError:  # the first event a purge kept: its state is folded from the initial one
        before = AGENT_RUN.to_dict(AGENT_RUN.initial())
    event = next(e for e in events if e.version == version) if version > 0 else None
    row = _event_row(event) if event is not None else {}
    return RunStep(
        stream_id=stream_id,
        version=version,
        last_version=last,
        event=row,
        explanation=explain_event(row) if row else Explanation("initial state", "before the first event"),
        state=after,
        changes=diff_values(before, after),
    )


def version_at_text(journal: Journal, stream_id: str, text: str) -> tuple[int, str | None]:
    """The version a time typed by the user resolves to, as ``journal state --at`` resolves it (the
    last version whose events all occurred by then; 0: before the first), with what to say.

    A bare date is midnight UTC and a time without an offset is UTC (the explorer asks for UTC);
    text that is not a time is a ``ReplayError`` with an example, and a time inside versions a purge
    removed the ``VersionPurgedError`` of ``journal state --at``.
    """
    raw = text.strip()
    try:
        at = dt.datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ReplayError(
            f"{raw!r} is not a time", hint="type an ISO 8601 time in UTC, e.g. 2026-10-02T14:03:00Z or 2026-10-02"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    found = locate_at(journal, stream_id, at)  # a time in versions a purge removed: VersionPurgedError
    return found.version, found.note


def run_steps(journal: Journal, stream_id: str, *, max_events: int | None = None) -> Iterator[RunStep]:
    """Every step of a run in version order, from one fold (for reports); ``max_events`` caps how many
    (the first ``max_events`` events the run has: after a purge, from the first version it kept)."""
    events = {e.version: e for e in stream_events(journal, stream_id)}
    last = max(events)
    before = AGENT_RUN.to_dict(AGENT_RUN.initial())
    state: AgentRunState
    for n, (version, state) in enumerate(fold_states(journal, stream_id)):
        if max_events is not None and n >= max_events:
            break
        after = AGENT_RUN.to_dict(state)
        row = _event_row(events[version])
        yield RunStep(stream_id, version, last, row, explain_event(row), after, diff_values(before, after))
        before = after


def failing_events(
    journal: Journal,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    event_type: str | None = None,
    limit: int = 50,
) -> pa.Table:
    """The most recent failing events (errors, failed tool results) with their ids, newest first."""
    params = {"since": since, "until": until, "event_type": event_type, "limit": limit}
    return run_catalog_queries(journal, {"e": "explorer/error_events"}, params)["e"]


def list_correlations(journal: Journal, *, limit: int = 200) -> pa.Table:
    """Correlation ids with their runs and events, those spanning most runs first (for pickers)."""
    return run_catalog_queries(journal, {"c": "explorer/correlations"}, {"limit": limit})["c"]


def list_subjects(journal: Journal, *, limit: int = 200) -> pa.Table:
    """Subjects with their runs and events, the most active first (for pickers)."""
    return run_catalog_queries(journal, {"s": "explorer/subjects"}, {"limit": limit})["s"]
