"""Python rules over replayed aggregate state: fold each stream, ask the rule after every event.

Streams are split across worker processes (all cores by default). Each worker reads its streams'
events in bulk (only the columns an ``Event`` carries), folds them with the rule's aggregate
(the agent run unless the rule names another) and calls ``holds(state, params)`` after every
event. ``True`` holds; ``False`` or a message string does not. A rule that raises at an event
becomes a finding of kind ``error`` for that stream, carrying the exception, and the stream's
grading stops there; other streams go on.

A full re-grade judges every event, so it folds from version 1; snapshots speed up the
single-state questions of bisection (``state_at``) instead.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa

from toolkit.analysis.aggregates import EVENT_COLUMNS, Aggregate, Event
from toolkit.analysis.rules import Rule
from toolkit.analysis.verdicts import EVIDENCE_VERSIONS, FAILURE_SCHEMA, attach_event_info
from toolkit.engines.polars_engine import scan_events
from toolkit.journal.store import Journal

CHUNK_STREAMS: Final = 10_000  # streams read per batch inside a worker
MIN_STREAMS_PER_WORKER: Final = 200


def rule_aggregate(rule: Rule) -> Aggregate[Any]:
    if rule.aggregate is not None:
        agg: Aggregate[Any] = rule.aggregate
        return agg
    from toolkit.analysis.agent_run import AGENT_RUN

    return AGENT_RUN


def judge(rule: Rule, state: Any, bound: dict[str, Any]) -> tuple[bool, str | None]:
    """(holds, message) of a Python rule on one state."""
    assert rule.python is not None
    verdict = rule.python(state, bound)
    if verdict is True or verdict is None:
        return True, None
    if verdict is False:
        return False, None
    if isinstance(verdict, str):
        return False, verdict
    return bool(verdict), None


def fold_event(aggregate: Aggregate[Any], state: Any, event: Event) -> Any:
    """Apply one event the way replay does (models validate payloads first; misfits are skipped)."""
    if aggregate.events and event.event_type in aggregate.events:
        if aggregate.prepare(event) is not None:
            return state
    return aggregate.reducer(state, event)


def iter_stream_events(journal: Journal, stream_ids: Sequence[str]) -> Iterator[tuple[str, list[Event]]]:
    """(stream_id, events in version order) for the given streams, read in bulk chunks."""
    from toolkit.analysis.replay import events_from_table

    ordered = sorted(stream_ids)
    for i in range(0, len(ordered), CHUNK_STREAMS):
        chunk = ordered[i : i + CHUNK_STREAMS]
        # a contiguous id range lets row-group statistics skip most of the journal (files are
        # sorted by stream_id); the membership test then drops streams not asked for
        table = (
            scan_events(journal, stream_ids=chunk)
            .filter(pl.col("stream_id").is_between(pl.lit(chunk[0]), pl.lit(chunk[-1])))
            .select(list(EVENT_COLUMNS))
            .sort("stream_id", "version")
        )
        frame = table.collect()
        events = events_from_table(frame.to_arrow())
        # stream boundaries from the (sorted) stream_id column, not a Python comparison per event
        counts = frame.get_column("stream_id").rle()
        start = 0
        for sid, n in zip(counts.struct.field("value").to_list(), counts.struct.field("len").to_list(), strict=True):
            yield sid, events[start : start + n]
            start += n


def find_rule(name: str, origin: str) -> Rule:
    """A rule again, by name and the file it came from (worker processes cannot unpickle functions
    that a decorator replaced by a Rule)."""
    from toolkit.analysis.rules import builtin_rules, load_rule_file

    if origin.endswith(".py") and Path(origin).is_file():
        return next(r for r in load_rule_file(origin) if r.name == name)
    return builtin_rules()[name]


def grade_streams(
    journal_path: str, rule: Rule | tuple[str, str], bound: dict[str, Any], stream_ids: list[str]
) -> list[dict[str, Any]]:
    """Failing streams among ``stream_ids`` (a worker's share): first failing version and counts."""
    if isinstance(rule, tuple):
        rule = find_rule(*rule)
    journal = Journal.open(journal_path)
    aggregate = rule_aggregate(rule)
    out: list[dict[str, Any]] = []
    for sid, events in iter_stream_events(journal, stream_ids):
        state = aggregate.initial()
        failing: list[int] = []
        message: str | None = None
        error: str | None = None
        for e in events:
            try:
                state = fold_event(aggregate, state, e)
                ok, msg = judge(rule, state, bound)
            except Exception as exc:  # a rule that raises is a finding of kind error
                error = f"{type(exc).__name__}: {exc}"
                out.append({"stream_id": sid, "version": e.version, "kind": "error", "message": error,
                            "failing_events": 1, "failing_versions": [e.version], "last_failing_version": e.version})
                break
            if not ok:
                if not failing:
                    message = msg
                failing.append(e.version)
        if failing and error is None:
            out.append({"stream_id": sid, "version": failing[0], "kind": "violation", "message": message,
                        "failing_events": len(failing), "failing_versions": failing[:EVIDENCE_VERSIONS],
                        "last_failing_version": failing[-1]})
    return out


def all_stream_ids(journal: Journal) -> list[str]:
    return sorted(scan_events(journal).select("stream_id").unique().collect().get_column("stream_id").to_list())


def python_failures(
    journal: Journal, rule: Rule, bound: dict[str, Any], stream_ids: Sequence[str] | None, *, workers: int | None = None
) -> pa.Table:
    """Per failing stream, as ``verdicts.FAILURE_SCHEMA`` plus ``kind`` (violation or error)."""
    ids = list(stream_ids) if stream_ids is not None else all_stream_ids(journal)
    if workers is None:  # processes pay off from a few hundred streams on
        workers = min(os.cpu_count() or 1, len(ids) // MIN_STREAMS_PER_WORKER or 1)
    n = max(1, min(workers, len(ids)))
    if n == 1:
        rows = grade_streams(str(journal.path), rule, bound, ids)
    else:
        ids.sort()  # contiguous shares: each worker reads its own id range
        shares = [ids[len(ids) * i // n : len(ids) * (i + 1) // n] for i in range(n)]
        key = (rule.name, rule.origin)
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = pool.map(grade_streams, [str(journal.path)] * n, [key] * n, [bound] * n, shares)
            rows = [r for part in parts for r in part]
    if not rows:
        return FAILURE_SCHEMA.append(pa.field("kind", pa.string())).empty_table()
    failing = pl.DataFrame(
        rows,
        schema={"stream_id": pl.String, "version": pl.Int64, "kind": pl.String, "message": pl.String,
                "failing_events": pl.Int64, "failing_versions": pl.List(pl.Int64), "last_failing_version": pl.Int64},
    )
    info = attach_event_info(journal, failing.drop("kind"))
    joined = pl.DataFrame(info).join(failing.select("stream_id", "kind"), on="stream_id", how="left")
    return joined.sort("stream_id").to_arrow()
