"""Snapshots: aggregate states kept in the journal's ``snapshots`` table, so folds start late.

A snapshot row is (stream, version, aggregate, fingerprint, state as JSON). ``state_at`` starts
from the nearest snapshot at or below the version asked for whose fingerprint is the
aggregate's current one: after the reducer or an event model changes, old snapshots are
ignored (and ``take_snapshots`` writes new ones). A snapshot is also a fold of the events its
stream held when it was taken: one taken before a purge (retention, ``journal archive --delete``)
removed the stream's first events holds them, and the fold without snapshots no longer does. So
the stored fingerprint carries a digest of the stream's purges (``<fingerprint>/<digest>``, as a
projection's checkpoint carries the journal's): after a purge of its stream, a snapshot is
ignored until ``take_snapshots`` takes it again from the events left.

The snapshots and purges tables are not pinned: a journal pinned to a Delta version before a
purge (``Journal.open(path, delta_version=N)``, ``journal.pinned()``) still holds the events the
purge removed since, so a snapshot taken after that purge is not a fold of its stream. There
``nearest_snapshot`` takes the stream's first version in the pinned journal and uses only the
snapshots taken with the purges that had removed the events below it.

>>> from toolkit.journal import Journal
>>> j = Journal.in_memory()
>>> _ = j.append("r", [{"event_type": "llm_response", "model": "m", "tokens_in": 5, "data": {}}] * 10)
>>> take_snapshots(j, every=4).written
2
>>> nearest_snapshot(j, "r", AGENT_RUN, 9)[0]
8
>>> j.close()
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.analysis.agent_run import AGENT_RUN
from toolkit.analysis.aggregates import Aggregate, ReplayProblem
from toolkit.errors import ReplayError
from toolkit.journal.lock import write_lock
from toolkit.journal.side_tables import append_rows, read_table
from toolkit.journal.store import Journal, log_holds

SNAPSHOTS = "snapshots"
PURGES = "purges"


@dataclass
class _Index:
    delta_version: int  # of the snapshots table
    purges_version: int  # of the purges table
    # (stream, aggregate, stored fingerprint) -> sorted versions, and the state JSON of each
    versions: dict[tuple[str, str, str], list[int]]
    states: dict[tuple[str, str, str, int], str]
    removals: dict[str, str]  # stream -> digest of the purges that removed its events
    purges: dict[str, list[tuple[int, str]]]  # stream -> (first kept version, purge id) of each

    def removals_before(self, stream_id: str, first_version: int) -> str:
        """The digest of the stream's purges that removed versions below ``first_version`` (the
        stream's first version in the journal as read): what its snapshots were taken with."""
        return _digest(p for kept, p in self.purges.get(stream_id, ()) if kept <= first_version)


_INDEX: dict[str, _Index] = {}


def _log_dir(journal: Journal, table: str) -> Path:
    assert isinstance(journal.path, Path)  # _latest_version answers for remote journals
    return journal.path / table / "_delta_log"


def _latest_version(journal: Journal, table: str, seen: int | None) -> int:
    """A side table's Delta version (-1: none), by looking at its numbered log files."""
    if journal.remote:  # snapshots are kept for local journals; remote ones replay from events
        return -1
    log = _log_dir(journal, table)
    if seen is not None and seen >= 0 and not (log / f"{seen + 1:020d}.json").exists():
        if log_holds(log, seen):
            return seen
    if not log.is_dir():
        return -1
    versions = [int(p.name[:20]) for p in log.glob("*.json") if p.name[:20].isdigit()]
    return max(versions, default=-1)


def _purges(journal: Journal) -> dict[str, list[tuple[int, str]]]:
    """stream -> (first kept version, purge id) of each purge that removed its first events."""
    t = read_table(journal, PURGES)
    out: dict[str, list[tuple[int, str]]] = {}
    for sid, purge_id, kept in zip(
        t.column("stream_id").to_pylist(),
        t.column("purge_id").to_pylist(),
        t.column("first_kept_version").to_pylist(),
        strict=True,
    ):
        out.setdefault(sid, []).append((kept, purge_id))
    return out


def _digest(purge_ids: Iterable[str]) -> str:
    """A digest of purge ids ("": none)."""
    ids = sorted(set(purge_ids))
    return hashlib.sha256("\0".join(ids).encode()).hexdigest()[:16] if ids else ""


def stored_fingerprint(aggregate: Aggregate[Any], removals: str) -> str:
    """The fingerprint column of a snapshot: the aggregate's, and the digest of its stream's purges."""
    return f"{aggregate.fingerprint}/{removals}" if removals else aggregate.fingerprint


