"""Parquet files of one append, written by pyarrow and committed as Delta add actions.

``write_deltalake`` encodes on the Rust side but keeps asking Python for the next batch, so the
hashing thread (Python) and the writer contend for the interpreter; pyarrow's Parquet writer
releases the GIL while it encodes and writes. ``AppendFiles`` takes the hashed chunks of one
append, splits each by partition (Hive layout, as deltalake writes it:
``stream_type=X/day=YYYY-MM-DD/part-…-c000.snappy.parquet``), buffers each partition until it
fills a row group, and at ``close`` returns one ``AddAction`` per file with the Delta statistics
(num records, null counts, min/max) of the columns the table keeps statistics for. The store then
commits the actions in one transaction; files written before a crash are not in the log, so no
reader sees them, and ``vacuum`` removes them (the same as ``write_deltalake``).

Statistics are exact for the values the log can carry: timestamps are written at millisecond
precision with the minimum rounded down and the maximum rounded up, so pruning on them is never
wrong; decimals carry only their null count (a JSON float cannot bound them exactly).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction, RemoveAction

# hex digests: Snappy spends ≈ 0.3 µs per event on them and saves ≈ 13 % of their bytes (it has no
# entropy coding), so append files store them plain; compaction's ZSTD does compress them
DIGEST_COLUMNS = ("payload_sha256", "prev_hash", "hash")
# columns whose values repeat (dictionary encoding pays); ids, hashes and payloads are unique
DICTIONARY_COLUMNS = (
    "stream_id", "event_type", "source_type", "correlation_id", "model", "tool_name", "error",
    "agent", "subject_id", "source",
)  # fmt: skip


@dataclass
class _Stat:
    nulls: int | None = 0  # None: some row group has no statistics of the column
    lo: Any = None
    hi: Any = None
    exact: bool = True  # False: some row group holds values but no min/max (they are then left out)

    def update(self, chunk: pq.ColumnChunkMetaData) -> None:
        """Take in one row group's statistics of the column, as the Parquet footer has them."""
        st = chunk.statistics
        if st is None or not st.has_null_count:
            self.nulls, self.exact = None, False
            return
        if self.nulls is not None:
            self.nulls += st.null_count
        if st.null_count == chunk.num_values:  # no value here
            return
        if not st.has_min_max:  # a value longer than the writer keeps statistics for
            self.exact = False
            return
        lo, hi = st.min, st.max
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)


@dataclass
class _File:
    rel: str  # relative to the table root, as the Delta log lists it
    values: dict[str, str]
    writer: pq.ParquetWriter
    rows: int = 0
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0


