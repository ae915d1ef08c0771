"""Counterfactual replay: fold a stream with hypothetical edits, next to what really happened.

Edits never touch the journal: the stream is read, edited in memory and folded twice.

- :class:`Insert` an event after version k (0: before the first event);
- :class:`Drop` events by version;
- :class:`Replace` an event's data (and/or other columns).

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "tool_called", "tool_name": "pay", "data": {}},
...                    {"event_type": "tool_result", "tool_name": "pay", "is_error": True, "data": {}},
...                    {"event_type": "error", "data": {"error": "gave up"}}])
>>> cf = counterfactual(j, "r", [Replace(2, is_error=False), Drop([3])])
>>> cf.real_state.status, cf.alternative_state.status, cf.alternative_state.errors
('aborted', 'running', 0)
>>> j.close()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from toolkit.analysis.agent_run import AGENT_RUN
from toolkit.analysis.aggregates import Aggregate, Event, ReplayProblem
from toolkit.analysis.explain import explain_event, short
from toolkit.analysis.replay import StateChange, _fold, diff_values, stream_events
from toolkit.errors import ReplayError
from toolkit.journal.prepare import parse_time
from toolkit.journal.store import Journal


@dataclass(frozen=True)
class Insert:
    """Insert an event after version ``after`` (0: at the start); ``event`` is an Event or a row dict
    (without ``occurred_at``: at the time of the event it follows, or of the first event)."""

    after: int
    event: Event | Mapping[str, Any]


@dataclass(frozen=True)
class Drop:
    versions: tuple[int, ...]

    def __init__(self, versions: Iterable[int]) -> None:
        object.__setattr__(self, "versions", tuple(versions))


@dataclass(frozen=True)
class Replace:
    """Replace the event at ``version``: its ``data`` and/or other columns."""

    version: int
    data: Any = None
    columns: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, version: int, data: Any = None, **columns: Any) -> None:
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "columns", dict(columns))


Edit = Insert | Drop | Replace


@dataclass
class Step:
    """One step of the merged history: a real event, an inserted one, or a dropped one."""

    edit: str  # "", "inserted", "dropped", "replaced"
    real_version: int | None
    event: Event
    real_state: Any
    alternative_state: Any


@dataclass
class Counterfactual:
    stream_id: str
    aggregate: Aggregate[Any]
    steps: list[Step]
    real_state: Any
    alternative_state: Any
    alternative_events: list[Event]
    problems: list[ReplayProblem] = field(default_factory=list)

    def changes(self) -> list[StateChange]:
        """How the final alternative state differs from the real one."""
        return diff_values(self.aggregate.to_dict(self.real_state), self.aggregate.to_dict(self.alternative_state))

    def frame(self, fields: Sequence[str] | None = None) -> pl.DataFrame:
        """The two state histories side by side: one row per step, ``real_<f>`` and ``alt_<f>`` columns."""
        to_dict = self.aggregate.to_dict
        rows = []
        for s in self.steps:
            real, alt = to_dict(s.real_state), to_dict(s.alternative_state)
            if not isinstance(real, Mapping):
                real, alt = {"state": real}, {"state": alt}
            names = list(fields) if fields is not None else _default_fields(real)
            x = explain_event(s.event.row())
            row: dict[str, Any] = {
                "real_version": s.real_version,
                "edit": s.edit,
                "event_type": s.event.event_type,
                "summary": x.summary,
            }
            for f in names:
                row[f"real_{f}"] = short(real.get(f), 60)
                row[f"alt_{f}"] = short(alt.get(f), 60)
            rows.append(row)
        return pl.DataFrame(rows, infer_schema_length=None)


def _default_fields(state: Mapping[str, Any]) -> list[str]:
    preferred = ["status", "events", "errors", "consecutive_errors", "tokens_in", "tokens_out", "cost_usd", "last_tool"]
    have = [f for f in preferred if f in state]
    return have or [k for k, v in state.items() if isinstance(v, int | float | str | bool)][:8]


def _as_event(stream_id: str, spec: Event | Mapping[str, Any], occurred_us: int) -> Event:
    """The inserted event; a row dict without ``occurred_at`` happens at ``occurred_us`` (the time
    of the event it follows), and an ISO string is read as the journal reads it."""
    if isinstance(spec, Event):
        return spec.replace(stream_id=stream_id)
    d = dict(spec)
    event_type = d.pop("event_type", None)
    if not event_type:
        raise ReplayError("an inserted event needs an event_type", hint='e.g. {"event_type": "error", "data": {...}}')
    data = d.pop("data", {})
    metadata = d.pop("metadata", None)
    occurred_at = d.pop("occurred_at", None)
    d.pop("stream_id", None)
    d.pop("version", None)
    try:
        when = parse_time(occurred_at, "occurred_at", 0) if occurred_at is not None else None
        event = Event.of(event_type, data, stream_id=stream_id, occurred_at=when, metadata=metadata, **d)
    except (TypeError, ValueError) as e:
        raise ReplayError(
            f"inserted event: {getattr(e, 'message', e)}",
            hint="use canonical column names and ISO 8601 times with an offset, e.g. 2026-11-01T12:00:00Z",
        ) from e
    if when is None:
        event.occurred_us = occurred_us
    return event


def counterfactual(
    journal: Journal,
    stream_id: str,
    edits: Sequence[Edit],
    *,
    aggregate: Aggregate[Any] = AGENT_RUN,
) -> Counterfactual:
    """Replay ``stream_id`` with ``edits`` applied in memory; the journal is only read."""
    events = stream_events(journal, stream_id)
    last = events[-1].version if events else 0
    drops: set[int] = set()
    replaces: dict[int, Replace] = {}
    inserts: dict[int, list[Event]] = {}
    for edit in edits:
        where = [edit.after] if isinstance(edit, Insert) else list(edit.versions) if isinstance(edit, Drop) else [edit.version]
        for v in where:
            lo = 0 if isinstance(edit, Insert) else 1
            if not lo <= v <= last:
                raise ReplayError(
                    f"{type(edit).__name__.lower()} at version {v}: stream {stream_id!r} has versions 1..{last}",
                    hint=f"use a version between {lo} and {last}",
                    stream_id=stream_id,
                    version=v,
                )
        if isinstance(edit, Insert):
            follows = next((e for e in events if e.version >= edit.after), events[0]) if events else None
            at_us = follows.occurred_us if follows is not None else 0
            inserts.setdefault(edit.after, []).append(_as_event(stream_id, edit.event, at_us))
        elif isinstance(edit, Drop):
            drops.update(edit.versions)
        else:
            replaces[edit.version] = edit

    copy = aggregate.copy
    problems: list[ReplayProblem] = []
    real = aggregate.initial()
    alt = aggregate.initial()
    steps: list[Step] = []
    alt_events: list[Event] = []

    def add_alt(e: Event, kind: str, real_version: int | None) -> None:
        nonlocal alt
        e = e.replace(version=len(alt_events) + 1)
        alt_events.append(e)
        alt = _fold(aggregate, (e,), alt, problems)
        steps.append(Step(kind, real_version, e, copy(real), copy(alt)))

    for e in inserts.get(0, []):
        add_alt(e, "inserted", None)
    for e in events:
        real = _fold(aggregate, (e,), real, problems)
        if e.version in drops:
            steps.append(Step("dropped", e.version, e, copy(real), copy(alt)))
        elif e.version in replaces:
            r = replaces[e.version]
            changes: dict[str, Any] = dict(r.columns)
            if r.data is not None:
                changes["data"] = r.data
            try:
                replaced = e.replace(**changes)
            except (TypeError, ValueError, KeyError) as err:
                raise ReplayError(f"replace at version {e.version}: {err}", hint="use canonical column names") from err
            add_alt(replaced, "replaced", e.version)
        else:
            add_alt(e, "", e.version)
        for ins in inserts.get(e.version, []):
            add_alt(ins, "inserted", None)
    return Counterfactual(stream_id, aggregate, steps, real, alt, alt_events, problems)