def _index(journal: Journal) -> _Index:
    key = str(journal.path)
    hit = _INDEX.get(key)
    version = _latest_version(journal, SNAPSHOTS, hit.delta_version if hit else None)
    purges = _latest_version(journal, PURGES, hit.purges_version if hit else None)
    if hit is not None and hit.delta_version == version and hit.purges_version == purges:
        return hit
    purged = _purges(journal) if purges >= 0 else {}
    removals = {sid: _digest(p for _, p in records) for sid, records in purged.items()}
    if hit is not None and hit.delta_version == version:  # only a purge since: the rows are the same
        idx = _Index(version, purges, hit.versions, hit.states, removals, purged)
        _INDEX[key] = idx
        return idx
    versions: dict[tuple[str, str, str], list[int]] = {}
    states: dict[tuple[str, str, str, int], str] = {}
    if version >= 0:
        t = read_table(journal, SNAPSHOTS)
        for sid, v, agg, fp, state in zip(
            t.column("stream_id").to_pylist(),
            t.column("version").to_pylist(),
            t.column("aggregate").to_pylist(),
            t.column("fingerprint").to_pylist(),
            t.column("state").to_pylist(),
            strict=True,
        ):
            versions.setdefault((sid, agg, fp), []).append(v)
            states[(sid, agg, fp, v)] = state
        for vs in versions.values():
            vs.sort()
    idx = _Index(version, purges, versions, states, removals, purged)
    _INDEX[key] = idx
    return idx


def nearest_snapshot(
    journal: Journal, stream_id: str, aggregate: Aggregate[Any], version: int, *, first_version: int | None = None
) -> tuple[int, Any] | None:
    """(version, state) of the latest snapshot at or below ``version`` with the current fingerprint,
    taken after the last purge of the stream's events.

    ``first_version``: the stream's first version in the journal as read; the snapshot is then one
    taken after the purges that had removed the versions below it. A pinned journal needs it (it
    may hold events a purge removed since): without it, it gets no snapshot."""
    if aggregate.from_dict is None:
        return None
    idx = _index(journal)
    if first_version is not None:
        removals = idx.removals_before(stream_id, first_version)
    elif journal.pinned_version is not None:
        return None
    else:
        removals = idx.removals.get(stream_id, "")
    fingerprint = stored_fingerprint(aggregate, removals)
    versions = idx.versions.get((stream_id, aggregate.name, fingerprint))
    if not versions:
        return None
    i = bisect.bisect_right(versions, version)
    if i == 0:
        return None
    v = versions[i - 1]
    state = aggregate.from_dict(json.loads(idx.states[(stream_id, aggregate.name, fingerprint, v)]))
    return v, state


@dataclass
class SnapshotReport:
    streams: int = 0
    events_folded: int = 0
    written: int = 0
    already_present: int = 0
    problems: int = 0
    aggregate: str = ""
    fingerprint: str = ""


def take_snapshots(
    journal: Journal,
    *,
    every: int,
    aggregate: Aggregate[Any] = AGENT_RUN,
    stream_ids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SnapshotReport:
    """Snapshot every stream (or ``stream_ids``) at versions every, 2·every, … (one commit).

    Versions already snapshotted with the current fingerprint (since the last purge of the
    stream) are not written again. A journal on object storage is refused: its folds start at
    version 1 and read no snapshots.
    """
    if journal.remote:  # _index sees no snapshots there: each run would add the same rows, never read
        raise ReplayError(
            f"{journal.path}: snapshots are kept for local journals only",
            hint="a journal on object storage replays from its events: journal state and replay need no snapshots",
            journal=str(journal.path),
        )
    if every < 1:
        raise ReplayError(f"--every {every}: snapshots need a positive interval", hint="e.g. --every 1000")
    if aggregate.from_dict is None:
        raise ReplayError(
            f"aggregate {aggregate.name!r} cannot be snapshotted: it has no from_dict",
            hint="give the Aggregate to_dict/from_dict functions that round-trip its state through JSON",
        )
    from toolkit.analysis.replay import _fold, stream_events

    # read, fold and append under one hold of the lock: a redaction or another snapshot run in
    # between would otherwise get states folded from payloads it removed, or the same rows twice
    with write_lock(journal.path, journal.config.lock_timeout_s, nested=True):
        journal.refresh()
        heads = journal.heads()
        ids = (
            sorted(stream_ids) if stream_ids is not None else sorted(s for s, h in heads.items() if h.version >= every)
        )
        report = SnapshotReport(aggregate=aggregate.name, fingerprint=aggregate.fingerprint)
        idx = _index(journal)
        rows: list[dict[str, Any]] = []
        problems: list[ReplayProblem] = []
        for n, sid in enumerate(ids):
            events = stream_events(journal, sid)
            report.streams += 1
            fingerprint = stored_fingerprint(aggregate, idx.removals.get(sid, ""))
            have = set(idx.versions.get((sid, aggregate.name, fingerprint), ()))
            state = aggregate.initial()
            for lo in range(0, len(events) - every + 1, every):
                chunk = events[lo : lo + every]
                state = _fold(aggregate, chunk, state, problems)
                report.events_folded += len(chunk)
                v = chunk[-1].version
                if v in have:
                    report.already_present += 1
                    continue
                rows.append(
                    {
                        "stream_id": sid,
                        "version": v,
                        "aggregate": aggregate.name,
                        "fingerprint": fingerprint,
                        "state": json.dumps(aggregate.to_dict(state), sort_keys=True, default=str),
                    }
                )
            if progress is not None:
                progress(n + 1, len(ids))
        report.problems = len(problems)
        report.written = append_rows(journal, SNAPSHOTS, rows)
        return report
