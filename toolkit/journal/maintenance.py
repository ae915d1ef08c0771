"""Compaction and vacuum.

Appends create many small files; ``compact`` rewrites each partition that has more than one
file into files sorted by (stream_id, version) with row groups of ``row_group_rows`` rows, so
a one-stream read touches few row groups. Each partition is replaced in one Delta commit
(the same rows, so readers see the same events before and after) under the write lock.
``vacuum`` then deletes files no longer referenced — including parts left by a killed
writer — once they are older than the retention guard.

Memory stays bounded by ``chunk_rows``, not by the partition: a partition holding more rows is
compacted as an external bucket sort. Its stream ids are cut into ranges of about ``chunk_rows``
rows (no stream split); one pass over its files spills each range's rows into temporary Parquet
files (``<journal>/.compact-tmp``, removed afterwards and at the start of the next compaction);
then each range in turn is read, sorted and streamed into the Delta writer. The new files thus
hold disjoint stream-id ranges, which is what lets a reader prune by their statistics.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, write_deltalake

from toolkit.errors import InvalidPathError
from toolkit.journal.appendfiles import AppendFiles
from toolkit.journal.lock import write_lock
from toolkit.journal.prepare import STREAM_TYPE_RE
from toolkit.journal.schema import ARROW_SCHEMA
from toolkit.journal.store import BLOOM_COLUMNS, STATS_COLUMNS, FileInfo, Journal, one_batch, writer_properties

#: rows of a partition sorted in memory at once; larger partitions are sorted range by range
COMPACT_CHUNK_ROWS: Final = 1_000_000
#: where a local journal's compaction spills rows (payloads included); a killed one leaves them
SPILL_DIR: Final = ".compact-tmp"
#: rows of a compacted file (8,192-row groups: ≈ 250–500 MB of Parquet at the demo's event size)
COMPACT_FILE_ROWS: Final = 2_000_000
_SORT_KEYS: Final = [("stream_id", "ascending"), ("version", "ascending")]


@dataclass
class CompactResult:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0


def compact(
    journal: Journal,
    *,
    full: bool = False,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = COMPACT_CHUNK_ROWS,
) -> CompactResult:
    """Rewrite partitions with several files (every partition when ``full``) sorted by stream, version,
    holding at most about ``chunk_rows`` rows in memory (see the module docstring)."""
    result = CompactResult()
    journal.refuse_writes("compact")
    with write_lock(journal.path, journal.config.lock_timeout_s):
        spill_root = _spill_root(journal)
        journal.refresh()
        parts: dict[tuple[str, object], list[FileInfo]] = defaultdict(list)
        for f in journal.files():
            parts[(f.stream_type, f.day)].append(f)
        todo = {k: v for k, v in parts.items() if full or len(v) > 1}
        result.files_before = sum(len(v) for v in parts.values())
        for n, ((stream_type, day), files) in enumerate(sorted(todo.items(), key=lambda kv: str(kv[0]))):
            if not STREAM_TYPE_RE.fullmatch(stream_type):  # the predicate below quotes it
                raise InvalidPathError(f"partition stream_type={stream_type!r} is not a valid stream type")
            rows = sum(f.rows for f in files)
            batches = _sorted_batches(journal, files, chunk_rows, spill_root)
            _replace_partition(journal, (stream_type, day), batches, rows)
            result.partitions += 1
            result.rows += rows
            if progress:
                progress(n + 1, len(todo))
        journal.refresh()
        result.files_after = len(journal.files())
        shutil.rmtree(spill_root, ignore_errors=True)
    return result


def _replace_partition(journal: Journal, key: tuple[str, object], batches: Iterator[pa.RecordBatch], rows: int) -> None:
    """One commit that removes the partition's files and adds files holding ``batches`` in order."""
    stream_type, day = key
    properties = CommitProperties(custom_metadata={"toolkit.operation": "compact", "toolkit.events": str(rows)})
    if journal.remote:  # deltalake's writer (it reorders batches: hand it the sorted rows as one)
        write_deltalake(
            journal.delta_table(),
            one_batch(pa.Table.from_batches(list(batches))),
            mode="overwrite",
            predicate=f"stream_type = '{stream_type}' AND day = '{day}'",
            partition_by=list(journal.config.partition_by),
            writer_properties=writer_properties(journal.config.row_group_rows),
            commit_properties=properties,
        )
        return
    files = AppendFiles(
        Path(journal.events_uri),
        ARROW_SCHEMA,
        list(journal.config.partition_by),
        STATS_COLUMNS,
        journal.config.row_group_rows,
        compression="zstd",
        bloom_columns=BLOOM_COLUMNS,
        max_file_rows=COMPACT_FILE_ROWS,
        data_change=False,
    )
    try:
        for batch in batches:
            files.add(pa.Table.from_batches([batch]).select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA))
        actions = files.close()
    except BaseException:
        files.abort()
        raise
    journal.delta_table().create_write_transaction(
        actions,
        mode="overwrite",
        schema=ARROW_SCHEMA,
        partition_by=list(journal.config.partition_by),
        partition_filters=[("stream_type", "=", stream_type), ("day", "=", str(day))],
        commit_properties=properties,
    )
    journal.refresh()  # the next partition's commit starts from this one


