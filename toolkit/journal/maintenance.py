"""Compaction and vacuum.

Appends create many small files; ``compact`` rewrites each partition that has more than one
file into files sorted by (stream_id, version) with row groups of ``row_group_rows`` rows, so
a one-stream read touches few row groups. Each partition is replaced in one Delta commit
(the same rows, so readers see the same events before and after) under the write lock.
``vacuum`` then deletes files no longer referenced — including parts left by a killed
writer — once they are older than the retention guard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from deltalake import CommitProperties, write_deltalake

from toolkit.errors import InvalidPathError
from toolkit.journal.lock import write_lock
from toolkit.journal.prepare import STREAM_TYPE_RE
from toolkit.journal.store import FileInfo, Journal, writer_properties


@dataclass
class CompactResult:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0


def compact(
    journal: Journal, *, full: bool = False, progress: Callable[[int, int], None] | None = None
) -> CompactResult:
    """Rewrite partitions with several files (every partition when ``full``) sorted by stream, version."""
    result = CompactResult()
    with write_lock(journal.path, journal.config.lock_timeout_s):
        journal.refresh()
        parts: dict[tuple[str, object], list[FileInfo]] = defaultdict(list)
        for f in journal.files():
            parts[(f.stream_type, f.day)].append(f)
        todo = {k: v for k, v in parts.items() if full or len(v) > 1}
        result.files_before = sum(len(v) for v in parts.values())
        for n, ((stream_type, day), files) in enumerate(sorted(todo.items(), key=lambda kv: str(kv[0]))):
            if not STREAM_TYPE_RE.match(stream_type):  # the predicate below quotes it
                raise InvalidPathError(f"partition stream_type={stream_type!r} is not a valid stream type")
            table = pa.concat_tables([journal.read_file(f) for f in files]).sort_by([("stream_id", "ascending"), ("version", "ascending")])
            write_deltalake(
                journal.delta_table(),
                table,
                mode="overwrite",
                predicate=f"stream_type = '{stream_type}' AND day = '{day}'",
                partition_by=list(journal.config.partition_by),
                writer_properties=writer_properties(journal.config.row_group_rows),
                commit_properties=CommitProperties(
                    custom_metadata={"toolkit.operation": "compact", "toolkit.events": str(table.num_rows)}
                ),
            )
            result.partitions += 1
            result.rows += table.num_rows
            if progress:
                progress(n + 1, len(todo))
        journal.refresh()
        result.files_after = len(journal.files())
    return result


def vacuum(
    journal: Journal, *, retain_hours: int | None = None, force: bool = False, dry_run: bool = False
) -> list[str]:
    """Delete unreferenced files older than ``retain_hours`` (at least the configured guard)."""
    guard = journal.config.vacuum_retain_hours
    hours = guard if retain_hours is None else retain_hours
    if hours < guard and not force:
        raise InvalidPathError(
            f"vacuum: retaining {hours}h is below the journal's guard of {guard}h; readers of older "
            "versions could lose files",
            hint="pass --force to vacuum anyway when no reader uses older versions",
            retain_hours=hours,
        )
    with write_lock(journal.path, journal.config.lock_timeout_s):
        deleted = journal.delta_table().vacuum(
            retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False, full=True
        )
        journal.refresh()
    return list(deleted)