class AppendFiles:
    """The data files of one append into the Delta table at ``root``."""

    def __init__(
        self,
        root: Path,
        schema: pa.Schema,
        partition_by: list[str],
        stats_columns: tuple[str, ...],
        row_group_rows: int,
        *,
        compression: str = "snappy",
        bloom_columns: tuple[str, ...] = (),
        max_file_rows: int | None = None,
        data_change: bool = True,
    ) -> None:
        """``compression``, ``bloom_columns``: as the files that stay want them (compaction: ZSTD
        and bloom filters on the id columns); ``max_file_rows``: start a new file of the partition
        once a file holds that many rows (rows arrive in order: each file keeps a sorted run);
        ``data_change=False``: the files hold rows the table had already (compaction)."""
        self.data_change = data_change
        self.root = root
        self.compression = compression
        self.bloom_columns = bloom_columns
        self.max_file_rows = max_file_rows
        self._done: list[AddAction | RemoveAction] = []
        self._opened = 0
        self.schema = schema
        self.partition_by = partition_by
        self.file_schema = pa.schema([f for f in schema if f.name not in partition_by])
        self.stats_columns = tuple(c for c in stats_columns if c in self.file_schema.names)
        self.row_group_rows = row_group_rows
        self.files: dict[tuple[Any, ...], _File] = {}
        self._written: list[Path] = []

    def add(self, chunk: pa.Table) -> None:
        """Buffer ``chunk`` (in ``schema``) by partition; write every partition holding a row group."""
        if len(chunk) == 0:
            return
        keys = [(c, "ascending") for c in self.partition_by]
        if any(pc.count_distinct(chunk.column(c)).as_py() > 1 for c in self.partition_by):
            chunk = chunk.take(pc.sort_indices(chunk.select(self.partition_by), sort_keys=keys))
        # run boundaries of the sorted partition keys: one slice per partition
        changed = pa.array([False] * (len(chunk) - 1), pa.bool_())
        for name in self.partition_by:
            col = chunk.column(name).combine_chunks()
            changed = pc.or_(changed, pc.not_equal(col.slice(1), col.slice(0, len(col) - 1)))
        starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist())]
        bounds = zip(starts, [*starts[1:], len(chunk)], strict=True)
        for lo, hi in bounds:
            piece = chunk.slice(lo, hi - lo)
            key = tuple(piece.column(c)[0].as_py() for c in self.partition_by)
            f = self.files.get(key) or self._open(key)
            f.pending.append(piece.select(self.file_schema.names))
            f.pending_rows += len(piece)
            if f.pending_rows >= self.row_group_rows:
                self._flush(f, whole_groups=True)
            if self.max_file_rows is not None and f.rows >= self.max_file_rows:
                self._done.append(self._finish(f))
                del self.files[key]

    def close(self) -> list[AddAction | RemoveAction]:
        """Write what is buffered, close the files; their add actions (no file is left open)."""
        actions = [*self._done, *(self._finish(f) for f in self.files.values())]
        self.files.clear()
        self._done = []
        return actions

    def _finish(self, f: _File) -> AddAction:
        self._flush(f, whole_groups=False)
        f.writer.close()
        footer = f.writer.writer.metadata  # what the file says of itself: its statistics, as written
        path = self.root / f.rel
        stat = path.stat()
        return AddAction(
            path=f.rel,
            size=stat.st_size,
            partition_values=f.values,
            modification_time=int(stat.st_mtime * 1000),
            data_change=self.data_change,
            stats=self._stats_json(f, footer),
        )

    def abort(self) -> None:
        """Close and delete every file written so far (nothing was committed)."""
        for f in self.files.values():
            with contextlib.suppress(Exception):  # the file is removed below
                f.writer.close()
        self.files.clear()
        for p in self._written:
            p.unlink(missing_ok=True)

    def _open(self, key: tuple[Any, ...]) -> _File:
        values = {c: _partition_text(v) for c, v in zip(self.partition_by, key, strict=True)}
        folder = "/".join(f"{c}={values[c]}" for c in self.partition_by)
        rel = f"{folder}/part-{self._opened:05d}-{uuid.uuid4()}-c000.{self.compression}.parquet"
        self._opened += 1
        path = self.root / rel
        os.makedirs(path.parent, exist_ok=True)
        self._written.append(path)
        names = self.file_schema.names
        compression: str | dict[str, str] = self.compression
        if self.compression == "snappy":
            compression = {c: "none" if c in DIGEST_COLUMNS else "snappy" for c in names}
        writer = pq.ParquetWriter(
            path,
            self.file_schema,
            compression=compression,
            use_dictionary=[c for c in DICTIONARY_COLUMNS if c in self.file_schema.names],
            # sized for a row group (pyarrow's default of 1M distinct values is ~1 MB per row group
            # and column, held until the file closes: 24 GB for one compacted day)
            bloom_filter_options={
                c: {"ndv": self.row_group_rows, "fpp": 0.01} for c in self.bloom_columns if c in self.file_schema.names
            }
            or None,
            write_statistics=list(self.stats_columns),
            store_decimal_as_integer=True,
        )
        f = _File(rel, values, writer)
        self.files[key] = f
        return f

    def _flush(self, f: _File, *, whole_groups: bool) -> None:
        if not f.pending_rows:
            return
        table = pa.concat_tables(f.pending)
        n = (len(table) // self.row_group_rows) * self.row_group_rows if whole_groups else len(table)
        out, rest = table.slice(0, n), table.slice(n)
        f.writer.write_table(out, row_group_size=self.row_group_rows)
        f.rows += len(out)
        f.pending, f.pending_rows = ([rest] if len(rest) else []), len(rest)

    def _stats_json(self, f: _File, footer: pq.FileMetaData) -> str:
        """The Delta statistics of a file: its row count, and per statistics column the null count
        and min/max, from the row groups' statistics in the file's footer (the writer computed
        them anyway; computing them again cost ≈ 0.3 µs an event)."""
        stats = {c: _Stat() for c in self.stats_columns}
        index = {footer.schema.column(i).path: i for i in range(footer.num_columns)}
        for g in range(footer.num_row_groups):
            group = footer.row_group(g)
            for c, st in stats.items():
                st.update(group.column(index[c]))
        lo: dict[str, Any] = {}
        hi: dict[str, Any] = {}
        for c, st in stats.items():
            if st.lo is None or not st.exact:
                continue
            kind = self.file_schema.field(c).type
            if pa.types.is_decimal(kind):
                continue
            if pa.types.is_floating(kind) and not (_finite(st.lo) and _finite(st.hi)):
                continue
            if pa.types.is_timestamp(kind):
                lo[c], hi[c] = _ms_text(st.lo, up=False), _ms_text(st.hi, up=True)
            else:
                lo[c], hi[c] = st.lo, st.hi
        nulls = {c: st.nulls for c, st in stats.items() if st.nulls is not None}
        return json.dumps({"numRecords": f.rows, "minValues": lo, "maxValues": hi, "nullCount": nulls})


def _partition_text(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == v and v not in (float("inf"), float("-inf"))


def _ms_text(value: dt.datetime, *, up: bool) -> str:
    """A UTC timestamp at millisecond precision, rounded down (``up=False``) or up."""
    value = value.astimezone(dt.UTC)
    extra = value.microsecond % 1000
    value -= dt.timedelta(microseconds=extra)
    if up and extra:
        if value > dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(milliseconds=1):
            return "9999-12-31T23:59:59.999999Z"  # the end of time cannot be rounded up: keep it exact
        value += dt.timedelta(milliseconds=1)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