def _spill_root(journal: Journal) -> Path:
    """An empty directory for spilled ranges: beside the Delta table of a local journal (the same
    disk, not a RAM-backed /tmp), the system's temporary directory for a remote one."""
    if journal.remote:
        return Path(tempfile.mkdtemp(prefix="journal-compact-"))
    root = Path(str(journal.path)) / SPILL_DIR
    shutil.rmtree(root, ignore_errors=True)  # left by a killed compaction: never committed
    root.mkdir()
    return root


def _sorted_batches(
    journal: Journal, files: Sequence[FileInfo], chunk_rows: int, spill: Path
) -> Iterator[pa.RecordBatch]:
    """The rows of ``files`` sorted by (stream_id, version), holding about ``chunk_rows`` rows at a time."""
    pool = pa.default_memory_pool()
    if sum(f.rows for f in files) <= chunk_rows:
        yield from _in_order(pa.concat_tables([journal.read_file(f) for f in files]))
        return
    ids = pa.chunked_array([journal.read_file(f, ["stream_id"]).column(0) for f in files])
    counts = pl.Series("values", ids).value_counts(name="counts").sort("values")
    del ids
    counts = counts.with_columns(pl.col("counts").cast(pl.Int64).cum_sum().alias("upto"))
    # the last stream id of each range: where the running count passes another chunk_rows
    bounds = counts.filter((pl.col("upto") // chunk_rows).diff().fill_null(0) > 0)["values"]
    bounds = pl.concat([bounds, counts["values"].tail(1)]).unique(maintain_order=True).sort()
    for i, f in enumerate(files):
        table = journal.read_file(f)
        bucket = bounds.search_sorted(pl.Series(table.column("stream_id")), side="left").to_arrow()
        for b in pc.unique(bucket).to_pylist():
            (spill / str(b)).mkdir(exist_ok=True)
            pq.write_table(table.filter(pc.equal(bucket, b)), spill / str(b) / f"{i}.parquet", compression="lz4")
        del table, bucket
        pool.release_unused()  # the allocator keeps freed pages otherwise: memory would follow the partition
    for b in range(len(bounds)):
        where = spill / str(b)
        if where.exists():
            yield from _in_order(pq.read_table(where, partitioning=None))
            shutil.rmtree(where)
            pool.release_unused()


def _in_order(table: pa.Table, slice_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """``table``'s rows sorted by (stream_id, version), a slice at a time (no sorted copy of it all)."""
    order = pc.sort_indices(table.select(["stream_id", "version"]), sort_keys=_SORT_KEYS)
    for lo in range(0, len(order), slice_rows):
        yield from table.take(order.slice(lo, slice_rows)).to_batches()


def vacuum(
    journal: Journal, *, retain_hours: int | None = None, force: bool = False, dry_run: bool = False
) -> list[str]:
    """Delete unreferenced files older than ``retain_hours`` (at least the configured guard)."""
    hours = vacuum_hours(journal, retain_hours, force)
    with write_lock(journal.path, journal.config.lock_timeout_s):
        deleted = journal.delta_table().vacuum(
            retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False, full=True
        )
        journal.refresh()
    return list(deleted)


def vacuum_hours(journal: Journal, retain_hours: int | None, force: bool) -> int:
    """The retention a vacuum with these options keeps, or the error it would refuse with
    (callers that compact first check it before: a refusal then leaves nothing half done)."""
    guard = journal.config.vacuum_retain_hours
    hours = guard if retain_hours is None else retain_hours
    if hours < 0:
        raise InvalidPathError(
            f"vacuum: retaining {hours}h is no retention period",
            hint="give --retain-hours 0 or more",
            retain_hours=hours,
        )
    if hours < guard and not force:
        raise InvalidPathError(
            f"vacuum: retaining {hours}h is below the journal's guard of {guard}h; readers of older "
            "versions could lose files",
            hint="pass --force to vacuum anyway when no reader uses older versions",
            retain_hours=hours,
        )
    return hours
